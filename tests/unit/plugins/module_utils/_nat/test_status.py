"""status.py: counters placed on the model's entries, connection tracking, drift, findings.

The dumps are the kernel captures of ``tests/unit/fixtures`` (see test_nft.py), with counter
values written into them the way ``nft -j`` and ``iptables-save -c`` print them.
"""
import copy
import json
import re

import pytest

from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import (
    iptables, kernel, model, nft, plan, rules, status)

from nat_helpers import (
    fixture_addresses, fixture_config, fixture_text, ruleset_of)

GATEWAY = ruleset_of(fixture_config("gateway"))


# ---------------------------------------------------------------- dumps with counter values

def nft_dump(counts=None, elements=None, name="gateway.nft.json"):
    """The gateway's ``nft -j`` capture; ``counts`` {text in the rule's JSON: (packets,
    bytes)} and ``elements`` {(iif, proto, port): (packets, bytes)} set counter values."""
    data = json.loads(fixture_text(name))
    for item in data["nftables"]:
        if "rule" in item:
            text = json.dumps(item["rule"]["expr"])
            for needle, (packets, size) in (counts or {}).items():
                if needle in text:
                    for stmt in item["rule"]["expr"]:
                        if "counter" in stmt:
                            stmt["counter"] = {"packets": packets, "bytes": size}
        elif "map" in item:
            for key, _value in item["map"].get("elem", ()):
                iif, proto, port = (key["elem"]["val"] if "elem" in key else key)["concat"]
                if (iif, proto, str(port)) in (elements or {}):
                    packets, size = elements[(iif, proto, str(port))]
                    key["elem"]["counter"] = {"packets": packets, "bytes": size}
    return {"nft": json.dumps(data)}


def save_with_counters(text, counts=None):
    """iptables-save output as ``iptables-save -c`` prints it: [packets:bytes] before every
    rule, from ``counts`` {text in the line: (packets, bytes)}, else [0:0]."""
    out = []
    for line in text.splitlines():
        if line.startswith("-A "):
            packets, size = next((v for k, v in (counts or {}).items() if k in line), (0, 0))
            line = "[%d:%d] %s" % (packets, size, line)
        elif line.startswith(":"):
            line = re.sub(r"\[0:0\]$", "[7:700]", line)  # chain policy counters: not rules'
        out.append(line)
    return "\n".join(out) + "\n"


def iptables_dump(counts=None):
    return {4: save_with_counters(fixture_text("gateway.iptables-save"), counts),
            6: save_with_counters(fixture_text("gateway.ip6tables-save"), counts)}


def counters_of(backend, dump):
    state = status.dump_state(backend, dump)
    ruleset, foreign = rules.from_rules(*status.CODECS[backend].to_rules(state))
    assert foreign == [] and ruleset == GATEWAY
    by_rule, by_key = status.rule_counters(backend, state, dump)
    return status.entry_counters(backend, ruleset, by_rule, by_key)


def row(counters, kind, **identity):
    [found] = [r for r in counters[kind] if all(r.get(k) == v for k, v in identity.items())]
    return found


# ---------------------------------------------------------------- counters

def test_nft_forward_counts_its_map_element_and_its_hairpin_rule():
    dump = nft_dump(counts={'"@hp4_ppp0"}}, {"match": {"op": "==", "left": {"payload": '
                            '{"protocol": "tcp", "field": "dport"}}, "right": 8080': (2, 120)},
                    elements={("ppp0", "tcp", "8080"): (5, 300)})
    counters = counters_of("nftables", dump)
    assert row(counters, "port_forwards", port=8080)["packets"] == 7
    assert row(counters, "port_forwards", port=8080)["bytes"] == 420
    # each row is the entry's identity (as gathered keys it) and its figures
    assert row(counters, "port_forwards", port=8080) == {
        "in_interface": "ppp0", "protocol": "tcp", "port": 8080, "packets": 7, "bytes": 420}
    # another element, another forward: its own figures only
    assert row(counters, "port_forwards", port=1194)["packets"] == 0
    assert status.unused_forwards(counters) == len(counters["port_forwards"]) - 1


