"""neighbours.py: our traffic as flows, walked through foreign forward chains (pure)."""
import json

import pytest

from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import (
    foreign, neighbours)

from nat_helpers import ruleset_of

ROUTES = [{"dst": "default", "gateway": "198.51.100.254", "dev": "wan0"},
          {"dst": "192.168.77.0/24", "dev": "lan0"},
          {"dst": "198.51.100.0/24", "dev": "wan0"}]
GATEWAY = ruleset_of({
    "masquerade": [{"source": "192.168.77.0/24", "out_interface": "wan0"}],
    "port_forwards": [{"in_interface": "wan0", "port": 8080, "to_address": "192.168.77.20",
                       "to_port": 80}],
    "forward": [{"in_interface": "wan0", "ct_state": ["established", "related"]},
                {"out_interface": "wan0", "source": "192.168.77.0/24"},
                {"in_interface": "wan0", "action": "drop"}]})

DOCKER_SAVE = """\
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A FORWARD -i docker0 -o docker0 -j ACCEPT
-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP
-A DOCKER-ISOLATION-STAGE-2 -j RETURN
%s-A DOCKER-USER -j RETURN
COMMIT
"""


def _docker(user_rules=""):
    return neighbours.chains_from_iptables_save(DOCKER_SAVE % user_rules, 4, "iptables-nft")


def _flows():
    return neighbours.flows(GATEWAY, ROUTES)


def test_flows_of_a_gateway_both_ways_with_the_interfaces_behind_the_networks():
    labels = [(f.iif, f.oif, f.state, f.dnat) for f in _flows()]
    assert labels == [("lan0", "wan0", "new", False), ("wan0", "lan0", "established", False),
                      ("wan0", "lan0", "new", True), ("lan0", "wan0", "established", True)]


def test_a_forward_rule_without_nat_is_a_flow_of_its_own():
    ruleset = ruleset_of({"forward": [{"in_interface": "dmz0", "destination": "192.168.77.0/24",
                                       "protocol": "tcp", "port": 22}]})
    flow, = neighbours.flows(ruleset, ROUTES)
    assert (flow.iif, flow.oif, flow.proto, flow.dport) == ("dmz0", "lan0", "tcp", 22)


def test_dockers_policy_drop_blocks_nftables_but_not_our_iptables_jump():
    chains = _docker()
    found, = neighbours.findings(chains, _flows(), "nftables")
    assert found.rule is None and len(found.flows) == 4 and found.chain.manager == "Docker"
    assert neighbours.findings(chains, _flows(), "iptables", "iptables-nft") == []
    # A legacy FORWARD chain is another base chain: our nft-based jump is not in it.
    legacy = neighbours.chains_from_iptables_save(DOCKER_SAVE % "", 4, "iptables-legacy")
    assert neighbours.findings(legacy, _flows(), "iptables", "iptables-nft")


def test_accept_rules_in_docker_user_clear_the_flows():
    chains = _docker("-A DOCKER-USER -i lan0 -o wan0 -j ACCEPT\n"
                     "-A DOCKER-USER -o lan0 -m conntrack --ctstate ESTABLISHED,RELATED,DNAT "
                     "-j ACCEPT\n")
    assert neighbours.findings(chains, _flows(), "nftables") == []


def test_an_uncertain_accept_does_not_clear_and_an_uncertain_drop_does_not_block():
    unsure = _docker("-A DOCKER-USER -i lan0 -m set --match-set ok src -j ACCEPT\n")
    assert neighbours.findings(unsure, _flows(), "nftables")
    unsure_drop = neighbours.chains_from_iptables_save(
        "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -i lan0 -m set --match-set bad src -j DROP\n"
        "COMMIT\n", 4, "iptables-nft")
    assert neighbours.findings(unsure_drop, _flows(), "nftables") == []


def test_a_drop_rule_that_matches_all_of_a_flow_blocks_it():
    chains = neighbours.chains_from_iptables_save(
        "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -o wan0 -j DROP\nCOMMIT\n", 4, "iptables-nft")
    found, = neighbours.findings(chains, _flows(), "nftables")
    assert found.rule == "-A FORWARD -o wan0 -j DROP"
    assert [f.state for f in found.flows] == ["new", "established"]


def _nft(*items):
    return json.dumps({"nftables": list(items)})


def _chain(family, table, name, policy="accept", hook="forward"):
    return {"chain": {"family": family, "table": table, "name": name, "type": "filter",
                      "hook": hook, "prio": 10, "policy": policy}}


def _rule(family, table, chain, *expr):
    return {"rule": {"family": family, "table": table, "chain": chain, "expr": list(expr)}}


ACCEPT = {"accept": None}
ESTABLISHED = {"match": {"op": "in", "left": {"ct": {"key": "state"}},
                         "right": ["established", "related"]}}
