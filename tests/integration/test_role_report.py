"""One gateway, one transaction: the roles' module runs, their summary line and their plan.

The gateway role checks its variables on the controller and then calls nat_rules once and
nat_kernel once. It prints one summary line per host, counted from the module's
``summary`` (a no-change run reports every rule as unchanged, not zero rules), and in
check mode the plan: each changed rule and value once.
"""
import scenarios
from netlab import LAN_NET, LAN_SERVER
from playbook import role_task, run_plays, systemctl_stand_in, task_results

PF = {"protocol": "tcp", "port": 8080, "to_address": LAN_SERVER, "to_port": 80}
GATEWAY = {"ipmasq_wan_interface": scenarios.WAN_IF, "ipmasq_lan_networks": [LAN_NET],
           "ipmasq_port_forwards": [PF], "ipmasq_helpers": ["ftp"], "ipmasq_persist": False}
SUMMARY = "ipmasq.gateway.converge : Summarise the changes"
PLAN = "ipmasq.gateway.converge : Show the planned changes"


def play(lab, tmp_path, backend, tasks, check=False, **play_vars):
    plays = [{"name": "report", "hosts": "all", "gather_facts": False,
              "vars": dict(GATEWAY, ipmasq_backend=backend, **play_vars), "tasks": tasks}]
    proc, report = run_plays(lab.gw, tmp_path, plays, check=check,
                             path_prefix=systemctl_stand_in(tmp_path / "shims"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return task_results(report)


def module_runs(results, start, end):
    """Module runs on the host between two marker tasks (a module result carries its
    ``invocation``; debug, set_fact, assert and fail run on the controller)."""
    names = [name for name, _result in results]
    return [name for name, result in results[names.index(start) + 1:names.index(end)]
            if "invocation" in result and not result.get("skipped")]


def marker(name):
    return {"name": name, "ansible.builtin.debug": {"msg": name}}


def test_summary_lines_count_added_removed_and_unchanged_rules(lab, tmp_path, backend):
    moved = {"ipmasq_port_forwards": [dict(PF, port=8081)]}
    tasks = [role_task("run %d" % i, "ipmasq.gateway.gateway", v) for i, v in enumerate([{}, {}, moved])]
    lines = [r["msg"] for name, r in play(lab, tmp_path, backend, tasks) if name == SUMMARY]
    # masquerade + 3 forward rules (LAN out, replies in, inbound drop), 1 port forward,
    # 1 helper; the first run also writes the runtime sysctl file.
    assert lines == [
        "gateway: 6 added, 0 removed, 0 unchanged rules (%s); 90-ipmasq.conf written" % backend,
        "gateway: 0 added, 0 removed, 6 unchanged rules (%s)" % backend,
        "gateway: 1 added, 1 removed, 5 unchanged rules (%s)" % backend,
    ], lines


def test_one_nat_rules_run_per_converge_and_few_module_runs(lab, tmp_path, backend):
    tasks = [marker("first"), role_task("first converge", "ipmasq.gateway.gateway", {}),
             marker("again"), role_task("no-change converge", "ipmasq.gateway.gateway", {}),
             marker("end")]
    results = play(lab, tmp_path, backend, tasks, ipmasq_persist=True)
    first, again = module_runs(results, "first", "again"), module_runs(results, "again", "end")
    for runs in (first, again):
        assert [n for n in runs if n.endswith("Apply the NAT and forward rules")] == [
            "ipmasq.gateway.converge : Apply the NAT and forward rules"], runs
        assert len(runs) <= 6, runs
    names = [name for name, _r in results]
    no_change = results[names.index("again") + 1:names.index("end")]
    assert not [n for n, r in no_change if r.get("changed")], "a second converge changed something"


def test_a_rewritten_boot_file_is_named_in_the_summary(lab, tmp_path, backend):
    remove = {"name": "lose the boot files", "ansible.builtin.shell": "rm -f /etc/ipmasq/ipmasq.*",
              "changed_when": False}
    tasks = [role_task("first", "ipmasq.gateway.gateway", {}), remove,
             role_task("again", "ipmasq.gateway.gateway", {})]
    lines = [r["msg"] for name, r in play(lab, tmp_path, backend, tasks, ipmasq_persist=True)
             if name == SUMMARY]
    assert lines[1] == "gateway: 0 added, 0 removed, 6 unchanged rules (%s); boot file rewritten" \
        % backend, lines


def test_check_mode_shows_each_change_once(lab, tmp_path, backend):
    results = play(lab, tmp_path, backend, [role_task("plan", "ipmasq.gateway.gateway", {})],
                   check=True)
    plan = [r["msg"] for name, r in results if name == PLAN]
    assert len(plan) == 1, results
    lines = plan[0]
    assert len(lines) == len(set(lines)), lines
    added = [line for line in lines if line.startswith("+ ")]
    assert len(added) == 7, lines  # the 6 rules and the forward accept of port-forwarded traffic
    assert any("dport 8080" in line or "--dport 8080" in line for line in added), lines
    assert lab.gw.out("nft", "list", "table", "inet", "ipmasq", check=False) == "", "check mode applied"
    summary = [r["msg"] for name, r in results if name == SUMMARY]
    assert summary == ["gateway: 6 added, 0 removed, 0 unchanged rules (%s); 90-ipmasq.conf "
                       "written [check mode]" % backend], summary
