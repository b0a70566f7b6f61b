"""The one summary line per role and host, counted from the module's `summary`.

The roles print, on every run, how many rules they added, removed and left unchanged. The
module leaves `before`/`after` out of a run that changes nothing, so the counts must come
from its `summary`: a no-change run reports every rule as unchanged, not zero rules.
"""
import scenarios
from netlab import LAN_NET, LAN_SERVER
from playbook import role_task, run_plays, task_results

PF = {"protocol": "tcp", "port": 8080, "to_address": LAN_SERVER, "to_port": 80}
GATEWAY = {"ipmasq_wan_interface": scenarios.WAN_IF, "ipmasq_lan_networks": [LAN_NET],
           "ipmasq_port_forwards": [PF], "ipmasq_helpers": ["ftp"], "ipmasq_persist": False}


def summaries(lab, tmp_path, backend, runs):
    """Run the gateway role once per entry of ``runs`` (extra variables); the summary lines."""
    tasks = [role_task("run %d" % i, "ipmasq.gateway.gateway", variables) for i, variables in enumerate(runs)]
    play = [{"name": "report", "hosts": "all", "gather_facts": False,
             "vars": dict(GATEWAY, ipmasq_backend=backend), "tasks": tasks}]
    proc, report = run_plays(lab.gw, tmp_path, play)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return [result["msg"] for name, result in task_results(report)
            if name == "ipmasq.gateway.report : Summarise the rule changes"]


def test_summary_lines_count_added_removed_and_unchanged_rules(lab, tmp_path, backend):
    moved = {"ipmasq_port_forwards": [dict(PF, port=8081)]}
    lines = summaries(lab, tmp_path, backend, [{}, {}, moved])
    # masquerade owns masquerade + 3 forward rules (LAN out, replies in, inbound drop);
    # port_forward its forward; forwarding the ftp helper (its line then counts sysctls).
    helpers = [line.split(";")[0] for line in lines[2::3]]
    assert lines[0::3] + lines[1::3] + helpers == [
        "masquerade: 4 added, 0 removed, 0 unchanged (%s)" % backend,
        "masquerade: 0 added, 0 removed, 4 unchanged (%s)" % backend,
        "masquerade: 0 added, 0 removed, 4 unchanged (%s)" % backend,
        "port_forward: 1 added, 0 removed, 0 unchanged (%s)" % backend,
        "port_forward: 0 added, 0 removed, 1 unchanged (%s)" % backend,
        "port_forward: 1 added, 1 removed, 0 unchanged (%s)" % backend,
        "forwarding helpers: 1 added, 0 removed, 0 unchanged (%s)" % backend,
        "forwarding helpers: 0 added, 0 removed, 1 unchanged (%s)" % backend,
        "forwarding helpers: 0 added, 0 removed, 1 unchanged (%s)" % backend,
    ], lines
