"""nft.py: layout, render, parse (nft -j and nft list), and the commands between two States.

The fixtures ``tests/unit/fixtures/<name>.*`` were captured from a real kernel by
``tests/unit/fixtures/capture.sh`` (in a network namespace) from ``<name>.config.json``.
"""
import shlex

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import model, nft, plan, rules

from nat_helpers import (
    CAPTURE_RELEASES, CAPTURED, Refused, configs_and_addresses, fixture_addresses, fixture_config,
    fixture_text, kinds_differ, nft_apply, reparse, ruleset_of, state_of)

NFT_DUMPS = ("nft.json", "nft.txt", "ruleset.json", "ruleset.txt")

CONFIG = {
    "masquerade": [{"source": "192.168.10.0/24", "out_interface": "ppp0", "comment": "office"}],
    "port_forwards": [
        {"in_interface": "ppp0", "port": 8080, "to_address": "192.168.10.5", "to_port": 80,
         "comment": "web"},
        {"in_interface": "ppp0", "protocol": "udp", "port": 53, "to_address": "fd00::53"},
        {"in_interface": "ppp0", "port": "5000-5010", "to_address": "192.168.10.6"},
        {"in_interface": "ppp0", "port": 2222, "to_address": "192.168.10.7",
         "source": "198.51.100.0/24"},
    ],
    "forward": [{"in_interface": "ppp0", "ct_state": ["established", "related"]},
                {"in_interface": "ppp0", "action": "drop"}],
    "helpers": [{"helper": "ftp", "port": 21}],
}


# ---------------------------------------------------------------- layout and render

def test_single_port_forwards_live_in_the_maps():
    state = state_of(nft, CONFIG)
    assert state.elements == {
        "fwd4": {("ppp0", "tcp", "8080"): ("192.168.10.5", "80", "web")},
        "fwd6": {("ppp0", "udp", "53"): ("fd00::53", None, None)},  # None: the same port
    }
    # ranges and forwards limited to a source stay rules, ahead of the map lookups
    assert [r.dport for r in state.chains["prerouting"][:-2]] == ["2222", "5000-5010"]
    assert state.chains["prerouting"][-2:] == [nft.MAP_RULES["fwd4"], nft.MAP_RULES["fwd6"]]
    assert ("ct helper", "ftp-tcp-21") in state.objects


def test_render_full_is_one_script_that_replaces_only_our_table():
    text = nft.render_full(state_of(nft, CONFIG))
    lines = text.splitlines()
    assert lines[:3] == ["table inet ipmasq {}", "delete table inet ipmasq", "table inet ipmasq {"]
    assert "flush ruleset" not in text
    assert '\t\telements = { "ppp0" . tcp . 8080 comment "web" : 192.168.10.5 . 80 }' in lines
    assert '\t\tip saddr 192.168.10.0/24 oifname "ppp0" counter masquerade comment "office"' \
        in lines
    assert "\t\tdnat ip to iifname . meta l4proto . th dport map @fwd4" in lines
    assert '\t\tiifname "ppp0" ip saddr 198.51.100.0/24 tcp dport 2222 counter dnat ip to ' \
        "192.168.10.7" in lines
    assert '\t\ttcp dport 21 counter ct helper set "ftp-tcp-21"' in lines
    assert '\tct helper ftp-tcp-21 { type "ftp" protocol tcp; l3proto inet; }' in lines


def test_rule_text_spells_rules_like_nft_list():
    rule = rules.Rule("postrouting", iif="ppp0", iif_neg=True, daddr="fd00::8/128", proto="tcp",
                      dport="443", ct_dnat=True, verdict="masquerade")
    assert nft.rule_text(rule) == \
        'iifname != "ppp0" ip6 daddr fd00::8 tcp dport 443 ct status dnat counter masquerade'
    rule = rules.Rule("prerouting", iif="eth0", proto="tcp", dport="80", verdict="dnat",
                      to_addr="fd00::8", to_port="8080")
    assert nft.rule_text(rule) == 'iifname "eth0" tcp dport 80 counter dnat ip6 to [fd00::8]:8080'


