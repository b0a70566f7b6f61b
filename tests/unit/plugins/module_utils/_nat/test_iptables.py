"""iptables.py: layout, iptables-restore input, iptables-save parsing, and drift repair.

The fixtures ``tests/unit/fixtures/<name>.iptables-save`` / ``.ip6tables-save`` were captured
from a real kernel by ``tests/unit/fixtures/capture.sh`` (in a network namespace, next to
Docker-style foreign rules) from ``<name>.config.json``.
"""
import shlex

import pytest
from hypothesis import given, settings

from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import iptables, plan, rules

from nat_helpers import (
    CAPTURE_RELEASES, CAPTURED, Refused, configs_and_addresses, fixture_addresses,
    fixture_config, fixture_text, iptables_apply, kinds_differ, reparse, ruleset_of, state_of)

CONFIG = {
    "masquerade": [{"source": "192.168.10.0/24", "out_interface": "ppp0", "comment": "office"},
                   {"source": "fd00::/64", "out_interface": "ppp0"}],
    "port_forwards": [
        {"in_interface": "ppp0", "port": 8080, "to_address": "192.168.10.5", "to_port": 80,
         "hairpin": True},
        {"in_interface": "ppp0", "protocol": "udp", "port": "5000-5010", "to_address": "fd00::6"},
    ],
    "forward": [{"in_interface": "ppp0", "ct_state": ["established", "related"]},
                {"in_interface": "ppp0", "action": "drop"}],
    "helpers": [{"helper": "ftp", "port": 21}],
}


def _kernel(name, release="bookworm"):
    """The State that Host.read builds from the captured iptables-save/ip6tables-save (and
    ``ipset save`` of our sets, when there are some)."""
    try:
        sets = iptables.parse_ipset(fixture_text("%s.ipset-save" % name, release))
    except FileNotFoundError:
        sets = iptables.empty_state().sets
    return iptables.combine(
        iptables.parse_save(fixture_text("%s.iptables-save" % name, release), 4),
        iptables.parse_save(fixture_text("%s.ip6tables-save" % name, release), 6))._replace(sets=sets)


# ---------------------------------------------------------------- render

def test_render_full_creates_our_chains_and_one_jump_each_per_family():
    text = iptables.render_full(state_of(iptables, CONFIG, {"ppp0": ["203.0.113.7"]}))
    parts = iptables.split_script(text.splitlines())
    assert sorted(parts, key=str) == [4, 6, "ipset"]
    assert parts["ipset"].splitlines() == [
        "# ipset restore", "create ipmasq-hp4-ppp0 hash:ip family inet",
        "add ipmasq-hp4-ppp0 203.0.113.7"]
    v4, v6 = parts[4].splitlines(), parts[6].splitlines()
    assert v4[0] == "# iptables-restore --noflush" and v6[0] == "# ip6tables-restore --noflush"
    assert v4[1:] == [
        "*raw", ":IPMASQ-HELPERS - [0:0]",
        "-A IPMASQ-HELPERS -p tcp -m tcp --dport 21 -j CT --helper ftp",
        "-I PREROUTING 1 -j IPMASQ-HELPERS", "COMMIT",
        "*nat", ":IPMASQ-PREROUTING - [0:0]",
        "-A IPMASQ-PREROUTING -i ppp0 -p tcp -m tcp --dport 8080 -j DNAT "
        "--to-destination 192.168.10.5:80",
        "-A IPMASQ-PREROUTING ! -i ppp0 -p tcp -m set --match-set ipmasq-hp4-ppp0 dst "
        "-m tcp --dport 8080 -j DNAT --to-destination 192.168.10.5:80",
        "-I PREROUTING 1 -j IPMASQ-PREROUTING",
        ":IPMASQ-POSTROUTING - [0:0]",
        "-A IPMASQ-POSTROUTING -s 192.168.10.0/24 -o ppp0 -m comment --comment office "
        "-j MASQUERADE",
        "-A IPMASQ-POSTROUTING -d 192.168.10.5/32 ! -i ppp0 -p tcp -m tcp --dport 80 "
        "-m conntrack --ctstate DNAT -j MASQUERADE",
        "-I POSTROUTING 1 -j IPMASQ-POSTROUTING", "COMMIT",
        "*filter", ":IPMASQ-FORWARD - [0:0]",
        "-A IPMASQ-FORWARD -m conntrack --ctstate DNAT -j ACCEPT",
        "-A IPMASQ-FORWARD -i ppp0 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "-A IPMASQ-FORWARD -i ppp0 -j DROP",
        "-I FORWARD 1 -j IPMASQ-FORWARD", "COMMIT"]
    assert "-A IPMASQ-PREROUTING -i ppp0 -p udp -m udp --dport 5000:5010 -j DNAT " \
        "--to-destination fd00::6" in v6
    assert "-A IPMASQ-POSTROUTING -s fd00::/64 -o ppp0 -j MASQUERADE" in v6
    assert not any("192.168." in line for line in v6)
    assert not any("fd00::" in line for line in v4)


