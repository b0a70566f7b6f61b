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
        Rule("prerouting", iif="ppp0", iif_neg=True, local_dst=True, proto="tcp", dport="8080",
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
        Rule("prerouting", iif="ppp0", iif_neg=True, local_dst=True, proto="tcp", dport="8080",
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
        chains["prerouting"] = [r for r in chains["prerouting"] if not r.local_dst]
        ruleset = rules.from_rules(chains, table)[0]
        assert [pf.hairpin for pf in ruleset["port_forwards"]] == [False, False]


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