def test_ipv6_network_of_length_32_keeps_its_prefix():
    state = state_of(nft, {"forward": [{"source": "2001:db8::/32", "action": "drop"}]})
    assert "ip6 saddr 2001:db8::/32 counter drop" in nft.render_full(state)


# ---------------------------------------------------------------- round trip

@settings(max_examples=150, deadline=None)
@given(configs_and_addresses())
def test_round_trip_through_the_text_nft_prints(config_and_addresses):
    config, addresses = config_and_addresses
    ruleset = ruleset_of(config)
    want = plan.want_state(nft, ruleset, addresses)
    back = reparse(nft, want)
    assert back.sets == want.sets
    got, foreign = plan.read_model(nft, back)
    assert foreign == []
    assert got == ruleset, kinds_differ(got, ruleset)
    if nft.has_rules(want):
        assert back.objects == want.objects and back.present
    else:  # nothing to keep: the script removes our table
        assert not back.present
    assert nft.render_changes(back, want) == []


# ---------------------------------------------------------------- real kernel output

@pytest.mark.parametrize("release", CAPTURE_RELEASES)
@pytest.mark.parametrize("dump", NFT_DUMPS)
@pytest.mark.parametrize("name", CAPTURED)
def test_kernel_dump_reads_back_as_the_model_that_made_it(name, dump, release):
    ruleset = ruleset_of(fixture_config(name))
    want = plan.want_state(nft, ruleset, fixture_addresses(name))
    state = nft.parse(fixture_text("%s.%s" % (name, dump), release))
    got, foreign = plan.read_model(nft, state)
    assert foreign == []
    assert got == ruleset, kinds_differ(got, ruleset)
    assert state.objects == want.objects
    assert state.elements == want.elements
    assert state.sets == want.sets
    if name == "gateway":  # the capture with hairpin addresses
        assert state.sets == {"hp4_ppp0": frozenset(["203.0.113.7", "198.51.100.77"]),
                              "hp6_ppp0": frozenset(["2001:db8:7::1"])}
    assert nft.render_changes(state, want) == []


@pytest.mark.parametrize("release", CAPTURE_RELEASES)
@pytest.mark.parametrize("name", CAPTURED)
def test_kernel_json_and_text_dumps_agree(name, release):
    states = [nft.parse(fixture_text("%s.%s" % (name, dump), release)) for dump in NFT_DUMPS]
    assert all(s == states[0] for s in states[1:])


@pytest.mark.parametrize("release", CAPTURE_RELEASES)
def test_foreign_tables_in_a_ruleset_dump_are_ignored(release):
    assert '"foreign"' in fixture_text("gateway.ruleset.json", release)
    assert "table ip foreign" in fixture_text("gateway.ruleset.txt", release)
    for dump in ("ruleset.json", "ruleset.txt"):
        state = nft.parse(fixture_text("gateway.%s" % dump, release))
        assert all(name != "guard" and name != "post" for _kind, name in state.objects)


def test_the_captures_hold_what_they_are_named_for():
    """apostrophe: a comment with one; icmpv6: an ICMPv6 rule; v6-prefix32: an IPv6 /32."""
    assert "'" in fixture_text("apostrophe.nft.txt")
    assert "meta l4proto ipv6-icmp" in fixture_text("icmpv6.nft.txt")
    assert "ip6 saddr 2001:db8::/32" in fixture_text("v6-prefix32.nft.txt")
    assert "chain input" in fixture_text("input.nft.txt")


def test_the_input_chain_exists_only_while_it_has_rules():
    without = plan.want_state(nft, ruleset_of({"masquerade": [
        {"source": "192.168.10.0/24", "out_interface": "ppp0"}]}))
    assert ("chain", "input") not in without.objects
    assert "chain input" not in nft.render_full(without)
    with_input = plan.want_state(nft, ruleset_of(fixture_config("input")))
    assert ("chain", "input") in with_input.objects
    # going back: the rules go, then the chain (the kernel refuses to delete a full one)
    assert nft.render_changes(with_input, without)[-2:] == [
        "flush chain inet ipmasq input", "delete chain inet ipmasq input"]
    assert nft.render_changes(without, with_input)[0] == (
        "add chain inet ipmasq input { %s }" % nft.CHAIN_TYPES["input"])