def test_a_family_without_rules_gets_no_script():
    state = state_of(iptables, {"masquerade": [{"source": "10.0.0.0/8", "out_interface": "eth0"}]})
    parts = iptables.split_script(iptables.render_full(state).splitlines())
    assert sorted(parts) == [4]
    assert iptables.render_full(state_of(iptables, {})) == "\n"


def test_ipv6_dnat_target_with_port_is_bracketed():
    rule = rules.Rule("prerouting", iif="eth0", proto="tcp", dport="80", verdict="dnat",
                      to_addr="fd00::8", to_port="8080")
    assert iptables.rule_text(rule).endswith("-j DNAT --to-destination [fd00::8]:8080")
    assert iptables.parse_rule("prerouting", iptables.rule_args(rule)) == rule


def test_comment_with_spaces_is_double_quoted_for_iptables_restore():
    """iptables-restore understands double quotes only: 'office LAN' is a "Bad argument"."""
    text = iptables.render_full(state_of(iptables, {"masquerade": [
        {"source": "10.0.0.0/8", "out_interface": "eth0", "comment": "office LAN"}]}))
    assert '--comment "office LAN"' in text


def test_comment_with_an_apostrophe_round_trips():
    ruleset = ruleset_of({"masquerade": [{"out_interface": "eth0", "comment": "it's"}]})
    back = reparse(iptables, plan.want_state(iptables, ruleset))
    assert plan.read_model(iptables, back) == (ruleset, [])


# ---------------------------------------------------------------- round trip

@settings(max_examples=150, deadline=None)
@given(configs_and_addresses())
def test_round_trip_through_iptables_restore_text(config_and_addresses):
    config, addresses = config_and_addresses
    ruleset = ruleset_of(config)
    want = plan.want_state(iptables, ruleset, addresses)
    back = reparse(iptables, want)
    assert back.sets == want.sets
    got, foreign = plan.read_model(iptables, back)
    assert foreign == []
    assert got == ruleset, kinds_differ(got, ruleset)
    assert iptables.render_changes(back, want) == []


# ---------------------------------------------------------------- real kernel output

@pytest.mark.parametrize("release", CAPTURE_RELEASES)
@pytest.mark.parametrize("name", CAPTURED)
def test_kernel_dump_reads_back_as_the_model_that_made_it(name, release):
    ruleset = ruleset_of(fixture_config(name))
    want = plan.want_state(iptables, ruleset, fixture_addresses(name))
    state = _kernel(name, release)
    got, foreign = plan.read_model(iptables, state)
    assert foreign == []
    assert got == ruleset, kinds_differ(got, ruleset)
    assert state.jumps == want.jumps and state.present == want.present
    assert state.sets == want.sets
    assert iptables.render_changes(state, want) == []


@pytest.mark.parametrize("release", CAPTURE_RELEASES)
def test_foreign_chains_and_rules_in_builtin_chains_are_not_ours(release):
    text = fixture_text("gateway.iptables-save", release)
    assert ":DOCKER - [0:0]" in text and "-A POSTROUTING -s 172.17.0.0/16" in text
    state = _kernel("gateway", release)
    rendered = iptables.render_full(state)
    assert "DOCKER" not in rendered and "docker0" not in rendered


@pytest.mark.parametrize("release", CAPTURE_RELEASES)
def test_combined_dump_with_an_ip6tables_marker(release):
    text = "%s# ip6tables-save\n%s" % (fixture_text("gateway.iptables-save", release),
                                       fixture_text("gateway.ip6tables-save", release))
    assert iptables.parse(text) == _kernel("gateway", release)._replace(
        sets=iptables.empty_state().sets)
    # and with an ipset part, as render_full writes it
    text += "# ipset save\n" + fixture_text("gateway.ipset-save", release)
    assert iptables.parse(text) == _kernel("gateway", release)


