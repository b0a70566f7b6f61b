"""Foreign forward filters: a Docker-style iptables FORWARD policy DROP, a legacy one, a
hand-made nft forward chain on policy drop. The module finds them before it changes
anything, says which chain drops what and the ways out, auto takes the backend that works,
and the traffic shows that each verdict was right."""
import pytest

import foreign
import scenarios
from netlab import GW_WAN, LAN_CLIENT, LAN_SERVER, WAN_HOST, WAN_PORT
from playbook import NatRules, brief, ok

CONFIG = {"masquerade": scenarios.MASQUERADE, "port_forwards": scenarios.PORT_FORWARDS[:1],
          "forward": scenarios.FORWARD}


def _docker_policy(lab):
    """What dockerd leaves when it switched forwarding on: FORWARD policy DROP, beside the
    DOCKER-USER chain and jump the lab has already."""
    lab.gw.run("iptables", "-w", "5", "-P", "FORWARD", "DROP")
    lab.foreign_before = foreign.capture_not_ours(lab.gw)


def _failed_before_any_change(lab, result):
    assert result.get("failed") is True, brief(result)
    assert result["changed"] is False
    assert foreign.owned(lab.gw) == {"nft": "", "iptables": ""}, foreign.owned(lab.gw)
    foreign.assert_intact(lab)


def _masquerade_works(lab):
    reply = lab.probe(lab.lan, "tcp", WAN_HOST, WAN_PORT)
    assert reply.ok and reply.peer_ip == GW_WAN, reply


def _forward_works(lab):
    reply = lab.probe(lab.wan, "tcp", GW_WAN, 8080)
    assert reply.ok and (reply.server, reply.peer_ip) == ("lansrv", WAN_HOST), reply


def _blocked(lab, ns, *target):
    reply = lab.probe(ns, "tcp", *target, timeout=1)
    assert not reply.ok and "timed out" in reply.stderr, reply


def test_nftables_fails_before_any_change_under_dockers_forward_drop(lab, tmp_path):
    _docker_policy(lab)
    nat = NatRules(lab.gw, tmp_path, "nftables")
    run = nat.play(nat.task("merged", CONFIG, check=True), nat.task("merged", CONFIG))
    for result in run.results:
        _failed_before_any_change(lab, result)
        msg = result["msg"]
        assert msg.startswith("nothing was changed: a foreign forward filter"), msg
        for part in ("table ip filter chain FORWARD (Docker)", "policy (drop)",
                     "new connections from 192.168.77.0/24 out of wan0",
                     "port forward wan0 tcp/8080 to 192.168.77.20",
                     "backend: iptables (or auto)", "DOCKER-USER -i lan0 -o wan0 -j ACCEPT",
                     "foreign_forward_drop: warn"):
            assert part in msg, (part, msg)


def test_warn_applies_and_the_traffic_is_dropped_as_it_said(lab, tmp_path):
    _docker_policy(lab)
    nat = NatRules(lab.gw, tmp_path, "nftables")
    result = ok(nat("merged", CONFIG, foreign_forward_drop="warn"))
    assert result["changed"] is True
    assert any("table ip filter chain FORWARD (Docker)" in w for w in result["warnings"])
    assert "policy (drop)" in result["foreign_forward_drop"]
    # The rules are in, and yet no packet crosses: the check was right.
    _blocked(lab, lab.lan, WAN_HOST, WAN_PORT)
    _blocked(lab, lab.wan, GW_WAN, 8080)
    foreign.assert_intact(lab)


def test_auto_takes_iptables_there_and_docker_user_still_decides(lab, tmp_path):
    _docker_policy(lab)
    nat = NatRules(lab.gw, tmp_path, "auto")
    result = ok(nat("merged", CONFIG))
    assert result["backend"] == "iptables" and not result.get("warnings"), brief(result)
    _masquerade_works(lab)
    _forward_works(lab)
    # An admin's DROP in DOCKER-USER still stops the host it names, and only that host.
    lab.gw.run("iptables", "-w", "5", "-I", "DOCKER-USER", "-s", LAN_CLIENT, "-j", "DROP")
    _blocked(lab, lab.lan, WAN_HOST, WAN_PORT)
    reply = lab.probe(lab.srv, "tcp", WAN_HOST, WAN_PORT)
    assert reply.ok and reply.peer_ip == GW_WAN, reply
    # A second run changes nothing and stays on iptables.
    again = ok(nat("merged", CONFIG))
    assert again["changed"] is False and again["backend"] == "iptables"


