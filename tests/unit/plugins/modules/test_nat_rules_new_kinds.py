"""static_nat, npt, connection_limits, interface patterns and the NAT options (ports,
random_fully, persistent, timeouts) through the module without a host: the rule text of
each backend, every state and its idempotent second run, check and diff mode, gathered,
rendered and parsed."""
import copy

import pytest

from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import (
    diff, iptables, model, nft, plan)

from nat_helpers import CODECS, reparse, ruleset_of, state_of

from .test_nat_rules import machine, no_host, run  # noqa: F401  pylint: disable=unused-import

NEW = {
    "static_nat": [
        {"interface": "ppp0", "external": "203.0.113.10", "internal": "192.168.10.20",
         "comment": "mail"},
        {"interface": "ppp+", "external": "203.0.113.32/29", "internal": "192.168.10.32/29",
         "source": "198.51.100.0/24", "hairpin": True}],
    "npt": [{"interface": "ppp0", "internal": "fd00:10::/64", "external": "2001:db8:10::/64"}],
    "connection_limits": [{"source": "192.168.10.0/24", "per_address": 128},
                          {"source": "fd00:10::/64", "per_address": 64, "protocol": "tcp",
                           "action": "drop"}],
    "masquerade": [{"source": "192.168.10.0/24", "out_interface": "ppp+", "ports": "1024-65535",
                    "random_fully": True}],
    "snat": [{"source": "10.20.0.0/16", "out_interface": "eth0",
              "to_address": "203.0.113.30-203.0.113.40", "persistent": True}],
}
TIMEOUTS = {"masquerade": [dict(NEW["masquerade"][0],
                                timeouts={"tcp_established": 960, "udp": 30})]}

