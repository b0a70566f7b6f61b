"""rules.py: the model as backend-neutral chains, and back."""
from collections import Counter

import pytest
from hypothesis import given, settings

from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import rules
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat.rules import Rule

from nat_helpers import configs, ruleset_of

CONFIG = {
    "masquerade": [{"source": "192.168.10.0/24", "out_interface": "ppp0", "comment": "office"},
                   {"out_interface": "wan1"}],
    "snat": [{"source": "10.20.0.0/16", "out_interface": "eth0", "to_address": "203.0.113.10"}],
    "port_forwards": [
        {"in_interface": "ppp0", "port": 8080, "to_address": "192.168.10.5", "to_port": 80,
         "hairpin": True, "comment": "web"},
        {"in_interface": "ppp0", "protocol": "udp", "port": 53, "to_address": "fd00::53",
         "source": "2001:db8::/48"},
    ],
    "forward": [{"in_interface": "ppp0", "ct_state": ["established", "related"]},
                {"in_interface": "ppp0", "action": "drop"}],
    "helpers": [{"helper": "ftp", "port": 21}],
}


def test_to_rules_lays_out_every_chain():
    chains, lookups = rules.to_rules(ruleset_of(CONFIG))
    assert lookups == {4: {}, 6: {}}  # not asked for: every forward is a rule
    assert chains["postrouting"] == [  # most specific source first, across both kinds
        Rule("postrouting", saddr="192.168.10.0/24", oif="ppp0", verdict="masquerade",
             comment="office"),
        Rule("postrouting", saddr="10.20.0.0/16", oif="eth0", verdict="snat",
             to_addr="203.0.113.10"),
        Rule("postrouting", oif="wan1", verdict="masquerade"),
        # hairpin return path: after every source NAT rule
        Rule("postrouting", iif="ppp0", iif_neg=True, daddr="192.168.10.5/32", proto="tcp",
             dport="80", ct_dnat=True, verdict="masquerade", comment="web"),
    ]
    assert chains["prerouting"] == [
        Rule("prerouting", iif="ppp0", proto="tcp", dport="8080", verdict="dnat",
             to_addr="192.168.10.5", to_port="80", comment="web"),
        # hairpin: from elsewhere, to ppp0's own addresses only
        Rule("prerouting", iif="ppp0", iif_neg=True, local_if="ppp0", proto="tcp", dport="8080",
             verdict="dnat", to_addr="192.168.10.5", to_port="80", comment="web"),
        Rule("prerouting", iif="ppp0", saddr="2001:db8::/48", proto="udp", dport="53",
             verdict="dnat", to_addr="fd00::53"),
    ]
    assert chains["forward"] == [
        rules.DNAT_ACCEPT,
        Rule("forward", iif="ppp0", ct_state=("established", "related"), verdict="accept"),
        Rule("forward", iif="ppp0", verdict="drop"),
    ]
    assert chains["helpers"] == [Rule("helpers", proto="tcp", dport="21", verdict="helper",
                                      helper="ftp")]


def test_no_port_forwards_no_dnat_accept():
    chains = rules.to_rules(ruleset_of({"forward": [{"action": "drop"}]}))[0]
    assert rules.DNAT_ACCEPT not in chains["forward"]
    assert chains["forward"] == [Rule("forward", verdict="drop")]


def test_hairpin_masquerades_the_translated_port_of_a_v6_target():
    chains = rules.to_rules(ruleset_of({"port_forwards": [
        {"in_interface": "ppp0", "port": 443, "to_address": "fd00::8", "to_port": 8443,
         "hairpin": True}]}))[0]
    assert chains["postrouting"] == [Rule(
        "postrouting", iif="ppp0", iif_neg=True, daddr="fd00::8/128", proto="tcp",
        dport="8443", ct_dnat=True, verdict="masquerade")]