# ---------------------------------------------------------------- helpers

# The names nf_conntrack registers (nf_conntrack_<x>.c), by protocol: ``nft add ct helper``
# and ``-j CT --helper`` take these and nothing else.
KERNEL_HELPERS = {
    "tcp": {"ftp", "irc", "pptp", "sane", "sip", "Q.931"},
    "udp": {"amanda", "netbios-ns", "sip", "snmp", "tftp", "RAS"},
}


def _helper_params():
    for name in sorted(model.HELPER_PROTOCOLS):
        for proto in model.HELPER_PROTOCOLS[name]:
            yield pytest.param(name, proto, id="%s-%s" % (name, proto))


@pytest.mark.parametrize("name, proto", list(_helper_params()))
def test_each_helper_is_declared_with_its_kernel_name_and_reads_back(name, proto):
    ruleset = ruleset_of({"helpers": [{"helper": name, "protocol": proto, "port": 1000}]})
    state = plan.want_state(nft, ruleset)
    declared = [line for line in nft.render_full(state).splitlines() if "ct helper" in line
                and "{" in line]
    assert declared == ['\tct helper %s-%s-1000 { type "%s" protocol %s; l3proto inet; }'
                        % (name, proto, name, proto)]
    assert name in KERNEL_HELPERS[proto]
    assert plan.read_model(nft, reparse(nft, state)) == (ruleset, [])


# ---------------------------------------------------------------- parse details

@pytest.mark.parametrize("comment", ["a}b", "{x}"])
def test_map_element_comment_with_a_brace_reads_back(comment):
    ruleset = ruleset_of({"port_forwards": [{"in_interface": "eth0", "port": 80,
                                             "to_address": "10.0.0.5", "comment": comment}]})
    assert plan.read_model(nft, reparse(nft, plan.want_state(nft, ruleset))) == (ruleset, [])


def test_many_elements_with_braces_in_comments_over_lines_read_back():
    # each element on a line of its own, as render_full and nft list print them; the
    # closing brace is looked for line by line (this parse was once quadratic)
    forwards = [{"in_interface": "eth0", "port": 1000 + i, "to_address": "10.0.0.5",
                 "comment": "{%d}, x" % i if i % 3 else None} for i in range(3000)]
    ruleset = ruleset_of({"port_forwards": forwards})
    assert plan.read_model(nft, reparse(nft, plan.want_state(nft, ruleset))) == (ruleset, [])


@given(st.text(alphabet='ab ,.:{}"\'\\\t\n\xa0-', max_size=30))
def test_element_words_split_like_shlex(text):
    try:
        expected = shlex.split(text)
    except ValueError:
        with pytest.raises(ValueError):
            nft._split(text)
        return
    assert nft._split(text) == expected


def test_rule_comment_with_braces_reads_back():
    ruleset = ruleset_of({"masquerade": [{"out_interface": "eth0", "comment": "{a} }"}]})
    assert plan.read_model(nft, reparse(nft, plan.want_state(nft, ruleset))) == (ruleset, [])


def test_statements_we_do_not_write_are_kept_as_unknown_rules():
    text = nft.render_full(state_of(nft, CONFIG)).replace(
        '\t\tiifname "ppp0" counter drop\n',
        '\t\tiifname "ppp0" counter drop\n\t\tip saddr 10.9.9.9 log prefix "x" accept\n')
    state = nft.parse(text)
    unknown = [r for r in state.chains["forward"] if r.verdict == "unknown"]
    assert [r.comment for r in unknown] == ['ip saddr 10.9.9.9 log prefix "x" accept']
    assert plan.read_model(nft, state)[1] == unknown


