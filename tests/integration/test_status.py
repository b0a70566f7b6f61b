"""nat_status on a real kernel, for both backends: connections from LAN hosts, counters of the
rules that carried real traffic, drift after a hand edit, a pending rollback, and the fleet
playbook with its JSON file and node-exporter textfile.

nat_status runs with ``backend: auto`` throughout: the lab's gateway holds foreign nft and
iptables rules as well, and the module must find ours by itself.
"""
import json

import pytest
from prometheus_client.parser import text_string_to_metric_families

import foreign
import scenarios
from netlab import GW_WAN, LAN_CLIENT, LAN_SERVER, REPO, WAN_HOST, WAN_PORT
from playbook import brief, ok, run_plays, task_results

STATUS = "ipmasq.gateway.nat_status"
FROM_CLIENT, FROM_SERVER = 5, 3  # connections each LAN host opens


def status_task(**options):
    return {"name": "nat_status", STATUS: options, "ignore_errors": True}


def probes(lab, ns, proto, host, port, count):
    for _attempt in range(count):
        reply = lab.probe(ns, proto, host, port)
        assert reply.ok, reply


def by_address(result):
    return dict((row["address"], row) for row in result["top_sources"])


def counter(result, kind, **identity):
    [row] = [r for r in result["counters"][kind]
             if all(r.get(k) == v for k, v in identity.items())]
    return row["packets"]


def test_top_hosts_and_counters_follow_real_traffic(lab, nat, backend):
    ok(nat("merged", scenarios.full(), persist=True))
    before = ok(nat.play(status_task())[0])
    assert before["backend"] == backend, brief(before)
    assert counter(before, "port_forwards", port=8080) == 0
    assert before["top_sources"] == []

    probes(lab, lab.lan, "tcp", WAN_HOST, WAN_PORT, FROM_CLIENT)
    probes(lab, lab.lan, "udp", WAN_HOST, WAN_PORT, 1)
    probes(lab, lab.srv, "tcp", WAN_HOST, WAN_PORT, FROM_SERVER)
    probes(lab, lab.wan, "tcp", GW_WAN, 8080, 2)  # through the port forward to srv:80
    run = nat.play(status_task(), nat.task("merged", scenarios.full(), persist=True))
    after, again = ok(run[0]), ok(run[1])

    # Both LAN hosts, each with the connections it opened, per protocol; the WAN client of
    # the port forward is no LAN host.
    top = by_address(after)
    assert set(top) == {LAN_CLIENT, LAN_SERVER}, after["top_sources"]
    assert top[LAN_CLIENT]["protocols"] == {"tcp": FROM_CLIENT, "udp": 1}
    assert top[LAN_SERVER]["protocols"] == {"tcp": FROM_SERVER}
    assert after["top_sources"][0]["address"] == LAN_CLIENT
    assert after["conntrack"]["count"] >= FROM_CLIENT + 1 + FROM_SERVER + 2
    assert after["conntrack"]["max"] > 0 and after["conntrack"]["used_percent"] < 1

    # A NAT rule counts the connections it translated; an unused forward stays at 0.
    assert counter(after, "port_forwards", port=8080) == 2
    assert counter(after, "port_forwards", port=5353) == 0
    assert counter(after, "port_forwards", port="9000-9002") == 0
    assert counter(after, "masquerade", source="192.168.77.0/24") == FROM_CLIENT + 1 + FROM_SERVER
    assert after["unused_port_forwards"] == 2  # udp 5353 and tcp 9000-9002
    # forward rules count every packet: at least the SYN and the data of each connection
    assert counter(after, "forward", out_interface="wan0") >= 2 * (FROM_CLIENT + FROM_SERVER)

    # More traffic, a larger counter; and nat_rules still finds nothing to change.
    assert again["changed"] is False and again["commands"] == [], brief(again)
    probes(lab, lab.wan, "tcp", GW_WAN, 8080, 3)
    later = ok(nat.play(status_task())[0])
    assert counter(later, "port_forwards", port=8080) == 5
    assert counter(later, "port_forwards", port=5353) == 0
    assert later["drift"]["differs"] is False, later["drift"]
    assert [f for f in later["findings"] if f["severity"] == "warning"] == []
    foreign.assert_intact(lab)


HAND_EDIT = {
    "nftables": ["nft", "add", "rule", "inet", "ipmasq", "forward", "tcp", "dport", "22", "accept"],
    "iptables": ["iptables", "-w", "5", "-A", "IPMASQ-FORWARD", "-p", "tcp", "--dport", "22",
                 "-j", "ACCEPT"],
}

HAND_EDIT_SHOWN = {
    "nftables": "+ forward: tcp dport 22 counter accept",
    "iptables": "+ ipv4 IPMASQ-FORWARD: -p tcp -m tcp --dport 22 -j ACCEPT",
}