@pytest.mark.parametrize("release", CAPTURE_RELEASES)
def test_kernel_dump_with_an_apostrophe_in_a_comment(release):
    ruleset = ruleset_of(fixture_config("apostrophe"))
    assert plan.read_model(iptables, _kernel("apostrophe", release)) == (ruleset, [])


# ---------------------------------------------------------------- parse details

def test_hand_typed_builtin_rules_count_only_with_builtins():
    text = "*nat\n-A POSTROUTING -s 192.168.0.0/24 -o ppp0 -j MASQUERADE\nCOMMIT\n"
    assert plan.read_model(iptables, iptables.parse(text))[0]["masquerade"] == ()
    ruleset, foreign = plan.read_model(iptables, iptables.parse(text, builtins=True))
    expected = {"masquerade": [{"source": "192.168.0.0/24", "out_interface": "ppp0"}]}
    assert ruleset == ruleset_of(expected)
    assert foreign == []


def test_a_hand_made_gateways_input_rules_are_not_read_as_ours():
    """Migrating a hand-made gateway reads its NAT and FORWARD rules; its INPUT rules
    protect the host, which the model does not describe, so they stay the admin's."""
    text = ("*nat\n-A POSTROUTING -s 192.168.0.0/24 -o ppp0 -j MASQUERADE\nCOMMIT\n"
            "*filter\n-A INPUT -i lo -j ACCEPT\n-A INPUT -i ppp0 -m state --state NEW -j DROP\n"
            "COMMIT\n")
    ruleset, foreign = plan.read_model(iptables, iptables.parse(text, builtins=True))
    assert foreign == [] and ruleset["input"] == ()
    assert ruleset["masquerade"] == ruleset_of({"masquerade": [
        {"source": "192.168.0.0/24", "out_interface": "ppp0"}]})["masquerade"]


def test_options_we_do_not_write_make_an_unknown_rule():
    text = "*filter\n:IPMASQ-FORWARD - [0:0]\n" \
        "-A IPMASQ-FORWARD -i ppp0 -m limit --limit 5/min -j LOG\nCOMMIT\n"
    state = iptables.parse(text)
    [rule] = state.chains[4]["forward"]
    assert rule.verdict == "unknown"
    assert rule.comment == "-A IPMASQ-FORWARD -i ppp0 -m limit --limit 5/min -j LOG"
    assert plan.read_model(iptables, state)[1] == [rule]
    # it is written back verbatim when a diff shows it
    assert iptables.rule_text(rule) == "-i ppp0 -m limit --limit 5/min -j LOG"


@pytest.mark.parametrize("args, expected", [
    ("-s 10.0.0.1 -p tcp --dport 80:90 -j DNAT --to-destination 10.1.1.1:80-90",
     rules.Rule("x", saddr="10.0.0.1/32", proto="tcp", dport="80-90", verdict="dnat",
                to_addr="10.1.1.1")),  # the same ports: to_port is "unchanged"
    ("-p ipv6-icmp -m state --state RELATED,ESTABLISHED,NEW -j ACCEPT",
     rules.Rule("x", proto="icmpv6", ct_state=("new", "established", "related"),
                verdict="accept")),
    ("-c 10 20 -o eth0 -j SNAT --to-source 203.0.113.1",
     rules.Rule("x", oif="eth0", verdict="snat", to_addr="203.0.113.1")),
    ("-p udp -m udp --dport 1000:2000 -j REJECT --reject-with icmp-port-unreachable",
     rules.Rule("x", proto="udp", dport="1000-2000", verdict="reject")),
    ("--in-interface ppp0 --jump DROP", rules.Rule("x", iif="ppp0", verdict="drop")),
])
def test_parse_rule(args, expected):
    assert iptables.parse_rule("x", shlex.split(args)) == expected


# ---------------------------------------------------------------- changes and drift repair

def test_drift_missing_jump_adds_only_that_jump():
    want = state_of(iptables, CONFIG)
    text = iptables.render_full(want).replace("-I FORWARD 1 -j IPMASQ-FORWARD\n", "", 1)
    have = iptables.parse(text)
    assert have.jumps[4]["forward"] == 0 and have.jumps[6]["forward"] == 1
    cmds = iptables.render_changes(have, want)
    assert cmds == ["# iptables-restore --noflush", "*filter", "-I FORWARD 1 -j IPMASQ-FORWARD",
                    "COMMIT"]
    assert iptables.render_changes(iptables_apply(have, cmds), want) == []
    assert iptables.render_changes(reparse(iptables, want), want) == []