def test_accepting_in_docker_user_is_a_way_out_for_nftables(lab, tmp_path):
    _docker_policy(lab)
    for rule in (["-i", "lan0", "-o", "wan0", "-j", "ACCEPT"],
                 ["-o", "lan0", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED,DNAT",
                  "-j", "ACCEPT"]):
        lab.gw.run("iptables", "-w", "5", "-I", "DOCKER-USER", *rule)
    lab.foreign_before = foreign.capture_not_ours(lab.gw)
    nat = NatRules(lab.gw, tmp_path, "nftables")
    result = ok(nat("merged", CONFIG))
    assert result["changed"] is True and not result.get("warnings"), brief(result)
    _masquerade_works(lab)
    _forward_works(lab)
    foreign.assert_intact(lab)


def test_a_legacy_forward_drop_blocks_both_backends(lab, tmp_path):
    """iptables-legacy's FORWARD chain is a base chain of its own: the iptables backend's
    jump (iptables-nft here) does not decide there, so auto finds no backend."""
    lab.gw.run("iptables-legacy", "-w", "5", "-P", "FORWARD", "DROP")
    try:
        lab.foreign_before = foreign.capture_not_ours(lab.gw)
        for backend in ("nftables", "iptables", "auto"):
            nat = NatRules(lab.gw, tmp_path / backend, backend)
            result = nat("merged", CONFIG)
            _failed_before_any_change(lab, result)
            assert "iptables-legacy chain FORWARD" in result["msg"], result["msg"]
            assert "iptables-legacy -P FORWARD ACCEPT" in result["msg"], result["msg"]
            if backend == "auto":
                assert "no backend would carry the traffic" in result["msg"]
        # Its own way out: the policy back to ACCEPT, and nftables goes ahead.
        lab.gw.run("iptables-legacy", "-w", "5", "-P", "FORWARD", "ACCEPT")
        ok(NatRules(lab.gw, tmp_path / "after", "nftables")("merged", CONFIG))
        _masquerade_works(lab)
    finally:
        lab.gw.run("iptables-legacy", "-w", "5", "-P", "FORWARD", "ACCEPT", check=False)


HAND_NFT = """\
table inet hand {
\tchain hand_forward {
\t\ttype filter hook forward priority filter + 5; policy drop;
\t\tct state established,related accept
\t}
}
"""


@pytest.mark.parametrize("backend", ["iptables", "nftables"])
def test_a_foreign_nft_chain_on_policy_drop_blocks_either_backend(lab, tmp_path, backend):
    """A hand-made nft forward chain: neither backend decides inside it. Once it accepts our
    traffic (an accept for the LAN and for DNATed connections), both go ahead."""
    lab.gw.run("nft", "-f", "-", input_text=HAND_NFT)
    lab.foreign_before = foreign.capture_not_ours(lab.gw)
    nat = NatRules(lab.gw, tmp_path, backend)
    result = nat("merged", CONFIG)
    _failed_before_any_change(lab, result)
    assert "table inet hand chain hand_forward drops it by its policy (drop)" in result["msg"]
    assert "backend: iptables" not in result["msg"]  # it would not help here
    lab.gw.run("nft", "add", "rule", "inet", "hand", "hand_forward", "iifname", "lan0", "oifname",
               "wan0", "accept")
    lab.gw.run("nft", "add", "rule", "inet", "hand", "hand_forward", "ct", "status", "dnat", "accept")
    lab.foreign_before = foreign.capture_not_ours(lab.gw)
    result = ok(nat("merged", CONFIG))
    assert result["changed"] is True and not result.get("warnings"), brief(result)
    _masquerade_works(lab)
    _forward_works(lab)
    foreign.assert_intact(lab)
    assert LAN_SERVER  # the forward's target, answering as lansrv above
