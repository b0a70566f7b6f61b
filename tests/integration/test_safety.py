"""Concurrent runs and hand-edited state.

Two runs at once must not lose each other's rules (the module locks around
read-diff-apply), and our own table or chains, edited or half deleted by hand, are put
back by the next run, which says what it repaired.
"""
import threading

import foreign
import scenarios
from playbook import NatRules, brief, ok


def test_two_concurrent_runs_keep_both_rule_sets(lab, backend, tmp_path):
    runners = [NatRules(lab.gw, tmp_path / name, backend) for name in ("a", "b")]
    configs = [{"masquerade": [{"source": "192.168.77.0/25", "out_interface": "wan0"}]},
               {"masquerade": [{"source": "192.168.77.128/25", "out_interface": "wan0"}]}]
    results = [None, None]

    def run(index):
        results[index] = runners[index]("merged", configs[index])

    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    for result in results:
        assert result is not None and not result.get("failed"), brief(result or {})
    sources = sorted(m["source"] for m in runners[0].gathered()["masquerade"])
    assert sources == ["192.168.77.0/25", "192.168.77.128/25"]


def _break_by_hand(lab, backend):
    """Remove one rule of ours and add a stray one, the way an operator might."""
    if backend == "nftables":
        lab.gw.run("nft", "flush", "chain", "inet", "ipmasq", "postrouting")
        lab.gw.run("nft", "add", "rule", "inet", "ipmasq", "forward", "ip", "saddr",
                   "10.66.0.0/16", "accept")
    else:
        lab.gw.run("iptables", "-w", "-t", "nat", "-F", "IPMASQ-POSTROUTING")
        lab.gw.run("iptables", "-w", "-A", "IPMASQ-FORWARD", "-s", "10.66.0.0/16", "-j", "ACCEPT")
        lab.gw.run("iptables", "-w", "-D", "FORWARD", "-j", "IPMASQ-FORWARD")


def test_hand_edited_rules_are_repaired_and_shown(lab, nat):
    ok(nat("merged", scenarios.full()))
    wanted = foreign.owned(lab.gw)
    _break_by_hand(lab, nat.backend)
    assert foreign.owned(lab.gw) != wanted
    # replaced, as the roles call it: each kind becomes exactly the given list
    repair = ok(nat("replaced", scenarios.full(), diff=True))
    assert repair["changed"] is True and repair["commands"], brief(repair)
    assert "10.66.0.0/16" in repair["diff"]["before"] and "10.66.0.0/16" not in repair["diff"]["after"]
    masquerade = "MASQUERADE" if nat.backend == "iptables" else "masquerade"
    assert masquerade not in repair["diff"]["before"] and masquerade in repair["diff"]["after"]
    assert foreign.owned(lab.gw) == wanted
    again = ok(nat("replaced", scenarios.full()))
    assert again["changed"] is False and again["commands"] == [], brief(again)
    foreign.assert_intact(lab, "by the repair")