def test_nft_rule_counters_reach_their_entries():
    dump = nft_dump(counts={'"192.168.10.0", "len": 24}}}}, {"match": {"op": "==", "left": '
                            '{"meta": {"key": "oifname"}}, "right": "ppp0"}}, {"counter"': (3, 180)})
    counters = counters_of("nftables", dump)
    office = row(counters, "masquerade", source="192.168.10.0/24")
    assert office == {"source": "192.168.10.0/24", "out_interface": "ppp0", "packets": 3,
                      "bytes": 180}
    assert row(counters, "masquerade", source="192.168.11.0/25")["packets"] == 0


def test_nft_forward_rule_counters_by_comment_in_the_rule():
    data = json.loads(nft_dump()["nft"])
    for item in data["nftables"]:
        if "rule" in item and item["rule"].get("comment") == "default-deny":
            for stmt in item["rule"]["expr"]:
                if "counter" in stmt:
                    stmt["counter"] = {"packets": 9, "bytes": 900}
    counters = counters_of("nftables", {"nft": json.dumps(data)})
    deny = row(counters, "forward", in_interface="ppp0", action="drop")
    assert deny == {"in_interface": "ppp0", "action": "drop", "packets": 9, "bytes": 900}


def test_iptables_counters_add_up_both_families_and_a_forward_with_its_hairpin():
    dump = iptables_dump({"-i ppp0 -p tcp -m tcp --dport 8080 -m comment": (4, 240),
                          "-m set --match-set ipmasq-hp4-ppp0 dst -m tcp --dport 8080": (1, 60),
                          "-i ppp0 -m conntrack --ctstate RELATED,ESTABLISHED": (10, 1000)})
    counters = counters_of("iptables", dump)
    web = row(counters, "port_forwards", port=8080)
    assert (web["packets"], web["bytes"]) == (5, 300)
    # a rule without addresses sits in iptables and ip6tables: one entry, both counted
    established = row(counters, "forward", ct_state=["established", "related"])
    assert (established["packets"], established["bytes"]) == (20, 2000)
    # the chains' own [packets:bytes] (policy counters) are nobody's rule
    assert all(r["packets"] in (0, 5, 20) for rows in counters.values() for r in rows)


def test_tcp_udp_forward_is_counted_per_protocol_like_its_two_entries():
    dump = iptables_dump({"-p tcp -m tcp --dport 5000:5010": (2, 120),
                          "-p udp -m udp --dport 5000:5010": (3, 90)})
    counters = counters_of("iptables", dump)
    assert row(counters, "port_forwards", protocol="tcp", port="5000-5010")["packets"] == 2
    assert row(counters, "port_forwards", protocol="udp", port="5000-5010")["packets"] == 3


def test_every_entry_of_every_kind_has_figures():
    for backend, dump in (("nftables", nft_dump()), ("iptables", iptables_dump())):
        counters = counters_of(backend, dump)
        for kind in model.KINDS:
            assert len(counters[kind]) == len(GATEWAY[kind]), (backend, kind)
            assert all(r["packets"] == 0 and r["bytes"] == 0 for r in counters[kind])


def test_a_table_from_before_counters_has_no_figures():
    counters = counters_of("nftables", nft_dump(name="gateway.uncounted.nft.json"))
    assert all(r["packets"] is None for rows in counters.values() for r in rows)
    assert status.unused_forwards(counters) == 0


def test_counters_that_do_not_fit_the_rules_are_an_error():
    state = status.dump_state("nftables", nft_dump())
    data = json.loads(nft_dump()["nft"])
    data["nftables"] = [i for i in data["nftables"]
                        if not ("rule" in i and i["rule"]["chain"] == "forward")]
    with pytest.raises(status.StatusError, match="forward"):
        status.rule_counters("nftables", state, {"nft": json.dumps(data)})


# ---------------------------------------------------------------- connection tracking