# The rule text each backend renders (RV(diff) lines: chain, then the rule).
NFT_LINES = [
    'prerouting: iifname "ppp*" ip saddr 198.51.100.0/24 ip daddr 203.0.113.32/29 '
    'counter dnat ip prefix to 192.168.10.32/29',
    'prerouting: iifname != "ppp*" ip saddr 198.51.100.0/24 ip daddr 203.0.113.32/29 '
    'counter dnat ip prefix to 192.168.10.32/29',
    'prerouting: iifname "ppp0" ip daddr 203.0.113.10 counter dnat ip prefix to 192.168.10.20/32 '
    'comment "mail"',
    'postrouting: ip saddr 192.168.10.32/29 oifname "ppp*" counter snat ip prefix to 203.0.113.32/29',
    'postrouting: ip saddr 192.168.10.20 oifname "ppp0" counter snat ip prefix to 203.0.113.10/32 '
    'comment "mail"',
    'postrouting: ip saddr 192.168.10.0/24 oifname "ppp*" meta l4proto tcp '
    'counter masquerade to :1024-65535 fully-random',
    'postrouting: ip saddr 192.168.10.0/24 oifname "ppp*" meta l4proto udp '
    'counter masquerade to :1024-65535 fully-random',
    'postrouting: ip saddr 192.168.10.0/24 oifname "ppp*" counter masquerade fully-random',
    'postrouting: ip saddr 10.20.0.0/16 oifname "eth0" counter snat ip to 203.0.113.30-203.0.113.40 '
    'persistent',
    'postrouting: iifname != "ppp*" ip saddr 198.51.100.0/24 ip daddr 192.168.10.32/29 '
    'ct status dnat counter masquerade',
    'forward: ip saddr 192.168.10.0/24 ct state new add @cl4_%s { ip saddr ct count over 128 } '
    'counter reject',
    'forward: ip6 saddr fd00:10::/64 meta l4proto tcp ct state new add @cl6_%s '
    '{ ip6 saddr ct count over 64 } counter drop',
    'forward: ct status dnat counter accept',
    'forward: iifname "ppp0" ip6 daddr fd00:10::/64 counter accept',
    'npt_in: iifname "ppp0" ip6 daddr 2001:db8:10::/64 counter dnat ip6 prefix to fd00:10::/64',
    'npt_out: ip6 saddr fd00:10::/64 oifname "ppp0" counter snat ip6 prefix to 2001:db8:10::/64',
]
IPT_LINES = [
    "prerouting: -s 198.51.100.0/24 -d 203.0.113.32/29 -i ppp+ -j NETMAP --to 192.168.10.32/29",
    "prerouting: -s 198.51.100.0/24 -d 203.0.113.32/29 ! -i ppp+ "
    "-j NETMAP --to 192.168.10.32/29",
    "prerouting: -d 203.0.113.10/32 -i ppp0 -m comment --comment mail "
    "-j NETMAP --to 192.168.10.20/32",
    "postrouting: -s 192.168.10.32/29 -o ppp+ -j NETMAP --to 203.0.113.32/29",
    "postrouting: -s 192.168.10.20/32 -o ppp0 -m comment --comment mail "
    "-j NETMAP --to 203.0.113.10/32",
    "postrouting: -s 192.168.10.0/24 -o ppp+ -p tcp -j MASQUERADE --to-ports 1024-65535 "
    "--random-fully",
    "postrouting: -s 192.168.10.0/24 -o ppp+ -p udp -j MASQUERADE --to-ports 1024-65535 "
    "--random-fully",
    "postrouting: -s 192.168.10.0/24 -o ppp+ -j MASQUERADE --random-fully",
    "postrouting: -s 10.20.0.0/16 -o eth0 -j SNAT --to-source 203.0.113.30-203.0.113.40 "
    "--persistent",
    "postrouting: -s 198.51.100.0/24 -d 192.168.10.32/29 ! -i ppp+ -m conntrack --ctstate DNAT "
    "-j MASQUERADE",
    "forward: -s 192.168.10.0/24 -m conntrack --ctstate NEW -m connlimit --connlimit-above 128 "
    "--connlimit-mask 32 --connlimit-saddr -j REJECT",
    "forward: -s fd00:10::/64 -p tcp -m conntrack --ctstate NEW -m connlimit "
    "--connlimit-above 64 --connlimit-mask 128 --connlimit-saddr -j DROP",
    "forward: -m conntrack --ctstate DNAT -j ACCEPT",
    "forward: -d fd00:10::/64 -i ppp0 -j ACCEPT",
    "helpers: -d 2001:db8:10::/64 -i ppp0 -j CT --notrack",
    "helpers: -s fd00:10::/64 -j CT --notrack",
    "npt_in: -d 2001:db8:10::/64 -i ppp0 -j DNPT --src-pfx 2001:db8:10::/64 "
    "--dst-pfx fd00:10::/64",
    "npt_out: -s fd00:10::/64 -o ppp0 -j SNPT --src-pfx fd00:10::/64 --dst-pfx 2001:db8:10::/64",
]


def _limit_sets():
    limits = [r for r in plan.want_state(nft, ruleset_of(NEW)).chains["forward"] if r.ct_count]
    return [nft.limit_set(r).split("_")[1] for r in limits]


def test_the_rules_of_the_new_kinds_on_nftables():
    expected = [line % _limit_sets()[0] if "cl4_" in line else
                line % _limit_sets()[1] if "cl6_" in line else line for line in NFT_LINES]
    lines = plan.ruleset_lines(nft, plan.want_state(nft, ruleset_of(NEW))).splitlines()
    assert lines == expected


def test_the_rules_of_the_new_kinds_on_iptables():
    lines = plan.ruleset_lines(iptables, plan.want_state(iptables, ruleset_of(NEW))).splitlines()
    assert lines == IPT_LINES