def test_counter_values_are_no_difference():
    text = nft.render_full(state_of(nft, CONFIG)).replace(
        '\t\tiifname "ppp0" counter drop\n', '\t\tiifname "ppp0" counter packets 3 bytes 180 drop\n')
    assert nft.parse(text) == reparse(nft, state_of(nft, CONFIG))


# ---------------------------------------------------------------- counters

def test_every_rule_but_the_map_lookups_counts_and_the_maps_count_per_element():
    state = state_of(nft, CONFIG)
    text = nft.render_full(state)
    for chain in rules.CHAINS:
        for rule in state.chains[chain]:
            assert (" counter " in " %s " % nft.rule_text(rule)) == (rule.verdict != "map"), rule
    assert text.count("\t\tcounter\n") == len(nft.MAPS)
    cmds = nft.render_changes(nft.empty_state(), state)
    assert [c for c in cmds if c.startswith("add map")] == [
        "add map inet ipmasq %s { %s counter; }" % (name, nft.MAPS[name][1])
        for name in sorted(nft.MAPS)]


@pytest.mark.parametrize("dump", NFT_DUMPS)
def test_a_kernel_dump_with_counters_reads_as_counted(dump):
    """The captures hold every element's and rule's counter, with their values."""
    text = fixture_text("gateway.%s" % dump)
    assert "counter packets 0 bytes 0" in text or '"counter": {"packets": 0' in text
    assert nft.parse(text).uncounted == frozenset()


@pytest.mark.parametrize("dump", ["uncounted.nft.json", "uncounted.nft.txt"])
def test_a_table_from_before_counters_is_replaced_whole_in_one_transaction(dump):
    """Version 1 rendered no counters, and a map cannot gain the counter flag: the first run
    after the upgrade replaces our table, and the next one finds nothing to do."""
    have = nft.parse(fixture_text("gateway.%s" % dump))
    want = plan.want_state(nft, ruleset_of(fixture_config("gateway")),
                           fixture_addresses("gateway"))
    assert have.uncounted == frozenset(["fwd4", "fwd6", "prerouting", "postrouting", "forward",
                                        "helpers"])
    assert plan.read_model(nft, have) == (ruleset_of(fixture_config("gateway")), [])
    cmds = nft.render_changes(have, want)
    assert cmds[0] == "delete table inet ipmasq"
    assert cmds[1:] == nft.render_changes(nft.empty_state(), want)
    after = nft_apply(have, cmds)
    assert not after.uncounted and nft.render_changes(after, want) == []


@pytest.mark.parametrize("edit, uncounted", [
    (('\t\tiifname "ppp0" counter drop\n', '\t\tiifname "ppp0" drop\n'), {"forward"}),
    (("\t\tcounter\n", "", 1), {"fwd4"}),
    (('\t\tiifname "ppp0" counter drop\n', '\t\tiifname "ppp0" drop comment "counter"\n'),
     {"forward"}),  # a comment that says counter is no counter
])
def test_a_rule_or_map_without_its_counter_is_uncounted(edit, uncounted):
    text = nft.render_full(state_of(nft, CONFIG))
    assert nft.parse(text).uncounted == frozenset()
    assert nft.parse(text.replace(*edit)).uncounted == frozenset(uncounted)


def test_a_rule_without_counter_rewrites_its_chain_only():
    """A hand-made rule or one from an older version: the chain is rewritten with counters,
    the maps and the other chains keep theirs."""
    want = state_of(nft, CONFIG)
    have = nft.parse(nft.render_full(want).replace(
        '\t\tiifname "ppp0" counter drop\n', '\t\tiifname "ppp0" drop\n'))
    cmds = nft.render_changes(have, want)
    assert cmds[0] == "flush chain inet ipmasq forward"
    assert {c.split()[4] for c in cmds[1:]} == {"forward"}
    assert all(" counter " in c for c in cmds[1:])


def test_a_missing_table_parses_as_absent():
    assert nft.parse("") == nft.empty_state()
    assert nft.parse('{"nftables": [{"metainfo": {"version": "1.0.6"}}]}') == nft.empty_state()
    assert not nft.parse("table ip other {\n\tchain c {\n\t}\n}\n").present