def test_from_rules_inverts_to_rules():
    ruleset = ruleset_of(CONFIG)
    assert rules.from_rules(*rules.to_rules(ruleset)) == (ruleset, [])
    assert rules.from_rules(*rules.to_rules(ruleset, lookups=True)) == (ruleset, [])


def test_single_port_forwards_from_any_source_become_lookup_entries():
    chains, lookups = rules.to_rules(ruleset_of(CONFIG), lookups=True)
    # the hairpin forward's DNAT is an entry; its loop rules stay rules
    assert lookups == {4: {("ppp0", "tcp", "8080"): ("192.168.10.5", "80", "web")}, 6: {}}
    assert chains["prerouting"] == [
        Rule("prerouting", iif="ppp0", iif_neg=True, local_if="ppp0", proto="tcp", dport="8080",
             verdict="dnat", to_addr="192.168.10.5", to_port="80", comment="web"),
        Rule("prerouting", iif="ppp0", saddr="2001:db8::/48", proto="udp", dport="53",
             verdict="dnat", to_addr="fd00::53"),
    ]
    assert chains["postrouting"] == rules.to_rules(ruleset_of(CONFIG))[0]["postrouting"]
    # a range, or a limit on the source, keeps a rule; the same port is None
    assert rules.lookup_entry(ruleset_of({"port_forwards": [
        {"in_interface": "a", "port": "80-81", "to_address": "10.0.0.1"}]})["port_forwards"][0]) is None
    assert rules.to_rules(ruleset_of({"port_forwards": [
        {"in_interface": "a", "protocol": "tcp_udp", "port": 53, "to_address": "fd00::1",
         "to_port": 53}]}), lookups=True)[1] == {
        4: {}, 6: {("a", "tcp", "53"): ("fd00::1", None, None),
                   ("a", "udp", "53"): ("fd00::1", None, None)}}


def test_lookup_rules_are_the_dnat_rules_the_entries_stand_for():
    ruleset = ruleset_of(CONFIG)
    with_rules = rules.to_rules(ruleset)[0]["prerouting"]
    chains, lookups = rules.to_rules(ruleset, lookups=True)
    assert rules.lookup_rules(lookups) == [with_rules[0]]


@settings(max_examples=150, deadline=None)
@given(configs())
def test_from_rules_inverts_to_rules_for_any_valid_config(config):
    ruleset = ruleset_of(config)
    assert rules.from_rules(*rules.to_rules(ruleset)) == (ruleset, [])
    assert rules.from_rules(*rules.to_rules(ruleset, lookups=True)) == (ruleset, [])


@pytest.mark.parametrize("rule", [
    pytest.param(Rule("postrouting", saddr="10.0.0.0/8", verdict="masquerade"),
                 id="masquerade-without-oif"),
    pytest.param(Rule("postrouting", oif="eth0", proto="tcp", verdict="masquerade"),
                 id="masquerade-with-protocol"),
    pytest.param(Rule("postrouting", oif="eth0", verdict="accept"), id="accept-in-postrouting"),
    pytest.param(Rule("postrouting", oif="eth0", verdict="masquerade", to_addr="1.2.3.4"),
                 id="masquerade-with-to"),
    pytest.param(Rule("prerouting", iif="eth0", proto="tcp", dport="80", verdict="dnat"),
                 id="dnat-without-target"),
    pytest.param(Rule("prerouting", proto="tcp", dport="80", verdict="dnat", to_addr="10.0.0.1"),
                 id="dnat-without-iif"),
    pytest.param(Rule("prerouting", iif="eth0", proto="icmp", verdict="dnat", to_addr="10.0.0.1"),
                 id="dnat-icmp"),
    pytest.param(Rule("prerouting", iif="eth0", proto="tcp", dport="80", daddr="1.2.3.4/32",
                      verdict="dnat", to_addr="10.0.0.1"), id="dnat-with-daddr"),
    pytest.param(Rule("forward", iif="eth0", verdict="masquerade"), id="masquerade-in-forward"),
    pytest.param(Rule("forward", iif="eth0", to_addr="1.2.3.4", verdict="accept"),
                 id="accept-with-to"),
    pytest.param(Rule("forward", verdict="unknown", comment="log prefix x"), id="unknown"),
    pytest.param(Rule("helpers", proto="tcp", dport="21", verdict="accept"), id="helpers-accept"),
    pytest.param(Rule("helpers", iif="eth0", proto="tcp", dport="21", verdict="helper",
                      helper="ftp"), id="helper-with-iif"),
])
def test_rules_outside_the_model_are_foreign(rule):
    chains = rules.to_rules(ruleset_of(CONFIG))[0]
    chains[rule.chain] = chains[rule.chain] + [rule]
    ruleset, foreign = rules.from_rules(chains)
    assert foreign == [rule]
    assert ruleset == ruleset_of(CONFIG)