def test_per_rule_timeouts_on_nftables_are_ct_timeout_objects():
    state = plan.want_state(nft, ruleset_of(TIMEOUTS))
    text = nft.render_full(state)
    timeouts = [r for r in state.chains["helpers"] if r.ct_timeout]
    assert [(r.saddr, r.proto, r.ct_timeout) for r in timeouts] == [
        ("192.168.10.0/24", "tcp", (("established", 960),)),
        ("192.168.10.0/24", "udp", (("unreplied", 30),))]
    for rule in timeouts:
        name = nft.r.timeout_name(rule)
        assert 'ct timeout set "%s"' % name in text
        assert len(name) <= 31  # what iptables' CT target would take
    assert 'policy = { established: 960 }; comment "established=960"; }' in text
    assert 'policy = { unreplied: 30 }; comment "unreplied=30"; }' in text
    assert plan.read_model(nft, nft.parse(text))[0] == ruleset_of(TIMEOUTS)


def test_per_rule_timeouts_on_iptables_are_ct_targets_with_nfct_objects():
    state = plan.want_state(iptables, ruleset_of(TIMEOUTS))
    text = iptables.render_full(state)
    timeouts = [r for r in state.chains[4]["helpers"] if r.ct_timeout]
    names = [iptables.object_name(r) for r in timeouts]
    assert all(len(name) == 4 for name in names) and len(set(names)) == 2
    assert state.timeouts == {names[0]: (4, "tcp", (("established", 960),)),
                              names[1]: (4, "udp", (("unreplied", 30),))}
    assert text.startswith("# nfct, before the rules\n")
    assert "add timeout %s inet tcp established 960\n" % names[0] in text
    assert "add timeout %s inet udp unreplied 30\n" % names[1] in text
    assert '-A IPMASQ-HELPERS -s 192.168.10.0/24 -p udp -m comment --comment ' \
        '"ipmasq timeouts unreplied=30" -j CT --timeout %s\n' % names[1] in text
    assert plan.read_model(iptables, iptables.parse(text))[0] == ruleset_of(TIMEOUTS)


@pytest.mark.parametrize("state", ["merged", "replaced", "overridden"])
def test_per_rule_timeouts_on_iptables_without_nfct_fail_naming_the_package(machine, state):
    machine.tools.discard("nfct")
    result = run(backend="iptables", state=state, config=copy.deepcopy(TIMEOUTS))
    assert result["failed"] is True and result["changed"] is False
    assert "need the nfct command (Debian/Ubuntu package nfct)" in result["msg"]
    assert result["msg"].endswith("nothing was changed")
    assert [c for c in machine.calls if c[0] in ("apply", "write_files")] == []


def test_removing_the_timeouts_deletes_their_objects_after_the_rules(machine):
    run(backend="iptables", config=copy.deepcopy(TIMEOUTS))
    names = sorted(machine.states["iptables"].timeouts)
    result = run(backend="iptables", state="replaced", config=copy.deepcopy(
        {"masquerade": [dict(NEW["masquerade"][0])]}))
    commands = result["commands"]
    assert commands[-3:] == ["# nfct, after the rules"] + [
        "delete timeout %s" % name for name in names]
    assert machine.states["iptables"].timeouts == {}


@pytest.mark.parametrize("backend", sorted(CODECS))
def test_new_kinds_apply_then_change_nothing_and_check_mode_predicts_it(machine, backend):
    config = dict(NEW, **TIMEOUTS)
    checked = run(backend=backend, config=copy.deepcopy(config), check_mode=True, diff=True)
    assert checked["changed"] is True and [c for c in machine.calls if c[0] == "apply"] == []
    real = run(backend=backend, config=copy.deepcopy(config), diff=True)
    assert [c for c in machine.calls if c[0] == "apply"] == [
        ("apply", backend, checked["commands"])]
    assert checked == real
    assert real["after"] == model.ruleset_to_dict(ruleset_of(config))
    gathered = run(backend=backend, state="gathered")["gathered"]
    assert gathered == real["after"]
    assert ruleset_of(gathered) == ruleset_of(config)
    machine.calls.clear()
    again = run(backend=backend, config=copy.deepcopy(config))
    assert again["changed"] is False and again["commands"] == []
    assert machine.changing_calls() == []