CONNTRACK_EXTENDED = """\
ipv4     2 tcp      6 431999 ESTABLISHED src=192.168.10.23 dst=198.51.100.20 sport=40000 \
dport=443 src=198.51.100.20 dst=203.0.113.7 sport=443 dport=40000 [ASSURED] mark=0 use=1
ipv4     2 tcp      6 119 TIME_WAIT src=192.168.10.23 dst=198.51.100.20 sport=40001 dport=443 \
src=198.51.100.20 dst=203.0.113.7 sport=443 dport=40001 [ASSURED] mark=0 use=1
ipv4     2 udp      17 29 src=192.168.10.23 dst=9.9.9.9 sport=5353 dport=53 [UNREPLIED] \
src=9.9.9.9 dst=203.0.113.7 sport=53 dport=5353 mark=0 use=1
ipv4     2 udp      17 29 src=192.168.10.40 dst=9.9.9.9 sport=5353 dport=53 src=9.9.9.9 \
dst=203.0.113.7 sport=53 dport=5353 mark=0 use=1
ipv4     2 tcp      6 117 TIME_WAIT src=198.51.100.20 dst=203.0.113.7 sport=52870 dport=8080 \
src=192.168.10.5 dst=198.51.100.20 sport=80 dport=52870 [ASSURED] mark=0 use=1
ipv4     2 icmp     1 29 src=192.168.11.3 dst=198.51.100.20 type=8 code=0 id=7 \
src=198.51.100.20 dst=203.0.113.7 type=0 code=0 id=7 mark=0 use=1
ipv6     10 udp      17 29 src=fd00:0010:0000:0000:0000:0000:0000:0005 \
dst=2001:0db8:0000:0000:0000:0000:0000:0001 sport=43483 dport=9 [UNREPLIED] \
src=2001:0db8:0000:0000:0000:0000:0000:0001 dst=fd00:0010:0000:0000:0000:0000:0000:0005 \
sport=9 dport=43483 mark=0 zone=0 use=2
"""
# plain ``conntrack -L`` prints the same without the address family in front
CONNTRACK_PLAIN = "\n".join(line.split(None, 2)[2] for line in CONNTRACK_EXTENDED.splitlines())


@pytest.mark.parametrize("text", [CONNTRACK_EXTENDED, CONNTRACK_PLAIN], ids=["extended", "plain"])
def test_top_sources_count_lan_hosts_by_protocol(text):
    sources = status.conntrack_sources(text)
    networks = status.lan_networks(GATEWAY)
    assert networks == ["10.20.0.0/16", "10.30.0.0/16", "192.168.10.0/24", "192.168.11.0/25",
                        "2001:db8:30::/48", "fd00:10::/64"]
    assert status.top_sources(sources, networks, 10) == [
        {"address": "192.168.10.23", "connections": 3, "protocols": {"tcp": 2, "udp": 1}},
        {"address": "192.168.10.40", "connections": 1, "protocols": {"udp": 1}},
        {"address": "192.168.11.3", "connections": 1, "protocols": {"icmp": 1}},
        {"address": "fd00:10::5", "connections": 1, "protocols": {"udp": 1}},
    ]  # the WAN client of the port forward (198.51.100.20) is no LAN host
    assert [r["address"] for r in status.top_sources(sources, networks, 2)] == [
        "192.168.10.23", "192.168.10.40"]


def test_without_lan_networks_every_source_counts():
    sources = status.conntrack_sources(CONNTRACK_EXTENDED)
    top = status.top_sources(sources, [], 10)
    assert "198.51.100.20" in [r["address"] for r in top]
    assert sum(r["connections"] for r in top) == len(CONNTRACK_EXTENDED.splitlines())


def test_conntrack_lines_that_are_not_connections_are_skipped():
    sources = status.conntrack_sources("conntrack v1.4.7 (conntrack-tools): 7 flow entries\n\n"
                                       "ipv4 2 tcp 6 1 src=not-an-address dst=x\n" + CONNTRACK_PLAIN)
    assert status.top_sources(sources, [], 100)[0]["address"] == "192.168.10.23"


@pytest.mark.parametrize("count, limit, used", [(0, 262144, 0.0), (209716, 262144, 80.0),
                                                (1, 3, 33.33), (None, 262144, None)])
def test_conntrack_usage(count, limit, used):
    assert status.conntrack_usage(count, limit, 80) == {
        "count": count, "max": limit, "used_percent": used, "threshold_percent": 80}


# ---------------------------------------------------------------- drift