def test_drift_duplicate_jump_leaves_exactly_one():
    want = state_of(iptables, CONFIG)
    have = reparse(iptables, want)
    have.jumps[6]["postrouting"] = 2
    cmds = iptables.render_changes(have, want)
    assert cmds == ["# ip6tables-restore --noflush", "*nat",
                    "-D POSTROUTING -j IPMASQ-POSTROUTING", "-D POSTROUTING -j IPMASQ-POSTROUTING",
                    "-I POSTROUTING 1 -j IPMASQ-POSTROUTING", "COMMIT"]
    assert iptables.render_changes(iptables_apply(have, cmds), want) == []


def test_drift_extra_rule_in_our_chain_rewrites_only_that_chain():
    want = state_of(iptables, CONFIG)
    text = iptables.render_full(want).replace(
        "-I POSTROUTING 1 -j IPMASQ-POSTROUTING\n",
        "-A IPMASQ-POSTROUTING -s 10.99.0.0/16 -o eth9 -j MASQUERADE\n"
        "-I POSTROUTING 1 -j IPMASQ-POSTROUTING\n", 1)
    have = iptables.parse(text)
    cmds = iptables.render_changes(have, want)
    assert cmds == ["# iptables-restore --noflush", "*nat", ":IPMASQ-POSTROUTING - [0:0]"] + [
        "-A IPMASQ-POSTROUTING %s" % iptables.rule_text(r)
        for r in want.chains[4]["postrouting"]] + ["COMMIT"]
    assert iptables.render_changes(iptables_apply(have, cmds), want) == []


def test_drift_chain_missing_in_one_family():
    want = state_of(iptables, CONFIG)
    have = reparse(iptables, want)
    have.chains[6]["prerouting"] = []
    have.present[6].discard("prerouting")
    have.jumps[6]["prerouting"] = 0
    cmds = iptables.render_changes(have, want)
    assert cmds[:3] == ["# ip6tables-restore --noflush", "*nat", ":IPMASQ-PREROUTING - [0:0]"]
    assert cmds[-2:] == ["-I PREROUTING 1 -j IPMASQ-PREROUTING", "COMMIT"]
    assert iptables.render_changes(iptables_apply(have, cmds), want) == []


def test_removing_everything_drops_jumps_then_chains():
    config = {"forward": [{"action": "drop"}, {"source": "fd00::/64", "action": "accept"}]}
    have = reparse(iptables, state_of(iptables, config))
    cmds = iptables.render_changes(have, state_of(iptables, {}))
    assert cmds == [
        "# iptables-restore --noflush", "*filter", "-D FORWARD -j IPMASQ-FORWARD",
        "-F IPMASQ-FORWARD", "-X IPMASQ-FORWARD", "COMMIT",
        "# ip6tables-restore --noflush", "*filter", "-D FORWARD -j IPMASQ-FORWARD",
        "-F IPMASQ-FORWARD", "-X IPMASQ-FORWARD", "COMMIT"]
    after = iptables_apply(have, cmds)
    assert after == iptables.empty_state()


def test_ipv4_only_rules_leave_ip6tables_alone():
    """Rules without addresses go to ip6tables only when the ruleset has IPv6 rules."""
    v4_only = {"forward": [{"in_interface": "ppp0", "action": "drop"},
                           {"source": "192.168.10.0/24", "action": "accept"}],
               "port_forwards": [{"in_interface": "ppp0", "port": 80, "to_address": "192.168.10.5"}]}
    cmds = iptables.render_changes(iptables.empty_state(), state_of(iptables, v4_only))
    assert cmds[0] == "# iptables-restore --noflush"
    assert not [c for c in cmds if "ip6tables" in c], cmds
    with_v6 = dict(v4_only, masquerade=[{"source": "fd00::/64", "out_interface": "ppp0"}])
    cmds = iptables.render_changes(iptables.empty_state(), state_of(iptables, with_v6))
    v6_part = cmds[cmds.index("# ip6tables-restore --noflush"):]
    assert "-A IPMASQ-FORWARD -i ppp0 -j DROP" in v6_part, cmds
    # removing what an earlier IPv6 ruleset left in ip6tables still touches ip6tables
    have = reparse(iptables, state_of(iptables, with_v6))
    cmds = iptables.render_changes(have, state_of(iptables, v4_only))
    assert "-X IPMASQ-POSTROUTING" in cmds[cmds.index("# ip6tables-restore --noflush"):], cmds


