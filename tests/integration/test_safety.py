"""Concurrent runs and hand-edited state.

Two runs at once must not lose each other's rules (the module locks around
read-diff-apply), and our own table or chains, edited or half deleted by hand, are put
back by the next run, which says what it repaired.
"""
import shutil
import stat
import threading

import foreign
import scenarios
from netlab import LAN_SERVER
from playbook import NatRules, brief, ok, path_with

# Each run adds a masquerade and a port-forward range: both runs rewrite the same
# postrouting and prerouting chains (nft flushes and refills them, iptables-restore
# declares them again). Both kinds are keyed by identity, so the order of the runs does
# not change the result.
CHANGES = {
    "a": {"masquerade": [{"source": "10.1.0.0/16", "out_interface": "wan0"}],
          "port_forwards": [{"in_interface": "wan0", "protocol": "tcp", "port": "9100-9101",
                             "to_address": LAN_SERVER}]},
    "b": {"masquerade": [{"source": "10.2.0.0/16", "out_interface": "wan0"}],
          "port_forwards": [{"in_interface": "wan0", "protocol": "tcp", "port": "9200-9201",
                             "to_address": LAN_SERVER}]},
}
BARRIER_WAIT = 10  # seconds a run waits at its check step for the other one

# A stand-in for nft / iptables-restore / ip6tables-restore. At the check step (the last
# command before the apply, after the read) it waits until the other run has reached its
# check step too, at most BARRIER_WAIT seconds. Without a lock both runs then hold the
# same old rules when they apply; with the lock the first run waits in vain (the second
# one is blocked on the lock), applies and lets the second one read its result.
BARRIER_SHIM = """#!/bin/sh
for arg in "$@"; do
  case "$arg" in {check_flags})
    touch "$IPMASQ_BARRIER/$IPMASQ_RUN"
    i=0
    while [ "$i" -lt {tries} ] && [ "$(ls "$IPMASQ_BARRIER" | wc -l)" -lt 2 ]; do
      sleep 0.1; i=$((i + 1))
    done
    if [ "$i" -lt {tries} ]; then met=met; else met=alone; fi
    echo "$IPMASQ_RUN {tool} $met" >> "$IPMASQ_BARRIER.log"
    break ;;
  esac
done
exec '{real}' "$@"
"""
CHECK_FLAGS = {"nft": "-c|--check", "iptables-restore": "-t|--test", "ip6tables-restore": "-t|--test"}


def _barrier_shims(directory):
    directory.mkdir()
    for tool, flags in CHECK_FLAGS.items():
        real = shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin")
        assert real, tool
        shim = directory / tool
        shim.write_text(BARRIER_SHIM.format(check_flags=flags, tries=BARRIER_WAIT * 10, tool=tool,
                                            real=real))
        shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    return directory


def test_two_overlapping_runs_end_where_two_serial_runs_end(lab, empty_ns, backend, tmp_path):
    base = scenarios.full()
    # The serial result: the same three runs one after the other, in a namespace of their own.
    serial = NatRules(empty_ns, tmp_path / "serial", backend)
    for result in serial.play(serial.task("merged", base), serial.task("merged", CHANGES["a"]),
                              serial.task("merged", CHANGES["b"])):
        assert ok(result)["changed"] is True
    wanted = foreign.owned(empty_ns)
    assert "10.1.0.0/16" in str(wanted) and "10.2.0.0/16" in str(wanted), wanted

    # Both runs start from existing rules, and meet at their check step.
    ok(NatRules(lab.gw, tmp_path / "base", backend)("merged", base))
    shims = _barrier_shims(tmp_path / "shims")
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    results = {}

    def run(name):
        env = {"PATH": path_with(shims), "IPMASQ_BARRIER": str(barrier), "IPMASQ_RUN": name}
        results[name] = NatRules(lab.gw, tmp_path / name, backend)("merged", CHANGES[name], env=env)

    threads = [threading.Thread(target=run, args=(name,)) for name in sorted(CHANGES)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads), "a run did not finish in 300 s"
    for name in sorted(CHANGES):
        assert name in results and ok(results[name])["changed"] is True, brief(results.get(name, {}))
    met = (tmp_path / "barrier.log").read_text().splitlines()
    assert sorted(line.split()[0] for line in met) == ["a", "b"], met  # both reached the check

    lost = foreign.changes(wanted, foreign.owned(lab.gw))
    assert not lost, "two overlapping runs (%s) end elsewhere than two serial runs:\n%s" % (met, lost)
    foreign.assert_intact(lab, "by the overlapping runs")


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