@pytest.mark.parametrize("text", ["{", '{"tables": []}', "[1, 2]"])
def test_json_that_is_not_nft_output_raises_parse_error(text):
    with pytest.raises(rules.ParseError):
        nft.parse_json(text)


# ---------------------------------------------------------------- changes and drift repair

def test_render_changes_from_nothing_creates_objects_then_rules():
    cmds = nft.render_changes(nft.empty_state(), state_of(nft, CONFIG))
    assert cmds[0] == "add table inet ipmasq"
    first_rule = min(i for i, c in enumerate(cmds) if c.startswith(("add rule", "add element")))
    assert all(c.startswith("add ") and " rule " not in c for c in cmds[:first_rule])
    assert not any(c.startswith(("flush", "delete")) for c in cmds)
    assert nft_apply(nft.empty_state(), cmds) == reparse(nft, state_of(nft, CONFIG))


def test_a_new_single_port_forward_is_one_map_element():
    have = reparse(nft, state_of(nft, CONFIG))
    config = dict(CONFIG, port_forwards=CONFIG["port_forwards"] + [
        {"in_interface": "ppp0", "port": 2223, "to_address": "192.168.10.8", "to_port": 22}])
    assert nft.render_changes(have, state_of(nft, config)) == [
        'add element inet ipmasq fwd4 { "ppp0" . tcp . 2223 : 192.168.10.8 . 22 }']


def test_a_changed_map_element_is_deleted_then_added():
    have = reparse(nft, state_of(nft, CONFIG))
    moved = dict(CONFIG["port_forwards"][0], to_address="192.168.10.9")
    config = dict(CONFIG, port_forwards=[moved] + CONFIG["port_forwards"][1:])
    cmds = nft.render_changes(have, state_of(nft, config))
    assert cmds == [
        'delete element inet ipmasq fwd4 { "ppp0" . tcp . 8080 }',
        'add element inet ipmasq fwd4 { "ppp0" . tcp . 8080 comment "web" : 192.168.10.9 . 80 }']
    assert nft.render_changes(nft_apply(have, cmds), state_of(nft, config)) == []


def test_drift_extra_rule_in_our_chain_rewrites_only_that_chain():
    want = state_of(nft, CONFIG)
    have = nft.parse(nft.render_full(want).replace(
        '\t\tiifname "ppp0" counter drop\n',
        '\t\tiifname "ppp0" counter drop\n\t\ttcp dport 22 accept\n'))
    cmds = nft.render_changes(have, want)
    assert cmds[0] == "flush chain inet ipmasq forward"
    assert all(c.startswith("add rule inet ipmasq forward ") for c in cmds[1:])
    assert len(cmds) == 1 + len(want.chains["forward"])
    assert nft.render_changes(nft_apply(have, cmds), want) == []
    assert nft.render_changes(reparse(nft, want), want) == []


def test_drift_unknown_rule_in_our_chain_is_removed():
    want = state_of(nft, CONFIG)
    have = nft.parse(nft.render_full(want).replace(
        "\t\tdnat ip to iifname", '\t\tmeta mark 0x1 counter\n\t\tdnat ip to iifname', 1))
    cmds = nft.render_changes(have, want)
    assert cmds[0] == "flush chain inet ipmasq prerouting"
    assert {c.split()[4] for c in cmds[1:]} == {"prerouting"}
    assert nft.render_changes(nft_apply(have, cmds), want) == []


def test_drift_missing_map_element_is_added_back_alone():
    want = state_of(nft, CONFIG)
    have = reparse(nft, want)
    del have.elements["fwd6"][("ppp0", "udp", "53")]
    cmds = nft.render_changes(have, want)
    assert cmds == ['add element inet ipmasq fwd6 { "ppp0" . udp . 53 : fd00::53 . 53 }']
    assert nft.render_changes(nft_apply(have, cmds), want) == []