DNAT = {"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}}


def _ifname(key, name):
    return {"match": {"op": "==", "left": {"meta": {"key": key}}, "right": name}}


def test_firewalld_style_chain_ending_in_reject_blocks_until_a_policy_accepts():
    base = [_chain("inet", "firewalld", "filter_FORWARD"),
            _rule("inet", "firewalld", "filter_FORWARD", ESTABLISHED, ACCEPT),
            _rule("inet", "firewalld", "filter_FORWARD", DNAT, ACCEPT),
            _rule("inet", "firewalld", "filter_FORWARD",
                  {"jump": {"target": "filter_FORWARD_POLICIES"}}),
            _rule("inet", "firewalld", "filter_FORWARD", {"reject": {"type": "icmpx"}})]
    chains = neighbours.chains_from_nft_json(_nft(*base))
    found, = neighbours.findings(chains, _flows(), "iptables", "iptables-nft")
    assert found.chain.manager == "firewalld" and found.rule == "filter_FORWARD: reject"
    assert [f.label for f in found.flows] == ["new connections from 192.168.77.0/24 out of wan0"]
    policy = base + [_rule("inet", "firewalld", "filter_FORWARD_POLICIES",
                           _ifname("iifname", "lan0"), _ifname("oifname", "wan0"),
                           {"jump": {"target": "filter_FWD_policy_out"}}),
                     _rule("inet", "firewalld", "filter_FWD_policy_out", ACCEPT)]
    chains = neighbours.chains_from_nft_json(_nft(*policy))
    assert neighbours.findings(chains, _flows(), "nftables") == []


def test_our_table_and_other_hooks_are_not_read():
    chains = neighbours.chains_from_nft_json(_nft(
        _chain("inet", "ipmasq", "forward", "drop"), _chain("inet", "x", "input", "drop", "input")))
    assert chains == []


@pytest.mark.parametrize("requested, holders, blocked, policy, want", [
    ("auto", [], {}, "fail", "nftables"),
    ("auto", ["iptables"], {}, "fail", "iptables"),
    ("auto", [], {"nftables": ["x"]}, "fail", "iptables"),
    ("auto", ["nftables"], {"nftables": ["x"]}, "fail", "iptables"),
    ("auto", [], {"nftables": ["x"], "iptables": ["y"]}, "fail", None),
    ("auto", [], {"nftables": ["x"], "iptables": ["y"]}, "warn", "nftables"),
    ("nftables", [], {"nftables": ["x"]}, "fail", "nftables"),
])
def test_choose(requested, holders, blocked, policy, want):
    backend, found = neighbours.choose(requested, ["nftables", "iptables"], holders, blocked,
                                       policy)
    assert backend == want
    if requested != "auto" or want is None:
        assert found == blocked.get(requested if requested != "auto" else "nftables", [])


@pytest.mark.parametrize("manager, save, way", [
    ("Docker", DOCKER_SAVE % "", "iptables -I DOCKER-USER -i lan0 -o wan0 -j ACCEPT"),
    ("ufw", "*filter\n:FORWARD DROP [0:0]\n:ufw-before-forward - [0:0]\n"
            "-A FORWARD -j ufw-before-forward\nCOMMIT\n",
     'DEFAULT_FORWARD_POLICY="ACCEPT" in /etc/default/ufw'),
])
def test_the_message_names_chain_policy_traffic_and_ways_out(manager, save, way):
    chains = neighbours.chains_from_iptables_save(save, 4, "iptables-nft")
    found = neighbours.findings(chains, _flows(), "nftables")
    text = neighbours.describe(found, "nftables", True)
    for part in ("table ip filter chain FORWARD (%s)" % manager, "policy (drop)",
                 "new connections from 192.168.77.0/24 out of wan0", way,
                 "backend: iptables (or auto)", "foreign_forward_drop: warn"):
        assert part in text, (part, text)


def test_conntrack_states_in_one_iptables_list_match_any_of_them():
    rule = foreign.parse_iptables(["-m", "conntrack", "--ctstate", "ESTABLISHED,DNAT",
                                   "-j", "ACCEPT"])
    assert rule.ct_state == frozenset(["established", "dnat"]) and not rule.ct_dnat
    flow = _flows()[2]  # a port forward's new connection: DNAT, not established
    assert neighbours.match(rule, flow) == neighbours.ALL


def test_ours_in_iptables_nft():
    assert neighbours.ours_in_iptables_nft(_nft(
        {"chain": {"family": "ip", "table": "nat", "name": "IPMASQ-POSTROUTING"}}))
    assert not neighbours.ours_in_iptables_nft(_nft(_chain("ip", "filter", "FORWARD")))
    assert not neighbours.ours_in_iptables_nft("not json")