STATE_CASES = [
    ("merged", {"static_nat": [{"interface": "ppp0", "external": "203.0.113.11",
                                "internal": "192.168.10.21"}]}),
    ("replaced", {"connection_limits": [{"source": "192.168.10.0/24", "per_address": 10}]}),
    ("replaced", {"npt": []}),
    ("overridden", {"npt": NEW["npt"]}),
    ("deleted", {"static_nat": [{"interface": "ppp0", "external": "203.0.113.10"}]}),
    ("deleted", {"connection_limits": [{"source": "fd00:10::/64", "protocol": "tcp"}]}),
    ("deleted", {"npt": [{"interface": "ppp0", "internal": "fd00:10::/64"}]}),
    ("merged", {"masquerade": [dict(NEW["masquerade"][0], ports=None, random_fully=False)]}),
]


@pytest.mark.parametrize("backend", sorted(CODECS))
@pytest.mark.parametrize("state, config", STATE_CASES)
def test_every_state_of_the_new_kinds_then_an_idempotent_second_run(
        machine, backend, state, config):
    codec = CODECS[backend]
    machine.states[backend] = reparse(codec, state_of(codec, NEW))
    first = run(backend=backend, state=state, config=copy.deepcopy(config), diff=True)
    assert first["changed"] is True and first["commands"], first
    wanted = model.build_config(config, partial=state == "deleted")
    expected = diff.after_state(state, ruleset_of(NEW), wanted)
    assert first["after"] == model.ruleset_to_dict(expected)
    assert first["diff"]["before"] != first["diff"]["after"]
    assert run(backend=backend, state="gathered")["gathered"] == model.ruleset_to_dict(expected)
    machine.calls.clear()
    second = run(backend=backend, state=state, config=copy.deepcopy(config))
    assert second["changed"] is False and second["commands"] == []
    assert machine.changing_calls() == []


@pytest.mark.parametrize("backend", sorted(CODECS))
def test_rendered_then_parsed_is_the_config_for_the_new_kinds(no_host, backend):
    config = dict(NEW, **TIMEOUTS)
    rendered = run(state="rendered", backend=backend, config=copy.deepcopy(config))["rendered"]
    parsed = run(state="parsed", running_config="\n".join(rendered))["parsed"]
    assert ruleset_of(parsed) == ruleset_of(config)
    assert parsed["static_nat"][1] == {"interface": "ppp0", "external": "203.0.113.10",
                                       "internal": "192.168.10.20", "comment": "mail"}


def test_a_merged_entry_that_disagrees_with_the_host_is_refused(machine):
    machine.states["nftables"] = reparse(nft, state_of(nft, TIMEOUTS))
    result = run(config={"snat": [{"source": "192.168.10.0/24", "out_interface": "eth1",
                                   "to_address": "203.0.113.50", "timeouts": {"udp": 60}}]})
    assert result["failed"] is True and result["changed"] is False
    assert "timeouts: differs from" in result["msg"] and "192.168.10.0/24" in result["msg"]
    assert [c for c in machine.calls if c[0] == "apply"] == []


@pytest.mark.parametrize("backend", sorted(CODECS))
def test_a_static_nat_on_an_address_the_port_forwards_use_is_refused(machine, backend):
    """Port forwards publish their interface's addresses; a static NAT of one of them
    would take every port of it."""
    machine.interfaces = {"ppp0": ["203.0.113.10", "2001:db8::1"]}
    config = {"static_nat": NEW["static_nat"][:1],
              "port_forwards": [{"in_interface": "ppp0", "port": 8080,
                                 "to_address": "192.168.10.5"}]}
    result = run(backend=backend, config=copy.deepcopy(config))
    assert result["failed"] is True and result["changed"] is False
    assert "static_nat (interface ppp0, external 203.0.113.10).external: 203.0.113.10 is an " \
        "address of ppp0, where port_forwards (in_interface ppp0, protocol tcp, port 8080)" \
        in result["msg"], result["msg"]
    assert [c for c in machine.calls if c[0] == "apply"] == []
    # another address of the interface, or no port forward there: fine
    machine.interfaces = {"ppp0": ["198.51.100.7"]}
    assert run(backend=backend, config=copy.deepcopy(config))["changed"] is True
