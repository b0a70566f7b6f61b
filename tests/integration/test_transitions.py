"""A backend switch, both ways, and the adoption of a hand-typed gateway: one run each, with
traffic through the gateway the whole time (no gap), the old or hand-made rules gone after
it (no duplicates), check mode predicting the run, and a second run changing nothing."""
import threading
import time

import pytest

import foreign
import scenarios
from netlab import GW_WAN, LAN_NET, LAN_SERVER, WAN_HOST, WAN_PORT
from playbook import NatRules, brief, ok

CONFIG = {"masquerade": scenarios.MASQUERADE, "port_forwards": scenarios.PORT_FORWARDS[:1],
          "forward": scenarios.FORWARD}
MAX_PROBES = 400  # bounds the traffic loop whatever happens


class Traffic:
    """Probes through the gateway, one after the other, while a ``with`` block runs: LAN to
    WAN (masquerade) and WAN to the port forward. Every probe must be answered."""

    def __init__(self, lab):
        self.lab, self.results, self._stop = lab, [], threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        for index in range(MAX_PROBES):
            if self._stop.is_set():
                return
            if index % 2:
                reply = self.lab.probe(self.lab.wan, "tcp", GW_WAN, 8080, timeout=1)
                self.results.append(("forward", reply.ok and reply.server == "lansrv", reply))
            else:
                reply = self.lab.probe(self.lab.lan, "tcp", WAN_HOST, WAN_PORT, timeout=1)
                self.results.append(("masquerade", reply.ok and reply.peer_ip == GW_WAN, reply))

    def __enter__(self):
        self.lab.start_servers()
        self._thread.start()
        time.sleep(0.5)  # a few probes before the run starts
        return self

    def __exit__(self, *exc):
        time.sleep(0.5)  # and a few after it
        self._stop.set()
        self._thread.join(timeout=60)

    def assert_no_gap(self):
        failed = [r for r in self.results if not r[1]]
        assert len(self.results) >= 4 and not failed, (len(self.results), failed[:3])


def _ours(lab):
    owned = foreign.owned(lab.gw)
    return {"nftables": bool(owned["nft"]), "iptables": bool(owned["iptables"])}


@pytest.mark.parametrize("old, new", [("iptables", "nftables"), ("nftables", "iptables")])
def test_a_backend_switch_moves_the_rules_in_one_run_without_a_gap(lab, tmp_path, old, new):
    ok(NatRules(lab.gw, tmp_path / "old", old)("merged", CONFIG, persist=True))
    assert _ours(lab) == {old: True, new: False}
    nat = NatRules(lab.gw, tmp_path / "old", new)  # same /etc: the old boot files are there
    checked = ok(nat("merged", CONFIG, check=True, diff=True, persist=True))
    assert _ours(lab) == {old: True, new: False}, "check mode changed the rules"
    assert checked["backend_switch"]["from"] == old and checked["backend_switch"]["to"] == new
    assert any(line.startswith("[%s] postrouting:" % old)
               for line in checked["diff"]["before"].splitlines()), checked["diff"]
    with Traffic(lab) as traffic:
        switched = ok(nat("merged", CONFIG, diff=True, persist=True))
    traffic.assert_no_gap()
    assert switched["commands"] == checked["commands"], brief(switched)
    assert switched["backend_switch"] == checked["backend_switch"]
    assert switched["backend"] == new and _ours(lab) == {old: False, new: True}
    # the old backend's removal is the last part of the commands, after ours
    removal = "delete table inet ipmasq" if old == "nftables" else "-D POSTROUTING -j IPMASQ-POSTROUTING"
    assert switched["commands"].index(removal) > len(switched["commands"]) // 2
    # only the new backend's boot files are left
    persisted = sorted(p.name for p in (nat.etc / "ipmasq").iterdir())
    assert persisted == (["ipmasq.nft"] if new == "nftables" else ["ipmasq.v4", "ipmasq.v6"])
    foreign.assert_intact(lab)
    again = ok(nat("merged", CONFIG, persist=True))
    assert again["changed"] is False and "backend_switch" not in again


