"""The resource-module states against a real kernel: idempotence, check mode,
replaced/overridden/deleted, and that nothing foreign is ever touched."""
import copy

import foreign
import scenarios
from netlab import GW_WAN, LAN_SERVER, WAN_HOST, WAN_PORT
from scenarios import normalise

NEW_FORWARDS = [
    {"in_interface": "wan0", "protocol": "tcp", "port": 8081, "to_address": LAN_SERVER, "to_port": 80},
    {"in_interface": "wan0", "protocol": "tcp_udp", "port": 5300, "to_address": LAN_SERVER, "to_port": 53},
]


def _ok(result):
    assert not result.get("failed"), result
    return result


def owned(lab):
    return {"nft": foreign.owned_nft(lab.gw), "iptables": foreign.owned_iptables(lab.gw)}


def test_second_identical_run_changes_nothing(lab, nat):
    config = scenarios.full()
    run = nat.play(nat.task("merged", config), nat.task("merged", config),
                   nat.task("replaced", config), nat.task("overridden", config))
    first, again, replaced, overridden = (_ok(r) for r in run)
    assert first["changed"] is True and first["commands"], first
    for result in (again, replaced, overridden):
        assert result["changed"] is False, result
        assert result["commands"] == [], result
    foreign.assert_intact(lab)


def test_check_mode_plans_exactly_what_the_real_run_applies(lab, nat):
    _ok(nat("merged", scenarios.full()))
    start = owned(lab)
    target = scenarios.full()
    target["port_forwards"] = [copy.deepcopy(scenarios.PORT_FORWARDS[0])] + NEW_FORWARDS
    target["port_forwards"][0]["to_port"] = 8000
    target["forward"] = target["forward"][1:]

    planned = _ok(nat("overridden", target, check=True, diff=True))
    assert planned["changed"] is True and planned["commands"], planned
    assert "diff" in planned, planned
    assert owned(lab) == start, "check mode changed the kernel ruleset"

    applied = _ok(nat("overridden", target, diff=True))
    assert applied["commands"] == planned["commands"]
    assert applied["changed"] is True
    assert owned(lab) != start
    assert normalise(nat.gathered()) == normalise(target)
    foreign.assert_intact(lab)


def test_replaced_port_forwards_leaves_other_kinds_alone(lab, nat):
    run = nat.play(nat.task("merged", scenarios.full()), nat.task("gathered"),
                   nat.task("replaced", {"port_forwards": NEW_FORWARDS}), nat.task("gathered"))
    merged, before, replaced, after = (_ok(r) for r in run)
    assert replaced["changed"] is True, replaced
    before, after = normalise(before["gathered"]), normalise(after["gathered"])
    assert before["port_forwards"] == normalise(scenarios.full())["port_forwards"]
    assert after["port_forwards"] == normalise({"port_forwards": NEW_FORWARDS})["port_forwards"]
    for kind in ("masquerade", "snat", "forward"):
        assert after[kind] == before[kind], kind
    assert merged["changed"] is True
    # The new forward works and the old one is gone.
    assert lab.probe(lab.wan, "tcp", GW_WAN, 8081).server == "lansrv"
    assert not lab.probe(lab.wan, "tcp", GW_WAN, 8080, timeout=1).ok
    foreign.assert_intact(lab)


def test_overridden_makes_owned_ruleset_exactly_config(lab, nat):
    only = {"snat": [{"source": "192.168.77.0/24", "out_interface": "wan0", "to_address": GW_WAN}]}
    run = nat.play(nat.task("merged", scenarios.full()), nat.task("overridden", only), nat.task("gathered"))
    merged, overridden, gathered = (_ok(r) for r in run)
    assert merged["changed"] and overridden["changed"]
    assert normalise(gathered["gathered"]) == normalise(only)
    reply = lab.probe(lab.lan, "tcp", WAN_HOST, WAN_PORT)
    assert (reply.ok, reply.peer_ip) == (True, GW_WAN), reply
    assert not lab.probe(lab.wan, "tcp", GW_WAN, 8080, timeout=1).ok
    foreign.assert_intact(lab)


def test_deleted_given_rules_removes_only_those(lab, nat):
    run = nat.play(nat.task("merged", scenarios.full()),
                   nat.task("deleted", {"port_forwards": [scenarios.PORT_FORWARDS[0]]}),
                   nat.task("gathered"))
    _, deleted, gathered = (_ok(r) for r in run)
    assert deleted["changed"] is True
    want = scenarios.full()
    want["port_forwards"] = want["port_forwards"][1:]
    assert normalise(gathered["gathered"]) == normalise(want)
    foreign.assert_intact(lab)


def test_deleted_without_config_removes_everything_ours(lab, nat, backend):
    config = scenarios.full()
    config["masquerade"] = config["masquerade"] + scenarios.MASQUERADE6
    merged = _ok(nat("merged", config))
    assert merged["changed"] is True
    assert owned(lab)["nft" if backend == "nftables" else "iptables"], "nothing was applied"

    deleted = _ok(nat("deleted"))
    assert deleted["changed"] is True and deleted["commands"], deleted
    assert owned(lab) == {"nft": "", "iptables": ""}
    ruleset = lab.gw.out("nft", "list", "ruleset")
    assert "table inet ipmasq" not in ruleset and "IPMASQ-" not in ruleset
    assert normalise(nat.gathered()) == normalise({})
    again = _ok(nat("deleted"))
    assert again["changed"] is False and again["commands"] == [], again
    assert not lab.probe(lab.lan, "tcp", WAN_HOST, WAN_PORT, timeout=1).ok
    foreign.assert_intact(lab)


FAILING_INPUT = {"port_forwards": [dict(scenarios.PORT_FORWARDS[0], port=70000)]}


def test_foreign_rules_survive_every_state(lab, nat):
    # A lab of its own: the neighbours are checked after every single step.
    configs = {
        "merged": ("merged", scenarios.full()),
        "replaced": ("replaced", {"port_forwards": NEW_FORWARDS}),
        "overridden": ("overridden", {"masquerade": scenarios.MASQUERADE + scenarios.MASQUERADE6}),
        "failed": ("merged", FAILING_INPUT),
        "deleted": ("deleted", None),
    }
    for step in ("merged", "replaced", "overridden", "failed", "deleted"):
        state, config = configs[step]
        result = nat(state, config)
        assert bool(result.get("failed")) == (step == "failed"), (step, result)
        before = lab.foreign_before
        now = foreign.capture_not_ours(lab.gw)
        for key in before:
            assert now[key] == before[key], "%s changed by %s:\n%s\n---\n%s" % (key, step, before[key], now[key])