def test_drift_extra_map_element_is_deleted_alone():
    want = state_of(nft, CONFIG)
    have = reparse(nft, want)
    have.elements["fwd4"][("eth9", "tcp", "1")] = ("10.0.0.1", None, None)
    assert nft.render_changes(have, want) == [
        'delete element inet ipmasq fwd4 { "eth9" . tcp . 1 }']


def test_drift_missing_chain_is_created_and_filled():
    want = state_of(nft, CONFIG)
    have = reparse(nft, want)
    have = have._replace(objects=have.objects - {("chain", "helpers")},
                         chains=dict(have.chains, helpers=[]))
    cmds = nft.render_changes(have, want)
    assert cmds == [
        "add chain inet ipmasq helpers { type filter hook prerouting priority filter; "
        "policy accept; }",
        'add rule inet ipmasq helpers tcp dport 21 counter ct helper set "ftp-tcp-21"']
    assert nft.render_changes(nft_apply(have, cmds), want) == []


def test_a_removed_helper_is_deleted_after_its_rules():
    have = reparse(nft, state_of(nft, CONFIG))
    want = state_of(nft, dict(CONFIG, helpers=[]))
    cmds = nft.render_changes(have, want)
    assert cmds == ["flush chain inet ipmasq helpers", "delete ct helper inet ipmasq ftp-tcp-21"]
    assert nft.render_changes(nft_apply(have, cmds), want) == []


@pytest.mark.parametrize("have_config", [CONFIG, None], ids=["from-rules", "from-nothing"])
def test_an_empty_ruleset_deletes_our_table(have_config):
    have = reparse(nft, state_of(nft, have_config)) if have_config else nft.empty_state()
    expected = ["delete table inet ipmasq"] if have_config else []
    assert nft.render_changes(have, state_of(nft, {})) == expected


def test_render_changes_does_not_touch_other_tables_or_the_ruleset():
    have = nft.parse(fixture_text("gateway.ruleset.json"))
    cmds = nft.render_changes(have, state_of(nft, CONFIG))
    assert cmds and all(" inet ipmasq" in c for c in cmds)
    assert not any("ruleset" in c for c in cmds)


@settings(max_examples=100, deadline=None)
@given(configs_and_addresses(), configs_and_addresses())
def test_render_changes_takes_any_ruleset_to_any_other(have, want):
    (have_config, have_addresses), (want_config, want_addresses) = have, want
    have = reparse(nft, state_of(nft, have_config, have_addresses))
    want = state_of(nft, want_config, want_addresses)
    cmds = nft.render_changes(have, want)
    try:
        after = nft_apply(have, cmds)
    except Refused as exc:
        raise AssertionError("nft would refuse %s in %r" % (exc, cmds))
    assert plan.read_model(nft, after) == (ruleset_of(want_config), [])
    assert after.sets == want.sets
    assert nft.render_changes(after, want) == []
    if (have_config, have_addresses) == (want_config, want_addresses):
        assert cmds == []


# ---------------------------------------------------------------- hairpin address sets

HAIRPIN = {"port_forwards": [
    {"in_interface": "wan0", "port": 8080, "to_address": "192.168.77.20", "to_port": 80,
     "source": "198.51.100.0/24", "hairpin": True, "comment": "web"},
    {"in_interface": "wan0", "port": 443, "to_address": "fd00:77::20", "hairpin": True}]}
WAN0 = {"wan0": ["198.51.100.1", "2001:db8:100::1", "198.51.100.2"]}


def test_hairpin_matches_the_set_of_its_interface_and_keeps_the_source():
    state = state_of(nft, HAIRPIN, WAN0)
    assert state.sets == {"hp4_wan0": frozenset(["198.51.100.1", "198.51.100.2"]),
                          "hp6_wan0": frozenset(["2001:db8:100::1"])}
    assert {("set", "hp4_wan0"), ("set", "hp6_wan0")} <= state.objects
    text = nft.render_full(state)
    lines = text.splitlines()
    assert '\t\tiifname != "wan0" ip saddr 198.51.100.0/24 ip daddr @hp4_wan0 tcp dport 8080 ' \
        'counter dnat ip to 192.168.77.20:80 comment "web"' in lines
    assert '\t\tiifname != "wan0" ip6 daddr @hp6_wan0 tcp dport 443 counter dnat ip6 to ' \
        'fd00:77::20' in lines
    assert "\tset hp4_wan0 {" in lines
    assert "\t\telements = { 198.51.100.1, 198.51.100.2 }" in lines
    assert "fib daddr" not in text
    # the way back keeps the source limit too
    assert '\t\tiifname != "wan0" ip saddr 198.51.100.0/24 ip daddr 192.168.77.20 tcp dport 80 ' \
        'ct status dnat counter masquerade comment "web"' in lines


