"""The resource-module states against a real kernel: idempotence, check mode,
replaced/overridden/deleted, and that nothing foreign is ever touched.

Where a test needs the kernel's state between two module calls, the playbook takes
a snapshot task in between (one ansible-playbook start instead of several).
"""
import copy

import foreign
import scenarios
from foreign import Snapshot
from netlab import GW_WAN, LAN_SERVER, WAN_HOST, WAN_PORT
from playbook import brief, ok
from scenarios import normalise

NEW_FORWARDS = [
    {"in_interface": "wan0", "protocol": "tcp", "port": 8081, "to_address": LAN_SERVER, "to_port": 80},
    {"in_interface": "wan0", "protocol": "tcp_udp", "port": 5300, "to_address": LAN_SERVER, "to_port": 53},
]


def test_second_identical_run_changes_nothing(lab, nat):
    config = scenarios.full()
    run = nat.play(nat.task("merged", config), nat.task("merged", config),
                   nat.task("replaced", config), nat.task("overridden", config))
    first, again, replaced, overridden = (ok(r) for r in run)
    assert first["changed"] is True and first["commands"], brief(first)
    for result in (again, replaced, overridden):
        assert result["changed"] is False, brief(result)
        assert result["commands"] == [], brief(result)
    foreign.assert_intact(lab)


def test_check_mode_plans_exactly_what_the_real_run_applies(lab, nat):
    target = scenarios.full()
    target["port_forwards"] = [copy.deepcopy(scenarios.PORT_FORWARDS[0])] + NEW_FORWARDS
    target["port_forwards"][0]["to_port"] = 8000
    target["forward"] = target["forward"][1:]
    run = nat.play(
        nat.task("merged", scenarios.full()), nat.snapshot(),
        nat.task("overridden", target, check=True, diff=True), nat.snapshot(),
        nat.task("overridden", target, diff=True), nat.snapshot(),
        nat.task("gathered"))
    start, planned, after_check, applied, after_apply, gathered = (
        ok(run[i]) for i in range(1, 7))

    assert planned["changed"] is True and planned["commands"], brief(planned)
    assert planned.get("diff"), "check + diff mode returned no diff: %s" % brief(planned)
    diff = foreign.changes(foreign.whole(Snapshot.parse(start["stdout"])),
                           foreign.whole(Snapshot.parse(after_check["stdout"])))
    assert not diff, "check mode changed the kernel ruleset:\n" + diff

    assert applied["commands"] == planned["commands"]
    assert applied["changed"] is True
    assert applied["after"] == planned["after"]
    assert foreign.owned(Snapshot.parse(after_apply["stdout"])) != \
        foreign.owned(Snapshot.parse(start["stdout"]))
    assert normalise(gathered["gathered"]) == normalise(target)
    foreign.assert_intact(lab)


def test_replaced_port_forwards_leaves_other_kinds_alone(lab, nat):
    run = nat.play(nat.task("merged", scenarios.full()), nat.task("gathered"),
                   nat.task("replaced", {"port_forwards": NEW_FORWARDS}), nat.task("gathered"))
    merged, before, replaced, after = (ok(r) for r in run)
    assert merged["changed"] is True and replaced["changed"] is True, brief(replaced)
    before, after = normalise(before["gathered"]), normalise(after["gathered"])
    assert before["port_forwards"] == normalise(scenarios.full())["port_forwards"]
    assert after["port_forwards"] == normalise({"port_forwards": NEW_FORWARDS})["port_forwards"]
    for kind in ("masquerade", "snat", "forward"):
        assert after[kind] == before[kind], kind
    # The new forward works and the old one is gone.
    assert lab.probe(lab.wan, "tcp", GW_WAN, 8081).server == "lansrv"
    assert not lab.probe(lab.wan, "tcp", GW_WAN, 8080, timeout=1).ok
    foreign.assert_intact(lab)


def test_overridden_makes_owned_ruleset_exactly_config(lab, nat):
    only = {"snat": [{"source": "192.168.77.0/24", "out_interface": "wan0", "to_address": GW_WAN}]}
    run = nat.play(nat.task("merged", scenarios.full()), nat.task("overridden", only), nat.task("gathered"))
    merged, overridden, gathered = (ok(r) for r in run)
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
    deleted, gathered = ok(run[1]), ok(run[2])
    assert ok(run[0])["changed"] is True
    assert deleted["changed"] is True
    want = scenarios.full()
    want["port_forwards"] = want["port_forwards"][1:]
    assert normalise(gathered["gathered"]) == normalise(want)
    foreign.assert_intact(lab)


def test_deleted_without_config_removes_everything_ours(lab, nat, backend):
    config = scenarios.full()
    config["masquerade"] = config["masquerade"] + scenarios.MASQUERADE6
    run = nat.play(nat.task("merged", config), nat.snapshot(), nat.task("deleted"), nat.snapshot(),
                   nat.task("gathered"), nat.task("deleted"))
    merged, applied, deleted, emptied, gathered, again = (ok(r) for r in run)
    assert merged["changed"] is True
    assert foreign.owned(Snapshot.parse(applied["stdout"]))["nft" if backend == "nftables" else "iptables"]

    assert deleted["changed"] is True and deleted["commands"], brief(deleted)
    snap = Snapshot.parse(emptied["stdout"])
    assert foreign.owned(snap) == {"nft": "", "iptables": ""}, "left behind: %s" % foreign.owned(snap)
    assert "IPMASQ-" not in snap.nft
    assert normalise(gathered["gathered"]) == normalise({})
    assert again["changed"] is False and again["commands"] == [], brief(again)
    foreign.assert_intact(lab, snapshot=snap)
    assert not lab.probe(lab.lan, "tcp", WAN_HOST, WAN_PORT, timeout=1).ok


def test_foreign_rules_survive_every_state(lab, nat):
    # A lab of its own: the neighbours are checked after every single step.
    steps = [
        ("merged", nat.task("merged", scenarios.full())),
        ("replaced", nat.task("replaced", {"port_forwards": NEW_FORWARDS})),
        ("overridden", nat.task("overridden", {"masquerade": scenarios.MASQUERADE + scenarios.MASQUERADE6})),
        ("failed", nat.task("merged", {"port_forwards": [dict(scenarios.PORT_FORWARDS[0], port=70000)]})),
        ("deleted", nat.task("deleted")),
    ]
    tasks = []
    for _step, task in steps:
        tasks += [task, nat.snapshot()]
    run = nat.play(*tasks)
    for index, (step, _task) in enumerate(steps):
        result, snap = run[2 * index], run[2 * index + 1]
        assert bool(result.get("failed")) == (step == "failed"), "%s: %s" % (step, brief(result))
        if step != "failed":
            assert result["changed"] is True, "%s: %s" % (step, brief(result))
        foreign.assert_intact(lab, "by the %s step" % step, snapshot=Snapshot.parse(ok(snap)["stdout"]))