def test_hairpin_flag_comes_from_the_loop_rule():
    config = {"port_forwards": [
        {"in_interface": "ppp0", "port": 80, "to_address": "10.0.0.5", "hairpin": True},
        {"in_interface": "ppp0", "port": 81, "to_address": "10.0.0.5"}]}
    for lookups in (False, True):
        chains, table = rules.to_rules(ruleset_of(config), lookups)
        ruleset = rules.from_rules(chains, table)[0]
        assert [pf.hairpin for pf in ruleset["port_forwards"]] == [True, False]
        # without its prerouting loop rule the forward is read back without hairpin
        chains["prerouting"] = [r for r in chains["prerouting"] if not r.local_if]
        ruleset = rules.from_rules(chains, table)[0]
        assert [pf.hairpin for pf in ruleset["port_forwards"]] == [False, False]


def test_hairpin_keeps_the_source_limit_of_its_forward():
    chains = rules.to_rules(ruleset_of({"port_forwards": [
        {"in_interface": "wan0", "port": 8080, "to_address": "192.168.77.20", "to_port": 80,
         "source": "198.51.100.0/24", "hairpin": True}]}), lookups=True)[0]
    dnat, loop_in = chains["prerouting"]
    assert loop_in == dnat._replace(iif_neg=True, local_if="wan0")
    assert loop_in.saddr == "198.51.100.0/24" and not loop_in.local_dst
    [loop_out] = chains["postrouting"]
    assert loop_out == Rule("postrouting", iif="wan0", iif_neg=True, saddr="198.51.100.0/24",
                            daddr="192.168.77.20/32", proto="tcp", dport="80", ct_dnat=True,
                            verdict="masquerade")


def test_the_hairpin_rule_of_before_is_still_read_as_hairpin():
    """A host that still runs the old rule (any local address) reads as hairpin, so that
    state merged keeps the flag while the next apply replaces the rule."""
    config = {"port_forwards": [{"in_interface": "ppp0", "port": 80, "to_address": "10.0.0.5",
                                 "hairpin": True}]}
    chains, table = rules.to_rules(ruleset_of(config), lookups=True)
    chains["prerouting"] = [r._replace(local_if=None, local_dst=True, saddr=None)
                            for r in chains["prerouting"]]
    assert rules.from_rules(chains, table) == (ruleset_of(config), [])
    # a set of another interface is no hairpin of this forward
    chains["prerouting"] = [r._replace(local_dst=False, local_if="eth1")
                            for r in chains["prerouting"]]
    ruleset, foreign = rules.from_rules(chains, table)
    assert [pf.hairpin for pf in ruleset["port_forwards"]] == [False]
    assert [r.local_if for r in foreign] == ["eth1"]


