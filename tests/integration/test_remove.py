"""playbooks/remove.yml: after it, the gateway is as it was before the collection came.

The gateway role converges the lab's gateway with persistence on (the boot unit and every
file land in the test's /etc overlay; systemctl is a stand-in that records its calls), on a
namespace that did not forward before. Then the real playbooks/remove.yml runs, first in
check mode, which must change nothing, then for real, then again, which must change
nothing. Afterwards: no rule of ours in either backend, the neighbours' rules as they were,
forwarding and the conntrack timeout back to their values before, and none of our files.
"""
from pathlib import Path

import foreign
import scenarios
import yaml
from netlab import LAN_NET, LAN_SERVER, REPO
from playbook import role_task, run_plays, systemctl_stand_in, task_results

REMOVE = Path(REPO) / "playbooks" / "remove.yml"
PF = {"protocol": "tcp", "port": 8080, "to_address": LAN_SERVER, "to_port": 80, "hairpin": True}
GATEWAY = {"ipmasq_wan_interface": scenarios.WAN_IF, "ipmasq_lan_networks": [LAN_NET],
           "ipmasq_port_forwards": [PF], "ipmasq_helpers": ["ftp"], "ipmasq_persist": True,
           "ipmasq_wan_input": [{"port": 22}], "ipmasq_conntrack_timeouts": {"udp": 45}}
OURS = ["/etc/ipmasq", "/etc/sysctl.d/90-ipmasq.conf", "/run/sysctl.d/90-ipmasq.conf",
        "/etc/systemd/system/ipmasq.service", "/etc/systemd/system/ipmasq-refresh.service",
        "/usr/local/sbin/ipmasq-refresh"]
LIST = {"name": "list our files", "ansible.builtin.shell": "ls -d %s 2>/dev/null; true" % " ".join(OURS),
        "changed_when": False}
UDP_TIMEOUT = "net.netfilter.nf_conntrack_udp_timeout"


def remove_plays():
    """playbooks/remove.yml as it is, for the lab's one host."""
    plays = yaml.safe_load(REMOVE.read_text())
    for play in plays:
        play["hosts"] = "all"
    return plays


def sysctls(lab):
    return dict((key, lab.gw.out("sysctl", "-n", key).strip())
                for key in ("net.ipv4.ip_forward", UDP_TIMEOUT))


def run(lab, tmp_path, backend, plays, check=False):
    for play in plays:
        play.setdefault("vars", {}).update(GATEWAY, ipmasq_backend=backend)
    proc, report = run_plays(lab.gw, tmp_path, plays, check=check,
                             path_prefix=systemctl_stand_in(tmp_path / "shims"))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return task_results(report)


def test_remove_puts_the_gateway_back_as_it_was(lab, tmp_path, backend):
    lab.gw.sysctl("net.ipv4.ip_forward", 0)  # a host that did not forward before
    before, rules_before = sysctls(lab), foreign.whole(lab.gw)
    converge = [{"name": "converge", "hosts": "all", "gather_facts": False,
                 "tasks": [role_task("gateway", "ipmasq.gateway.gateway", {}), LIST]}]
    [listed] = [r for name, r in run(lab, tmp_path, backend, converge) if name == "list our files"]
    assert sorted(listed["stdout_lines"]) == sorted(OURS[:2] + OURS[3:]), listed["stdout_lines"]
    assert sysctls(lab) == {"net.ipv4.ip_forward": "1", UDP_TIMEOUT: "45"}
    converged = foreign.whole(lab.gw)

    # The plan changes nothing, and names the values before.
    planned = run(lab, tmp_path, backend, remove_plays(), check=True)
    assert foreign.whole(lab.gw) == converged and sysctl_changes(planned) == {
        "net.ipv4.ip_forward": {"before": "1", "after": "0"},
        UDP_TIMEOUT: {"before": "45", "after": before[UDP_TIMEOUT]}}

    removed = run(lab, tmp_path, backend, remove_plays())
    assert sysctls(lab) == before
    assert foreign.owned(lab.gw) == {"nft": "", "iptables": ""}
    if backend == "nftables":
        assert foreign.whole(lab.gw) == rules_before, "the rules are not as they were before"
    # With iptables, iptables-nft keeps the built-in chains it created for the tables of our
    # chains (raw's, here), empty and on policy ACCEPT: they filter nothing and are not
    # ours, and the comparison of everything else (assert_intact, below) leaves them out.
    calls = (tmp_path / "shims" / "calls.log").read_text().splitlines()
    assert "disable --now ipmasq.service" in calls and calls[-1] == "daemon-reload", calls
    [listed] = [r for name, r in run(lab, tmp_path, backend, [
        {"name": "list", "hosts": "all", "gather_facts": False, "tasks": [LIST]}])
        if name == "list our files"]
    assert listed["stdout_lines"] == [], "left behind: %s" % listed["stdout_lines"]
    assert [r for _n, r in removed if r.get("changed")], "remove.yml reported no change"

    again = run(lab, tmp_path, backend, remove_plays())
    assert not [name for name, r in again if r.get("changed")], again
    foreign.assert_intact(lab)


def sysctl_changes(results):
    [kernel] = [r for name, r in results if name.startswith("Put the sysctls back")]
    return kernel["sysctl"]