def boot_files(backend, state):
    """The boot files nat_rules would write for ``state``: {key: text}."""
    text = status.CODECS[backend].render_full(state)
    if backend == "nftables":
        parts = {"nft": text}
    else:
        split = iptables.split_script(text.splitlines())
        parts = {"ipv4": split.get(4, ""), "ipv6": split.get(6, ""), "ipset": split.get("ipset")}
    return dict((k, None if v is None else v + kernel.END_MARKER + "\n") for k, v in parts.items())


def want(backend, config=None, addresses=None):
    return plan.want_state(status.CODECS[backend], ruleset_of(config or fixture_config("gateway")),
                           fixture_addresses("gateway") if addresses is None else addresses)


@pytest.mark.parametrize("backend", ["nftables", "iptables"])
def test_the_kernel_capture_is_the_boot_file_of_its_config(backend):
    live = status.dump_state(backend, nft_dump() if backend == "nftables" else iptables_dump())
    boot, why = status.boot_state(backend, boot_files(backend, want(backend)))
    assert why is None
    assert status.drift(backend, live, boot) == {
        "differs": False, "reason": "the live rules are the boot file's", "changes": []}


@pytest.mark.parametrize("backend", ["nftables", "iptables"])
def test_hairpin_addresses_and_counters_are_no_drift(backend):
    live = status.dump_state(backend, nft_dump(elements={("ppp0", "tcp", "8080"): (5, 9)})
                             if backend == "nftables" else iptables_dump({"-j": (3, 4)}))
    moved = want(backend, addresses={"ppp0": ["203.0.113.99"]})
    boot, _why = status.boot_state(backend, boot_files(backend, moved))
    assert status.drift(backend, live, boot)["differs"] is False


def test_a_hand_made_rule_in_our_table_is_drift():
    boot, _why = status.boot_state("nftables", boot_files("nftables", want("nftables")))
    live = nft.parse(nft.render_full(want("nftables")).replace(
        '\t\tiifname "ppp0" counter drop comment "default-deny"\n',
        '\t\tiifname "ppp0" counter drop comment "default-deny"\n\t\ttcp dport 22 accept\n'))
    result = status.drift("nftables", live, boot)
    assert result["differs"] is True
    assert result["changes"] == ["+ forward: tcp dport 22 counter accept"]
    assert result["reason"] == "the live rules differ from the boot file (1 line)"


def test_a_forward_removed_by_hand_is_drift_naming_it():
    state = want("nftables")
    boot, _why = status.boot_state("nftables", boot_files("nftables", state))
    live = nft.parse(nft.render_full(state))
    del live.elements["fwd4"][("eth0.10", "udp", "1194")]
    assert status.drift("nftables", live, boot)["changes"] == [
        '- fwd4 element: iifname "eth0.10" udp dport 1194 counter dnat ip to 192.168.10.9 '
        'comment "vpn"']


def test_rules_in_another_order_are_drift():
    config = fixture_config("gateway")
    swapped = dict(config, forward=config["forward"][::-1])
    boot, _why = status.boot_state("iptables", boot_files("iptables", want("iptables")))
    live = iptables.parse("\n".join(iptables.render_full(want("iptables", swapped)).splitlines()))
    result = status.drift("iptables", live, boot)
    assert result["differs"] is True and result["changes"] == ["~ the same rules in another order"]


def test_a_jump_deleted_by_hand_is_drift():
    boot, _why = status.boot_state("iptables", boot_files("iptables", want("iptables")))
    text = save_with_counters(fixture_text("gateway.iptables-save")).replace(
        "[0:0] -A FORWARD -j IPMASQ-FORWARD\n", "")
    live = status.dump_state("iptables", {4: text, 6: save_with_counters(
        fixture_text("gateway.ip6tables-save"))})
    assert status.drift("iptables", live, boot)["changes"] == [
        "- ipv4 IPMASQ-FORWARD: jump from FORWARD"]


def test_many_changes_are_cut_short_and_counted(monkeypatch):
    monkeypatch.setattr(status, "DRIFT_LINES_MAX", 10)
    boot, _why = status.boot_state("nftables", boot_files("nftables", want("nftables")))
    result = status.drift("nftables", nft.empty_state(), boot)
    assert result["differs"] is True
    assert len(result["changes"]) == status.DRIFT_LINES_MAX + 1
    assert re.match(r"^\.\.\. and \d+ more$", result["changes"][-1])