HAND_TYPED = [
    # the seed's classic setup, as typed at a shell
    ["-t", "nat", "-A", "POSTROUTING", "-s", LAN_NET, "-o", "wan0", "-j", "MASQUERADE"],
    ["-t", "nat", "-A", "PREROUTING", "-i", "wan0", "-p", "tcp", "--dport", "8080", "-j", "DNAT",
     "--to-destination", "%s:80" % LAN_SERVER],
    ["-A", "FORWARD", "-i", "wan0", "-m", "state", "--state", "ESTABLISHED,RELATED", "-j",
     "ACCEPT"],
    # and two that the config does not cover
    ["-t", "nat", "-A", "POSTROUTING", "-s", "10.99.0.0/16", "-o", "wan0", "-j", "MASQUERADE"],
    ["-A", "FORWARD", "-p", "tcp", "--dport", "22", "-j", "LOG"],
]


@pytest.mark.parametrize("backend", ["nftables", "iptables"])
def test_adopting_the_hand_typed_gateway_without_a_gap_or_duplicates(lab, tmp_path, backend):
    for rule in HAND_TYPED:
        lab.gw.run("iptables", "-w", "5", *rule)
    lab.foreign_before = foreign.capture_not_ours(lab.gw)
    hand_before = lab.foreign_before["iptables-save"]
    nat = NatRules(lab.gw, tmp_path, backend)
    # The migration as a user makes it: parse the dump, apply that config with adopt.
    dump = lab.gw.out("iptables-save")
    parsed = ok(nat("parsed", running_config=dump))
    config = dict((k, v) for k, v in parsed["parsed"].items() if v)
    assert config["masquerade"] == [{"source": LAN_NET, "out_interface": "wan0"},
                                    {"source": "10.99.0.0/16", "out_interface": "wan0"}]
    config["masquerade"] = config["masquerade"][:1]  # that one is not wanted any more
    checked = ok(nat("merged", config, adopt=True, check=True, diff=True))
    assert lab.foreign_before == foreign.capture_not_ours(lab.gw), "check mode changed rules"
    with Traffic(lab) as traffic:
        adopted = ok(nat("merged", config, adopt=True, diff=True))
    traffic.assert_no_gap()
    assert adopted["commands"] == checked["commands"], brief(adopted)
    assert adopted["adopted"] == checked["adopted"]
    removed = [item["rule"] for item in adopted["adopted"]["removed"]]
    assert sorted(removed) == [
        "-A FORWARD -i wan0 -m state --state RELATED,ESTABLISHED -j ACCEPT",
        "-A POSTROUTING -s %s -o wan0 -j MASQUERADE" % LAN_NET,
        "-A PREROUTING -i wan0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination "
        "%s:80" % LAN_SERVER]
    kept = dict((item["rule"], item["reason"]) for item in adopted["adopted"]["kept"])
    assert set(kept) == {"-A POSTROUTING -s 10.99.0.0/16 -o wan0 -j MASQUERADE",
                         "-A FORWARD -p tcp -m tcp --dport 22 -j LOG"}
    assert any(w.startswith("adopt: kept -A FORWARD -p tcp") for w in adopted["warnings"])
    assert "[hand-made iptables] nat: -A POSTROUTING" in checked["diff"]["before"]
    # Each removed rule is gone, every other rule that is not ours is as it was.
    hand_after = foreign.capture_not_ours(lab.gw)["iptables-save"]
    assert hand_after.splitlines() == [line for line in hand_before.splitlines()
                                       if line not in removed]
    # Our rules carry the traffic now, once each.
    reply = lab.probe(lab.lan, "tcp", WAN_HOST, WAN_PORT)
    assert reply.ok and reply.peer_ip == GW_WAN, reply
    again = ok(nat("merged", config, adopt=True))
    assert again["changed"] is False and again["adopted"]["removed"] == []


def test_adopt_with_a_rollback_timer_is_refused_before_any_change(lab, tmp_path):
    lab.gw.run("iptables", "-w", "5", *HAND_TYPED[0])
    lab.foreign_before = foreign.capture_not_ours(lab.gw)
    nat = NatRules(lab.gw, tmp_path, "nftables")
    result = nat("merged", {"masquerade": scenarios.MASQUERADE}, adopt=True,
                 rollback_timeout=30)
    assert result.get("failed") is True and "adopt without rollback_timeout" in result["msg"]
    assert foreign.owned(lab.gw) == {"nft": "", "iptables": ""}
    foreign.assert_intact(lab)
