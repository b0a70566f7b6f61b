"""An interface that does not exist on the host (yet) is a warning, not an error.

A PPP link is not up when the gateway is first configured, so the rules are applied all
the same; the warning names the interface and the entries that name it, once.
"""
import scenarios
from netlab import LAN_NET
from playbook import ok, role_task, run_plays, systemctl_stand_in, task_results


def _missing(result, name):
    return [w for w in result.get("warnings", []) if w.startswith("interface %s does not exist" % name)]


def test_the_module_warns_and_applies(nat):
    config = {"masquerade": [{"source": LAN_NET, "out_interface": "ppp0"}],
              "forward": [{"in_interface": "ppp0", "action": "drop"},
                          {"in_interface": scenarios.WAN_IF, "action": "drop"}]}
    result = ok(nat("merged", config, check=True))
    [warning] = _missing(result, "ppp0")
    assert "masquerade[0].out_interface, forward[0].in_interface" in warning, warning
    assert not _missing(result, scenarios.WAN_IF), result["warnings"]

    result = ok(nat("merged", config))
    assert result["changed"] and len(_missing(result, "ppp0")) == 1, result
    assert nat.gathered()["masquerade"][0]["out_interface"] == "ppp0"
    # Deleting rules that name it warns about nothing.
    assert not _missing(ok(nat("deleted", {"masquerade": config["masquerade"]})), "ppp0")


def test_the_gateway_role_warns_about_its_wan_interface(lab, tmp_path, backend):
    plays = [{"name": "missing wan", "hosts": "all", "gather_facts": False,
              "vars": {"ipmasq_backend": backend, "ipmasq_persist": False,
                       "ipmasq_wan_interface": "ppp0", "ipmasq_lan_networks": [LAN_NET]},
              "tasks": [role_task("gateway", "ipmasq.gateway.gateway", {})]}]
    proc, report = run_plays(lab.gw, tmp_path, plays,
                             path_prefix=systemctl_stand_in(tmp_path / "shims"))
    assert proc.returncode == 0, proc.stdout[-3000:]
    [apply] = [r for name, r in task_results(report) if name.endswith("Apply the NAT and forward rules")]
    [warning] = _missing(apply, "ppp0")
    assert "ipmasq_wan_interface" in warning and apply["changed"], apply