@pytest.mark.parametrize("backend", ["nftables", "iptables"])
def test_no_boot_file(backend):
    empty = status.CODECS[backend].empty_state()
    files = dict((k, None) for k in (["nft"] if backend == "nftables" else
                                     ["ipv4", "ipv6", "ipset"]))
    boot, why = status.boot_state(backend, files)
    assert (boot, why) == (None, "no boot file")
    live = want(backend)
    assert status.drift(backend, live, None, why) == {
        "differs": None, "reason": "no boot file", "changes": []}
    assert status.drift(backend, empty, None, why)["differs"] is False


def test_a_boot_file_cut_short_or_missing_is_drift():
    files = boot_files("iptables", want("iptables"))
    cut = dict(files, ipv4=files["ipv4"].replace(kernel.END_MARKER + "\n", ""))
    boot, why = status.boot_state("iptables", cut)
    assert boot is None and why.startswith("boot file ipv4 has no end marker")
    assert status.drift("iptables", want("iptables"), boot, why)["differs"] is True
    boot, why = status.boot_state("iptables", dict(files, ipv6=None))
    assert boot is None and why == "boot file missing: ipv6"


def test_a_boot_file_that_does_not_parse_is_drift():
    files = {"nft": "table inet ipmasq { junk\n" + kernel.END_MARKER + "\n"}
    boot, why = status.boot_state("nftables", files)
    assert boot is None and why.startswith("boot file cannot be read")


# ---------------------------------------------------------------- rollbacks, findings, report

def test_rollback_rows():
    rows = status.rollback_rows([("1-aaaaaaaaaaaa", 1010.4, None),
                                 ("2-bbbbbbbbbbbb", 900.0, "restored"),
                                 ("3-cccccccccccc", 900.0, "failed: nft said no")], now=1000.0)
    assert rows == [
        {"token": "1-aaaaaaaaaaaa", "status": "pending", "seconds_left": 10, "detail": None},
        {"token": "2-bbbbbbbbbbbb", "status": "restored", "seconds_left": 0, "detail": None},
        {"token": "3-cccccccccccc", "status": "failed", "seconds_left": 0,
         "detail": "nft said no"}]


def readings(**changes):
    out = {"rollbacks": [], "now": 1000.0, "conntrack_count": 100, "conntrack_max": 1000,
           "conntrack_table": CONNTRACK_EXTENDED}
    out.update(changes)
    return out


OPTIONS = {"top": 10, "lan_networks": None, "conntrack_threshold": 80}


def full_report(backend="nftables", dump=None, files=None, options=None, **reading):
    dump = dump or (nft_dump() if backend == "nftables" else iptables_dump())
    state = status.dump_state(backend, dump)
    files = files if files is not None else boot_files(backend, want(backend))
    files = dict((k, ("/etc/ipmasq/%s" % k, v)) for k, v in files.items())
    return status.report(backend, state, dump, files, readings(**reading), options or OPTIONS)


def warnings(result):
    return [f for f in result["findings"] if f["severity"] == "warning"]


def test_a_quiet_gateway_has_no_warning():
    result = full_report()
    assert warnings(result) == []
    assert result["rules"] == {"masquerade": 4, "snat": 3, "port_forwards": 8, "forward": 8,
                               "helpers": 3, "input": 0, "static_nat": 0, "npt": 0,
                               "connection_limits": 0, "total": 26}
    assert result["conntrack"]["used_percent"] == 10.0
    assert result["top_sources"][0]["address"] == "192.168.10.23"
    assert result["drift"]["differs"] is False
    assert result["drift"]["boot_files"] == ["/etc/ipmasq/nft"]
    assert result["foreign_rules"] == 0
    assert [f["topic"] for f in result["findings"]] == ["counters"]  # unused forwards, a note