def test_address_sets_name_each_family_and_interface_of_a_hairpin_rule():
    chains = rules.to_rules(ruleset_of({"port_forwards": [
        {"in_interface": "wan0", "port": 80, "to_address": "10.0.0.5", "hairpin": True},
        {"in_interface": "wan0", "port": 81, "to_address": "10.0.0.5", "hairpin": True},
        {"in_interface": "wan0", "port": 443, "to_address": "fd00::5", "hairpin": True},
        {"in_interface": "wan1", "port": 80, "to_address": "10.0.0.6"}]}))[0]
    addresses = {"wan0": ("198.51.100.1", "198.51.100.2", "2001:db8::1"), "wan1": ("192.0.2.1",)}
    assert rules.address_sets(chains, addresses) == {
        (4, "wan0"): frozenset(["198.51.100.1", "198.51.100.2"]),
        (6, "wan0"): frozenset(["2001:db8::1"])}
    # no addresses known (rendered, or the link is down): the sets exist and match nothing
    assert rules.address_sets(chains) == {(4, "wan0"): frozenset(), (6, "wan0"): frozenset()}


IP_ADDR_JSON = """[
 {"ifindex": 1, "ifname": "lo", "addr_info": [
   {"family": "inet", "local": "127.0.0.1", "prefixlen": 8, "scope": "host"}]},
 {"ifindex": 2, "ifname": "wan0", "addr_info": [
   {"family": "inet", "local": "198.51.100.1", "prefixlen": 24, "scope": "global"},
   {"family": "inet", "local": "198.51.100.9", "prefixlen": 24, "scope": "global",
    "secondary": true},
   {"family": "inet6", "local": "2001:db8:100::1", "prefixlen": 64, "scope": "global"},
   {"family": "inet6", "local": "fe80::1", "prefixlen": 64, "scope": "link"}]},
 {"ifindex": 3, "ifname": "ppp0", "addr_info": [
   {"family": "inet", "local": "203.0.113.5", "address": "10.64.0.1", "prefixlen": 32,
    "scope": "global"}]}
]"""


def test_global_addresses_are_the_interface_addresses_of_global_scope():
    assert rules.global_addresses(IP_ADDR_JSON, ["wan0", "ppp0", "ppp1"]) == {
        "wan0": ("198.51.100.1", "198.51.100.9", "2001:db8:100::1"),
        "ppp0": ("203.0.113.5",),  # the local end, not the peer
        "ppp1": ()}  # not there (yet)
    with pytest.raises(rules.ParseError):
        rules.global_addresses("not json", ["wan0"])


@pytest.mark.parametrize("value", ["10.0.0.1 ", "10.0.0.1;", "fe80::1%eth0", "::ffff:1.2.3.4x",
                                   "010.0.0.1", "FD00::1", "", None, 4])
def test_set_elements_must_be_plain_addresses(value):
    with pytest.raises(rules.RenderError):
        rules.check_address(value)


@pytest.mark.parametrize("value", ["eth0", "br-lan", "eth0.10", "wg_0", "a" * 15])
def test_local_if_tokens_are_interface_names(value):
    assert rules.check_token("local_if", value) == value


@pytest.mark.parametrize("value", ["a" * 16, "", ".", "-x", "eth0 ", "e\nx", "a}b", "a;b",
                                   "ppp+", "a/b", "a:b", '"a"', None])
def test_local_if_tokens_that_are_no_interface_names_are_refused(value):
    if value is None:
        assert rules.check_token("local_if", value) is None  # unset
        return
    with pytest.raises(rules.RenderError):
        rules.check_token("local_if", value)


@pytest.mark.parametrize("parsed, expected", [
    (Rule("forward", saddr="10.0.0.1", daddr="fd00::1"),
     Rule("forward", saddr="10.0.0.1/32", daddr="fd00::1/128")),
    (Rule("forward", saddr="10.0.0.0/255.0.0.0"), Rule("forward", saddr="10.0.0.0/8")),
    (Rule("prerouting", dport="80", to_port="80"), Rule("prerouting", dport="80")),
    (Rule("forward", ct_state=("related", "established", "new")),
     Rule("forward", ct_state=("new", "established", "related"))),
    (Rule("forward", iif="a"), Rule("forward", iif="a")),
])
def test_normalize(parsed, expected):
    assert rules.normalize(parsed) == expected