def test_split_script_sends_each_part_to_its_tool():
    cmds = iptables.render_changes(iptables.empty_state(), state_of(iptables, CONFIG))
    parts = iptables.split_script(cmds)
    assert parts["ipset"] == "# ipset restore\ncreate ipmasq-hp4-ppp0 hash:ip family inet\n"
    assert parts[4].startswith("# iptables-restore --noflush\n*raw\n")
    assert parts[6].startswith("# ip6tables-restore --noflush\n*raw\n")
    assert parts[4].count("COMMIT") == 3 and parts[6].count("COMMIT") == 3
    assert "\n".join(cmds) + "\n" == parts["ipset"] + parts[4] + parts[6]
    # the sets go after the rules that used them
    cmds = iptables.render_changes(reparse(iptables, state_of(iptables, CONFIG)),
                                   state_of(iptables, {}))
    parts = iptables.split_script(cmds)
    assert parts["ipset-after"] == "# ipset restore, after the rules\n" \
        "destroy ipmasq-hp4-ppp0\n"
    assert cmds[-2:] == ["# ipset restore, after the rules", "destroy ipmasq-hp4-ppp0"]


@settings(max_examples=100, deadline=None)
@given(configs_and_addresses(), configs_and_addresses())
def test_render_changes_takes_any_ruleset_to_any_other(have, want):
    (have_config, have_addresses), (want_config, want_addresses) = have, want
    have = reparse(iptables, state_of(iptables, have_config, have_addresses))
    want = state_of(iptables, want_config, want_addresses)
    cmds = iptables.render_changes(have, want)
    try:
        after = iptables_apply(have, cmds)
    except Refused as exc:
        raise AssertionError("iptables-restore would refuse %s in %r" % (exc, cmds))
    assert plan.read_model(iptables, after) == (ruleset_of(want_config), [])
    assert after.sets == want.sets
    assert iptables.render_changes(after, want) == []
    if (have_config, have_addresses) == (want_config, want_addresses):
        assert cmds == []


# ---------------------------------------------------------------- hairpin address sets

HAIRPIN = {"port_forwards": [
    {"in_interface": "wan0", "port": 8080, "to_address": "192.168.77.20", "to_port": 80,
     "source": "198.51.100.0/24", "hairpin": True, "comment": "web"},
    {"in_interface": "wan0", "port": 443, "to_address": "fd00:77::20", "hairpin": True}]}
WAN0 = {"wan0": ["198.51.100.1", "2001:db8:100::1", "198.51.100.2"]}


def test_hairpin_matches_the_ipset_of_its_interface_and_keeps_the_source():
    state = state_of(iptables, HAIRPIN, WAN0)
    assert state.sets == {4: {"ipmasq-hp4-wan0": frozenset(["198.51.100.1", "198.51.100.2"])},
                          6: {"ipmasq-hp6-wan0": frozenset(["2001:db8:100::1"])}}
    cmds = iptables.render_changes(iptables.empty_state(), state)
    assert cmds[:6] == [
        "# ipset restore",
        "create ipmasq-hp4-wan0 hash:ip family inet",
        "add ipmasq-hp4-wan0 198.51.100.1", "add ipmasq-hp4-wan0 198.51.100.2",
        "create ipmasq-hp6-wan0 hash:ip family inet6", "add ipmasq-hp6-wan0 2001:db8:100::1"]
    assert "-A IPMASQ-PREROUTING -s 198.51.100.0/24 ! -i wan0 -p tcp -m set --match-set " \
        "ipmasq-hp4-wan0 dst -m tcp --dport 8080 -m comment --comment web " \
        "-j DNAT --to-destination 192.168.77.20:80" in cmds
    assert "-A IPMASQ-PREROUTING ! -i wan0 -p tcp -m set --match-set ipmasq-hp6-wan0 dst " \
        "-m tcp --dport 443 -j DNAT --to-destination fd00:77::20" in cmds
    assert "-A IPMASQ-POSTROUTING -s 198.51.100.0/24 -d 192.168.77.20/32 ! -i wan0 -p tcp " \
        "-m tcp --dport 80 -m conntrack --ctstate DNAT -m comment --comment web " \
        "-j MASQUERADE" in cmds
    assert not any("addrtype" in c for c in cmds)
    assert iptables_apply(iptables.empty_state(), cmds) == reparse(iptables, state)