@pytest.mark.parametrize("count, warned", [(799, False), (800, True), (1000, True)])
def test_a_conntrack_table_at_the_threshold_warns(count, warned):
    result = full_report(conntrack_count=count)
    found = [f for f in warnings(result) if f["topic"] == "conntrack"]
    assert bool(found) == warned
    if warned:
        assert "nf_conntrack: table full" in found[0]["message"]
        assert "%d of 1000" % count in found[0]["message"]


def test_pending_and_failed_rollbacks_warn():
    result = full_report(rollbacks=[("1-aaaaaaaaaaaa", 1030.0, None),
                                    ("2-bbbbbbbbbbbb", 900.0, "failed: boom")])
    messages = [f["message"] for f in warnings(result)]
    assert any("1-aaaaaaaaaaaa" in m and "fires in 30s" in m for m in messages)
    assert any("2-bbbbbbbbbbbb" in m and "FAILED (boom)" in m for m in messages)


def test_drift_and_hand_made_rules_warn():
    data = json.loads(nft_dump()["nft"])
    rule = next(i for i in data["nftables"] if "rule" in i and i["rule"]["chain"] == "forward")
    extra = copy.deepcopy(rule)
    mark = {"match": {"op": "==", "left": {"meta": {"key": "mark"}}, "right": 1}}
    extra["rule"]["expr"] = [mark, {"accept": None}]
    data["nftables"].append(extra)
    result = full_report(dump={"nft": json.dumps(data)})
    topics = sorted(f["topic"] for f in warnings(result))
    assert topics == ["drift", "rules"]
    assert result["foreign_rules"] == 1
    assert result["drift"]["changes"] == [
        '+ forward: # not understood: [{"match": {"op": "==", "left": {"meta": {"key": "mark"}}, '
        '"right": 1}}, {"accept": null}]']


def test_no_boot_file_is_a_note_not_a_warning():
    result = full_report(files={"nft": None})
    assert result["drift"]["differs"] is None
    assert [f["topic"] for f in result["findings"] if f["topic"] == "drift"] == ["drift"]
    assert warnings(result) == []


def test_without_conntrack_loaded_or_top_zero():
    result = full_report(conntrack_count=None, conntrack_max=None, conntrack_table=None)
    assert result["conntrack"]["used_percent"] is None and result["top_sources"] == []
    assert any(f["topic"] == "conntrack" for f in result["findings"])
    result = full_report(options=dict(OPTIONS, top=0))
    assert result["top_sources"] == []


def test_lan_networks_given_replace_the_ruleset_sources():
    result = full_report(options=dict(OPTIONS, lan_networks=["198.51.100.0/24"]))
    assert [r["address"] for r in result["top_sources"]] == ["198.51.100.20"]
    assert result["conntrack"]["lan_networks"] == ["198.51.100.0/24"]


def test_an_empty_host():
    state = nft.empty_state()
    dump = {"nft": '{"nftables": []}'}
    result = status.report("nftables", state, dump, {"nft": ("/etc/ipmasq/ipmasq.nft", None)},
                           readings(conntrack_table=""), OPTIONS)
    assert result["rules"]["total"] == 0 and result["top_sources"] == []
    assert result["drift"]["differs"] is False
    assert warnings(result) == []


def test_the_report_is_plain_data():
    json.dumps(full_report())
    json.dumps(full_report("iptables"))


def test_status_keeps_the_state_of_the_rules():
    """The state that the report reads is the one nat_rules' idempotence rests on: the
    counters of a dump never make it differ from the rules it was loaded from."""
    for backend, dump in (("nftables", nft_dump(elements={("ppp0", "tcp", "8080"): (5, 9)})),
                          ("iptables", iptables_dump({"-j": (3, 4)}))):
        state = status.dump_state(backend, dump)
        if backend == "iptables":  # the hairpin ipsets are read by nat_rules, not here
            state = state._replace(sets=want(backend).sets)
        assert status.CODECS[backend].render_changes(state, want(backend)) == []


def test_holds_rules():
    assert status.holds_rules("nftables", status.dump_state("nftables", nft_dump()))
    assert not status.holds_rules("nftables", nft.empty_state())
    assert status.holds_rules("iptables", status.dump_state("iptables", iptables_dump()))
    assert not status.holds_rules("iptables", iptables.empty_state())
