"""A kernel that refuses the apply: the previous ruleset must stay exactly in place.

A PATH shim stands in for nft / iptables-restore / ip6tables-restore. It passes
reads and the dry-run check (``nft -c``, ``iptables-restore --test``) to the real
binary and fails the chosen real apply with a kernel-like error. The module finds
its binaries through PATH, so the shim goes first on the playbook's PATH.
"""
import shutil
import stat

import foreign
import pytest
import scenarios
from foreign import Snapshot
from playbook import brief, ok, path_with
from netlab import GW_WAN, LAN_SERVER, WAN_HOST, WAN_PORT

KERNEL_ERRORS = {
    "nft": "Error: Could not process rule: No buffer space available",
    "iptables-restore": "iptables-restore v1.8.9 (nf_tables): line 4: RULE_APPEND failed "
                        "(No buffer space available): rule in chain IPMASQ-FORWARD",
    "ip6tables-restore": "ip6tables-restore v1.8.9 (nf_tables): line 4: RULE_APPEND failed "
                         "(No buffer space available): rule in chain IPMASQ-POSTROUTING",
}
CHECK_FLAGS = {"nft": ("-c", "--check"), "iptables-restore": ("-t", "--test"),
               "ip6tables-restore": ("-t", "--test")}

SHIM = """#!/bin/sh
# Test double for {tool}: log every call; pass checks and reads through; fail real apply number {fail_at}.
real='{real}'
log='{log}'
count='{count}'
printf '%s\\n' "$*" >> "$log"
for arg in "$@"; do
  case "$arg" in {check_pattern}) exec "$real" "$@" ;; esac
done
{apply_test} || exec "$real" "$@"
n=$(( $(cat "$count" 2>/dev/null || echo 0) + 1 ))
echo "$n" > "$count"
if [ "$n" -eq {fail_at} ]; then
  echo "APPLY $n FAILED" >> "$log"
  timeout 5 cat > /dev/null
  echo '{message}' >&2
  exit 1
fi
echo "APPLY $n" >> "$log"
exec "$real" "$@"
"""

# nft applies with -f; iptables-restore applies whatever it reads unless testing.
APPLY_TEST = {
    "nft": 'case " $* " in *" -f "*|*" --file "*) true ;; *) false ;; esac',
    "iptables-restore": 'case " $* " in *" -V "*|*" --version "*|*" -h "*|*" --help "*) false ;; *) true ;; esac',
    "ip6tables-restore": 'case " $* " in *" -V "*|*" --version "*|*" -h "*|*" --help "*) false ;; *) true ;; esac',
}


def make_shim(directory, tool, fail_at=1):
    """Write a wrapper for tool into directory; fail_at=0 only logs."""
    real = shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin")
    assert real, tool
    path = directory / tool
    path.write_text(SHIM.format(
        tool=tool, real=real, log=directory / (tool + ".log"), count=directory / (tool + ".count"),
        check_pattern="|".join(CHECK_FLAGS[tool]), apply_test=APPLY_TEST[tool],
        fail_at=fail_at, message=KERNEL_ERRORS[tool]))
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return directory / (tool + ".log")


def _base():
    config = scenarios.full()
    config["masquerade"] = config["masquerade"] + scenarios.MASQUERADE6
    return config


def _target():
    config = _base()
    # per-rule timeouts: with iptables, nfct objects made before the rules that fail
    config["masquerade"] = [dict(entry, timeouts={"udp": 50}) for entry in config["masquerade"]]
    config["masquerade"].append({"source": "fd00:78::/64", "out_interface": "wan0"})
    config["port_forwards"].append(
        {"in_interface": "wan0", "protocol": "tcp", "port": 8090, "to_address": LAN_SERVER, "to_port": 80})
    config["forward"].insert(2, {"in_interface": "wan0", "source": "203.0.113.0/24", "action": "reject"})
    return config


@pytest.mark.parametrize("backend,failing,logging_only", [
    ("nftables", "nft", ()),
    ("iptables", "iptables-restore", ("ip6tables-restore",)),
    ("iptables", "ip6tables-restore", ("iptables-restore",)),
], ids=["nft-apply", "iptables-restore-apply", "ip6tables-restore-after-v4"])
def test_failed_apply_keeps_previous_ruleset(lab, nat, tmp_path, failing, logging_only):
    shims = tmp_path / "shims"
    shims.mkdir()
    log = make_shim(shims, failing, fail_at=1)
    other_logs = [make_shim(shims, tool, fail_at=0) for tool in logging_only]
    shim_path = {"PATH": path_with(shims)}

    objects = {"name": "timeout objects", "ansible.builtin.command": "nfct list timeout",
               "changed_when": False}
    run = nat.play(nat.task("merged", _base()), nat.snapshot(),
                   nat.task("merged", _target(), env=shim_path), nat.snapshot(), objects,
                   nat.task("merged", _target()))
    applied, start, result, end, retried = run[0], ok(run[1]), run[2], ok(run[3]), run[5]
    assert ok(run[4])["stdout"] == "", "timeout objects left by the failed run: %s" % run[4]
    assert ok(applied)["changed"] is True
    calls = log.read_text() if log.exists() else ""
    others = "\n".join(p.read_text() for p in other_logs if p.exists())
    assert "APPLY 1 FAILED" in calls, "the injected failure was never reached; calls:\n%s\nresult: %s" % (
        calls, brief(result))

    if failing == "ip6tables-restore":
        # The case this parameter is for: IPv4 was already applied when IPv6 failed,
        # so the module had to put the IPv4 rules back.
        assert "APPLY 1\n" in others, "iptables-restore never applied before the failure:\n%s" % others
    assert result.get("failed") is True, brief(result)
    assert KERNEL_ERRORS[failing] in result.get("msg", ""), brief(result)
    before, after = Snapshot.parse(start["stdout"]), Snapshot.parse(end["stdout"])
    assert foreign.owned(before)["nft" if nat.backend == "nftables" else "iptables"]
    assert foreign.owned(after) == foreign.owned(before), \
        "previous ruleset not restored; shim calls:\n%s\n%s" % (calls, others)
    foreign.assert_intact(lab, "by the failed run", snapshot=after)

    # Once the kernel cooperates again, the same task converges, and traffic follows.
    assert ok(retried)["changed"] is True
    assert lab.probe(lab.wan, "tcp", GW_WAN, 8090).server == "lansrv"
    assert lab.probe(lab.lan, "tcp", WAN_HOST, WAN_PORT).peer_ip == GW_WAN