def test_an_address_change_is_ipset_changes_only():
    have = reparse(iptables, state_of(iptables, HAIRPIN, WAN0))
    want = state_of(iptables, HAIRPIN, {"wan0": ["198.51.100.3", "2001:db8:100::1"]})
    cmds = iptables.render_changes(have, want)
    assert cmds == ["# ipset restore", "del ipmasq-hp4-wan0 198.51.100.1",
                    "del ipmasq-hp4-wan0 198.51.100.2", "add ipmasq-hp4-wan0 198.51.100.3"]
    assert iptables.render_changes(iptables_apply(have, cmds), want) == []


def test_the_hairpin_rule_of_before_is_replaced():
    """A host upgraded from the version that matched any local address."""
    want = state_of(iptables, HAIRPIN, WAN0)
    text = iptables.render_full(want)
    old = text.replace("-m set --match-set ipmasq-hp4-wan0 dst -m tcp --dport 8080",
                       "-m tcp --dport 8080 -m addrtype --dst-type LOCAL").replace(
        "-m set --match-set ipmasq-hp6-wan0 dst -m tcp --dport 443",
        "-m tcp --dport 443 -m addrtype --dst-type LOCAL").replace(
        "-s 198.51.100.0/24 ! -i wan0 -p tcp -m tcp --dport 8080 -m addrtype",
        "! -i wan0 -p tcp -m tcp --dport 8080 -m addrtype")
    old = old[old.index("# iptables-restore"):]  # no sets either
    assert old.count("addrtype") == 2
    have = iptables.parse(old)
    assert plan.read_model(iptables, have) == (ruleset_of(HAIRPIN), [])  # still hairpin
    cmds = iptables.render_changes(have, want)
    assert not any("addrtype" in c for c in cmds)
    assert iptables.render_changes(iptables_apply(have, cmds), want) == []


@pytest.mark.parametrize("args", [
    "! -i wan0 -p tcp -m set --match-set ipmasq-hp6-wan0 dst -m tcp --dport 1 -j DNAT "
    "--to-destination 10.0.0.1",  # the other family's set
    "! -i wan0 -p tcp -m set --match-set blocklist dst -m tcp --dport 1 -j DNAT "
    "--to-destination 10.0.0.1",  # not a hairpin set
    "! -i wan0 -p tcp -m set --match-set ipmasq-hp4-wan0 src -m tcp --dport 1 -j DNAT "
    "--to-destination 10.0.0.1",  # source addresses
    "! -i wan0 -p tcp -m set ! --match-set ipmasq-hp4-wan0 dst -j DNAT --to-destination 10.0.0.1",
])
def test_set_matches_we_do_not_write_are_unknown(args):
    with pytest.raises(iptables._Unknown):
        iptables.parse_rule("prerouting", shlex.split(args))


def test_ipset_save_is_read_for_our_sets_only():
    text = ("create blocklist hash:net family inet hashsize 1024 maxelem 65536\n"
            "add blocklist 203.0.113.0/24\n"
            "create ipmasq-hp4-wan0 hash:ip family inet hashsize 1024 maxelem 65536 "
            "bucketsize 12 initval 0x1\n"
            "add ipmasq-hp4-wan0 198.51.100.1\n"
            "create ipmasq-hp6-wan0 hash:net family inet6 hashsize 1024\n"  # not what we make
            "add ipmasq-hp6-wan0 2001:db8::/64\n"
            "create ipmasq-hp6-ppp0 hash:ip family inet6 hashsize 1024\n")
    assert iptables.parse_ipset(text) == {
        4: {"ipmasq-hp4-wan0": frozenset(["198.51.100.1"])},
        6: {"ipmasq-hp6-ppp0": frozenset()}}


# ---------------------------------------------------------------- per-rule timeouts (nfct)

TIMEOUTS = {"masquerade": [
    {"source": "192.168.10.0/24", "out_interface": "ppp0",
     "timeouts": {"udp": 30, "tcp_established": 960, "tcp_close": 10}},
    {"source": "fd00::/64", "out_interface": "ppp0", "timeouts": {"udp": 45, "udp_stream": 90}}]}

