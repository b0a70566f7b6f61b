"""adopt.py: which hand-made rules the config covers, and the commands that remove them."""
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import adopt

from nat_helpers import ruleset_of

HAND = """\
*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
:IPMASQ-POSTROUTING - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A PREROUTING -i ppp0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 192.168.10.5:80
-A POSTROUTING -j IPMASQ-POSTROUTING
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A POSTROUTING -s 192.168.10.0/24 -o ppp0 -j MASQUERADE
-A POSTROUTING -s 10.99.0.0/16 -o ppp0 -j MASQUERADE
-A POSTROUTING -s 192.168.10.0/24 -o ppp0 -j MASQUERADE
-A IPMASQ-POSTROUTING -s 192.168.10.0/24 -o ppp0 -j MASQUERADE
COMMIT
*filter
:FORWARD DROP [0:0]
-A FORWARD -i ppp0 -o eth1 -m state --state RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -p tcp -m tcp --dport 22 -j LOG --log-prefix "ssh "
COMMIT
"""
AFTER = ruleset_of({
    "masquerade": [{"source": "192.168.10.0/24", "out_interface": "ppp0", "comment": "lan"}],
    "port_forwards": [{"in_interface": "ppp0", "port": 8080, "to_address": "192.168.10.5",
                       "to_port": 80, "hairpin": True}],
    "forward": [{"in_interface": "ppp0", "out_interface": "eth1",
                 "ct_state": ["established", "related"]}]})


def test_covered_rules_go_and_the_others_stay_with_a_reason():
    adoption = adopt.plan({4: HAND, 6: ""}, AFTER)
    assert [(r.table, r.chain, r.position, r.text) for r in adoption.removals] == [
        ("nat", "PREROUTING", 2,
         "-A PREROUTING -i ppp0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination "
         "192.168.10.5:80"),
        ("nat", "POSTROUTING", 3, "-A POSTROUTING -s 192.168.10.0/24 -o ppp0 -j MASQUERADE"),
        ("nat", "POSTROUTING", 5, "-A POSTROUTING -s 192.168.10.0/24 -o ppp0 -j MASQUERADE"),
        ("filter", "FORWARD", 1,
         "-A FORWARD -i ppp0 -o eth1 -m state --state RELATED,ESTABLISHED -j ACCEPT")]
    kept = dict((k["rule"], k["reason"]) for k in adoption.kept)
    assert set(kept) == {"-A POSTROUTING -s 10.99.0.0/16 -o ppp0 -j MASQUERADE",
                         '-A FORWARD -p tcp -m tcp --dport 22 -j LOG --log-prefix "ssh "'}
    assert kept["-A POSTROUTING -s 10.99.0.0/16 -o ppp0 -j MASQUERADE"].startswith(
        "the config does not hold masquerade")
    # Docker's rules and our own jump are neither removed nor reported


def test_commands_delete_by_exact_specification_one_per_copy():
    adoption = adopt.plan({4: HAND}, AFTER)
    assert adopt.commands(adoption) == [
        "# iptables-restore --noflush",
        "*nat",
        "-D PREROUTING -i ppp0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination "
        "192.168.10.5:80",
        "-D POSTROUTING -s 192.168.10.0/24 -o ppp0 -j MASQUERADE",
        "-D POSTROUTING -s 192.168.10.0/24 -o ppp0 -j MASQUERADE",
        "COMMIT",
        "*filter",
        "-D FORWARD -i ppp0 -o eth1 -m state --state RELATED,ESTABLISHED -j ACCEPT",
        "COMMIT"]


def test_undo_puts_back_only_what_is_gone_at_its_place():
    adoption = adopt.plan({4: HAND}, AFTER)
    assert adopt.undo(adoption, {4: HAND}) == []
    gone = "\n".join(line for line in HAND.splitlines()
                     if "192.168.10.0/24 -o ppp0" not in line or "IPMASQ" in line)
    assert adopt.undo(adoption, {4: gone}) == [
        "# iptables-restore --noflush", "*nat",
        "-I POSTROUTING 3 -s 192.168.10.0/24 -o ppp0 -j MASQUERADE",
        "-I POSTROUTING 5 -s 192.168.10.0/24 -o ppp0 -j MASQUERADE", "COMMIT"]


def test_nothing_to_adopt_is_no_command():
    adoption = adopt.plan({4: HAND}, ruleset_of({}))
    assert adoption.removals == [] and adopt.commands(adoption) == []
    assert len(adoption.kept) == 6