def test_split_and_merge_families():
    v4 = Rule("forward", saddr="10.0.0.0/8", verdict="accept")
    v6 = Rule("forward", saddr="fd00::/8", verdict="accept")
    both = Rule("forward", iif="ppp0", verdict="drop")
    dnat6 = Rule("prerouting", iif="a", proto="tcp", dport="1", verdict="dnat", to_addr="fd00::1")
    chain = [v6, both, v4, dnat6]
    assert rules.split_by_family(chain, 4) == [both, v4]
    assert rules.split_by_family(chain, 6) == [v6, both, dnat6]
    assert rules.merge_families([both, v4], [v6, both, dnat6]) == chain
    assert rules.rule_family(dnat6) == 6 and rules.rule_family(both) is None


def test_merge_keeps_a_rule_present_in_one_family_only():
    both = Rule("forward", iif="ppp0", verdict="drop")
    other = Rule("forward", iif="eth1", verdict="accept")
    merged = rules.merge_families([both], [other])
    assert Counter(merged) == Counter([both, other])


@settings(max_examples=150, deadline=None)
@given(configs())
def test_merge_inverts_split_within_each_family(config):
    """IPv4 and IPv6 rules never meet the same packet: only the order within a family counts."""
    for chain in rules.to_rules(ruleset_of(config))[0].values():
        merged = rules.merge_families(rules.split_by_family(chain, 4),
                                      rules.split_by_family(chain, 6))
        assert Counter(merged) == Counter(chain)
        for family in (4, 6):
            assert rules.split_by_family(merged, family) == rules.split_by_family(chain, family)


# ---------------------------------------------------------------- input

INPUT = {"input": [
    {"in_interface": "ppp0", "port": 22, "source": "198.51.100.0/24", "comment": "ssh"},
    {"in_interface": "ppp0", "protocol": "udp", "port": 51820},
    {"in_interface": "ppp0", "protocol": "icmp"},
    {"in_interface": "wg0", "protocol": "tcp", "port": 53},
]}


def test_input_entries_are_framed_per_interface():
    """Per interface: replies first, the listed traffic, ICMPv6, then the drop; an
    interface without entries is not filtered at all."""
    chains = rules.to_rules(ruleset_of(INPUT))[0]
    assert chains["input"] == [
        Rule("input", iif="ppp0", ct_state=("established", "related"), verdict="accept"),
        Rule("input", iif="ppp0", proto="icmp", verdict="accept"),
        Rule("input", iif="ppp0", saddr="198.51.100.0/24", proto="tcp", dport="22",
             verdict="accept", comment="ssh"),
        Rule("input", iif="ppp0", proto="udp", dport="51820", verdict="accept"),
        Rule("input", iif="ppp0", proto="icmpv6", verdict="accept"),
        Rule("input", iif="ppp0", verdict="drop"),
        Rule("input", iif="wg0", ct_state=("established", "related"), verdict="accept"),
        Rule("input", iif="wg0", proto="tcp", dport="53", verdict="accept"),
        Rule("input", iif="wg0", proto="icmpv6", verdict="accept"),
        Rule("input", iif="wg0", verdict="drop"),
    ]
    assert rules.to_rules(ruleset_of({}))[0]["input"] == []
    assert rules.from_rules(chains) == (ruleset_of(INPUT), [])


def test_an_input_rule_outside_the_model_is_foreign():
    chains = rules.to_rules(ruleset_of(INPUT))[0]
    odd = Rule("input", iif="ppp0", proto="tcp", dport="22", verdict="drop")
    chains["input"].insert(1, odd)
    assert rules.from_rules(chains) == (ruleset_of(INPUT), [odd])


def test_a_frame_without_entries_reads_as_nothing_so_the_next_run_removes_it():
    head, tail = rules.input_frame("ppp0")
    got, foreign = rules.from_rules({"input": head + tail})
    assert got["input"] == () and foreign == []