# Captured on Debian 12 (nfct 1.4.7, iptables 1.8.9 nf_tables, kernel 6.18) in a network
# namespace, after loading render_full of TIMEOUTS: ``nfct list timeout``, then
# ``iptables-save`` and ``ip6tables-save`` (their comment lines left out).
NFCT_LIST = ('.5jn5 = {\n'
             '\t.l3proto = 2,\n'
             '\t.l4proto = 6,\n'
             '\t.policy = {\n'
             '\t\t.SYN_SENT = 120,\n'
             '\t\t.SYN_RECV = 60,\n'
             '\t\t.ESTABLISHED = 960,\n'
             '\t\t.FIN_WAIT = 120,\n'
             '\t\t.CLOSE_WAIT = 60,\n'
             '\t\t.LAST_ACK = 30,\n'
             '\t\t.TIME_WAIT = 120,\n'
             '\t\t.CLOSE = 10,\n'
             '\t\t.SYN_SENT2 = 120,\n'
             '\t\t.RETRANS = 300,\n'
             '\t\t.UNACKNOWLEDGED = 300,\n'
             '\t},\n'
             '};\n'
             '.7elq = {\n'
             '\t.l3proto = 10,\n'
             '\t.l4proto = 17,\n'
             '\t.policy = {\n'
             '\t\t.UNREPLIED = 45,\n'
             '\t\t.REPLIED = 90,\n'
             '\t},\n'
             '};\n'
             '.tume = {\n'
             '\t.l3proto = 2,\n'
             '\t.l4proto = 17,\n'
             '\t.policy = {\n'
             '\t\t.UNREPLIED = 30,\n'
             '\t\t.REPLIED = 120,\n'
             '\t},\n'
             '};\n')
TIMEOUTS_SAVE = {4: ('*raw\n'
                     ':PREROUTING ACCEPT [0:0]\n'
                     ':OUTPUT ACCEPT [0:0]\n'
                     ':IPMASQ-HELPERS - [0:0]\n'
                     '-A PREROUTING -j IPMASQ-HELPERS\n'
                     '-A IPMASQ-HELPERS -s 192.168.10.0/24 -p tcp -m comment --comment "ipmasq timeouts established=960,close=10" -j CT --timeout 5jn5\n'
                     '-A IPMASQ-HELPERS -s 192.168.10.0/24 -p udp -m comment --comment "ipmasq timeouts unreplied=30" -j CT --timeout tume\n'
                     'COMMIT\n'
                     '*nat\n'
                     ':PREROUTING ACCEPT [0:0]\n'
                     ':INPUT ACCEPT [0:0]\n'
                     ':OUTPUT ACCEPT [0:0]\n'
                     ':POSTROUTING ACCEPT [0:0]\n'
                     ':IPMASQ-POSTROUTING - [0:0]\n'
                     '-A POSTROUTING -j IPMASQ-POSTROUTING\n'
                     '-A IPMASQ-POSTROUTING -s 192.168.10.0/24 -o ppp0 -j MASQUERADE\n'
                     'COMMIT\n'),
                 6: ('*raw\n'
                     ':PREROUTING ACCEPT [0:0]\n'
                     ':OUTPUT ACCEPT [0:0]\n'
                     ':IPMASQ-HELPERS - [0:0]\n'
                     '-A PREROUTING -j IPMASQ-HELPERS\n'
                     '-A IPMASQ-HELPERS -s fd00::/64 -p udp -m comment --comment "ipmasq timeouts unreplied=45,replied=90" -j CT --timeout 7elq\n'
                     'COMMIT\n'
                     '*nat\n'
                     ':PREROUTING ACCEPT [0:0]\n'
                     ':INPUT ACCEPT [0:0]\n'
                     ':OUTPUT ACCEPT [0:0]\n'
                     ':POSTROUTING ACCEPT [0:0]\n'
                     ':IPMASQ-POSTROUTING - [0:0]\n'
                     '-A POSTROUTING -j IPMASQ-POSTROUTING\n'
                     '-A IPMASQ-POSTROUTING -s fd00::/64 -o ppp0 -j MASQUERADE\n'
                     'COMMIT\n')}


def _captured_timeouts():
    """What Host.read builds from ``nfct list timeout`` and iptables-save/ip6tables-save,
    captured in a network namespace after loading render_full of TIMEOUTS."""
    objects = iptables.parse_nfct(NFCT_LIST)
    return iptables.combine(
        iptables.parse_save(TIMEOUTS_SAVE[4], 4, timeouts=objects),
        iptables.parse_save(TIMEOUTS_SAVE[6], 6, timeouts=objects))


def test_nfct_list_output_gives_each_object_with_the_states_the_model_knows():
    assert iptables.parse_nfct(NFCT_LIST) == {
        "5jn5": (4, "tcp", (("syn_sent", 120), ("syn_recv", 60), ("established", 960),
                            ("fin_wait", 120), ("close_wait", 60), ("last_ack", 30),
                            ("time_wait", 120), ("close", 10))),
        "7elq": (6, "udp", (("unreplied", 45), ("replied", 90))),
        "tume": (4, "udp", (("unreplied", 30), ("replied", 120)))}