def test_an_address_change_is_element_changes_only():
    have = reparse(nft, state_of(nft, HAIRPIN, WAN0))
    want = state_of(nft, HAIRPIN, {"wan0": ["198.51.100.3", "2001:db8:100::1"]})
    cmds = nft.render_changes(have, want)
    assert cmds == [
        "delete element inet ipmasq hp4_wan0 { 198.51.100.1, 198.51.100.2 }",
        "add element inet ipmasq hp4_wan0 { 198.51.100.3 }"]
    assert nft.render_changes(nft_apply(have, cmds), want) == []
    # the interface lost its addresses (a PPP link went down): the sets empty, rules stay
    cmds = nft.render_changes(have, state_of(nft, HAIRPIN, {}))
    assert cmds == [
        "delete element inet ipmasq hp4_wan0 { 198.51.100.1, 198.51.100.2 }",
        "delete element inet ipmasq hp6_wan0 { 2001:db8:100::1 }"]


def test_a_set_no_rule_uses_is_deleted_after_its_rules():
    have = reparse(nft, state_of(nft, HAIRPIN, WAN0))
    config = {"port_forwards": [dict(HAIRPIN["port_forwards"][0]), HAIRPIN["port_forwards"][1]]}
    config["port_forwards"][0].pop("hairpin")
    want = state_of(nft, config, WAN0)
    cmds = nft.render_changes(have, want)
    assert cmds[0] == "flush chain inet ipmasq prerouting"
    assert cmds[-1] == "delete set inet ipmasq hp4_wan0"
    assert nft.render_changes(nft_apply(have, cmds), want) == []


def test_the_hairpin_rule_of_before_is_replaced():
    """A host upgraded from the version that matched any local address."""
    want = state_of(nft, HAIRPIN, WAN0)
    old = nft.render_full(want).replace(
        "ip saddr 198.51.100.0/24 ip daddr @hp4_wan0", "fib daddr type local").replace(
        "ip6 daddr @hp6_wan0", "fib daddr type local")
    have = nft.parse(old)
    assert plan.read_model(nft, have) == (ruleset_of(HAIRPIN), [])  # still hairpin
    cmds = nft.render_changes(have, want)
    assert cmds[0] == "flush chain inet ipmasq prerouting"
    assert not any("fib" in c for c in cmds)
    assert nft.render_changes(nft_apply(have, cmds), want) == []


@pytest.mark.parametrize("text", [
    '"wan0" ip daddr @hp6_wan0 tcp dport 1 dnat ip to 10.0.0.1',  # the other family's set
    '"wan0" ip daddr @other tcp dport 1 dnat ip to 10.0.0.1',  # not a hairpin set
    '"wan0" ip saddr @hp4_wan0 tcp dport 1 dnat ip to 10.0.0.1',  # a source set
])
def test_set_lookups_we_do_not_write_are_unknown_rules(text):
    state = nft.parse("table inet ipmasq {\n\tchain prerouting {\n"
                      "\t\tiifname != %s\n\t}\n}\n" % text)
    [rule] = state.chains["prerouting"]
    assert rule.verdict == "unknown"


def test_set_elements_from_the_host_must_be_addresses():
    want = state_of(nft, HAIRPIN, WAN0)
    have = reparse(nft, want)
    have.sets["hp4_wan0"] = frozenset(["198.51.100.1", "1.2.3.4 } ; flush ruleset"])
    with pytest.raises(rules.RenderError):
        nft.render_changes(have, want)