def test_drift_after_a_hand_edit_and_not_before(lab, nat, backend):
    ok(nat("merged", scenarios.full(), persist=True))
    clean = ok(nat.play(status_task())[0])
    assert clean["drift"]["differs"] is False, clean["drift"]
    assert clean["drift"]["boot_files"], clean["drift"]
    assert clean.get("warnings", []) == []

    lab.gw.run(*HAND_EDIT[backend])
    edited = ok(nat.play(status_task())[0])
    assert edited["drift"]["differs"] is True
    assert edited["drift"]["changes"] == [HAND_EDIT_SHOWN[backend]]
    assert edited["foreign_rules"] == 0  # tcp dport 22 accept: a forward rule of the model
    assert any("differ from the boot file" in w for w in edited["warnings"]), edited["warnings"]

    # nat_rules repairs it, and the status says so
    repaired = ok(nat("merged", scenarios.full(), persist=True))
    assert repaired["changed"] is True
    assert ok(nat.play(status_task())[0])["drift"]["differs"] is False


def test_a_change_made_without_persisting_is_drift(lab, nat):
    ok(nat("merged", scenarios.full(), persist=True))
    config = scenarios.full()
    config["port_forwards"] = config["port_forwards"][:1]
    ok(nat("replaced", config, persist=False))
    result = ok(nat.play(status_task())[0])
    assert result["drift"]["differs"] is True
    assert any(c.startswith("- ") and "5353" in c for c in result["drift"]["changes"]), result


def test_a_pending_rollback_is_reported(lab, nat, backend):
    ok(nat("merged", scenarios.full(), persist=True))
    config = scenarios.full()
    config["port_forwards"] = config["port_forwards"] + [
        {"in_interface": "wan0", "protocol": "tcp", "port": 8091, "to_address": LAN_SERVER,
         "to_port": 80}]
    change = ok(nat("replaced", config, rollback_timeout=120, confirm=False, persist=True))
    token = change["rollback_token"]
    try:
        result = ok(nat.play(status_task())[0])
        [row] = result["rollbacks"]
        assert row["token"] == token and row["status"] == "pending"
        assert 60 < row["seconds_left"] <= 120
        assert any(token in w and "waiting for confirmation" in w for w in result["warnings"])
        # the boot files wait for the confirmation, so the live rules differ from them
        assert result["drift"]["differs"] is True
    finally:
        ok(nat(confirm_token=token))
    confirmed = ok(nat.play(status_task())[0])
    assert confirmed["rollbacks"] == [] and confirmed["drift"]["differs"] is False


def test_the_fleet_playbook_prints_a_line_writes_json_and_a_textfile(lab, nat, tmp_path):
    ok(nat("merged", scenarios.full(), persist=True))
    probes(lab, lab.lan, "tcp", WAN_HOST, WAN_PORT, 2)
    probes(lab, lab.wan, "tcp", GW_WAN, 8080, 4)
    textfiles, report = tmp_path / "node-exporter", tmp_path / "status.json"
    textfiles.mkdir()
    plays = [{"ansible.builtin.import_playbook": str(REPO / "playbooks" / "status.yml"),
              "vars": {"nat_status_hosts": "localhost", "nat_status_json": str(report),
                       "nat_status_textfile_dir": str(textfiles)}}]
    proc, out = run_plays(lab.gw, nat.workdir, plays)
    assert proc.returncode == 0, proc.stdout[-3000:]
    results = dict(task_results(out))
    table = results["Show one line per gateway"]["msg"]
    assert table[0].split()[:3] == ["gateway", "backend", "rules"]
    assert table[1].split()[:3] == ["localhost", nat.backend, "7"], table

    data = json.loads(report.read_text())
    [row] = data["gateways"]
    assert data["table"] == table
    assert row["gateway"] == "localhost" and row["top_host"] == LAN_CLIENT
    assert row["top_host_connections"] == 2
    assert (row["port_forwards"], row["unused_port_forwards"]) == (3, 2)
    assert row["drift"] is False and row["pending_rollbacks"] == []

    samples = {}
    for family in text_string_to_metric_families((textfiles / "ipmasq.prom").read_text()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    web = (("in_interface", "wan0"), ("port", "8080"), ("protocol", "tcp"))
    assert samples[("ipmasq_port_forward_packets_total", web)] == 4
    assert samples[("ipmasq_nf_conntrack_entries", ())] == row["conntrack_count"]
    assert samples[("ipmasq_nf_conntrack_entries_limit", ())] == row["conntrack_max"]
    assert samples[("ipmasq_nf_conntrack_source_entries",
                    (("protocol", "tcp"), ("source", LAN_CLIENT)))] == 2
    assert samples[("ipmasq_port_forwards_unused", ())] == 2
    assert samples[("ipmasq_drift", ())] == 0


@pytest.mark.parametrize("backend", ["nftables"])
def test_status_changes_nothing_in_check_mode_or_out_of_it(lab, nat):
    ok(nat("merged", scenarios.full(), persist=True))
    before = foreign.whole(lab.gw)
    results = nat.play(status_task(), status_task(top=0), check=True)
    assert all(ok(r)["changed"] is False for r in results)
    ok(nat.play(status_task(prometheus=True))[0])
    assert foreign.whole(lab.gw) == before