def test_nfct_objects_of_other_protocols_are_kept_as_taken_names():
    text = ".gre1 = {\n\t.l3proto = 2,\n\t.l4proto = 47,\n\t.policy = {\n\t\t.UNREPLIED = 30,\n" \
           "\t},\n};\n"
    assert iptables.parse_nfct(text) == {"gre1": (4, "other", ())}


def test_captured_timeout_rules_read_back_as_the_model_that_made_them():
    state = _captured_timeouts()
    assert plan.read_model(iptables, state) == (ruleset_of(TIMEOUTS), [])
    assert iptables.render_changes(state, plan.want_state(iptables, ruleset_of(TIMEOUTS))) == []


def test_a_timeout_rule_whose_object_is_missing_or_differs_is_not_ours():
    objects = iptables.parse_nfct(NFCT_LIST)
    changed = dict(objects, tume=(4, "udp", (("unreplied", 31), ("replied", 120))))
    for timeouts in (dict((k, v) for k, v in objects.items() if k != "tume"), changed,
                     dict(objects, tume=(6, "udp", objects["tume"][2]))):
        state = iptables.parse_save(TIMEOUTS_SAVE[4], 4, timeouts=timeouts)
        helpers = state.chains[4]["helpers"]
        assert [r.verdict for r in helpers] == ["timeout", "unknown"]
        assert helpers[1].comment.endswith("-j CT --timeout tume")


def test_timeout_objects_are_made_before_the_rules_and_deleted_after_them():
    have = _captured_timeouts()
    config = {"masquerade": [dict(TIMEOUTS["masquerade"][0], timeouts={"udp": 31}),
                             TIMEOUTS["masquerade"][1]]}
    want = plan.want_state(iptables, ruleset_of(config))
    [new] = set(want.timeouts) - set(have.timeouts)
    commands = iptables.render_changes(have, want)
    assert commands[:2] == ["# nfct, before the rules", "add timeout %s inet udp unreplied 31" % new]
    assert commands[-3:] == ["# nfct, after the rules", "delete timeout 5jn5", "delete timeout tume"]
    assert reparse(iptables, want).timeouts == want.timeouts
    assert iptables_apply(have, commands).timeouts == dict(
        (k, v) for k, v in list(have.timeouts.items()) + list(want.timeouts.items())
        if k not in ("5jn5", "tume"))


def test_an_object_with_our_name_that_no_rule_of_ours_uses_and_sets_other_timeouts_is_foreign():
    want = plan.want_state(iptables, ruleset_of(TIMEOUTS))
    name = sorted(n for n, obj in want.timeouts.items() if obj[1] == "udp" and obj[0] == 4)[0]
    foreign = iptables.empty_state()._replace(timeouts={name: (4, "udp", (("unreplied", 99),))})
    with pytest.raises(rules.RenderError, match=r"timeout object %s exists and is not ours "
                       r"\(no rule of ours uses it\): it sets IPv4 udp \{unreplied: 99\}" % name):
        iptables.render_changes(foreign, want)
    gre = iptables.empty_state()._replace(timeouts=iptables.parse_nfct(
        ".%s = {\n\t.l3proto = 2,\n\t.l4proto = 47,\n\t.policy = {\n\t\t.UNREPLIED = 30,\n\t},\n};\n"
        % name))
    with pytest.raises(rules.RenderError, match="it sets timeouts of another protocol or family"):
        iptables.render_changes(gre, want)
    # one that sets the same timeouts (left by a run that failed) is used as it is
    same = iptables.empty_state()._replace(timeouts={name: (4, "udp", (("unreplied", 30), ("replied", 120)))})
    assert "add timeout %s inet udp unreplied 30" % name not in iptables.render_changes(same, want)


def test_two_policies_with_the_same_object_name_are_refused_naming_both(monkeypatch):
    monkeypatch.setattr(iptables, "object_name", lambda rule: "aaaa")
    with pytest.raises(rules.RenderError, match=r"the timeouts of source fd00::/64 \(IPv6 udp "
                       r"\{unreplied: 45, replied: 90\}\) and of source 192.168.10.0/24 \(IPv4 "
                       r"tcp \{established: 960, close: 10\}\) get the same timeout object name "
                       r"aaaa"):
        plan.want_state(iptables, ruleset_of(TIMEOUTS))
