"""Stale NAT mappings: a changed port forward must not keep using its old conntrack entry.

The kernel NATs only a flow's first packet; later packets of a known flow follow the
conntrack entry, whatever the rules now say. A UDP "flow" is just the same address
and port pair, so a client that keeps its source port keeps its old mapping unless
the module deletes that entry (conntrack_flush: affected, the default).
"""
import foreign
import scenarios
from netlab import GW_WAN, LAN_SERVER, WAN_HOST, WAN_PORT
from playbook import brief, ok


def _forward(port, to_port):
    return {"in_interface": "wan0", "protocol": "udp", "port": port, "to_address": LAN_SERVER,
            "to_port": to_port}


def _conntrack(lab, *match):
    return lab.gw.out("conntrack", "-L", *match, check=False)


def test_changed_forward_drops_only_its_own_stale_mapping(lab, nat):
    base = {"masquerade": scenarios.MASQUERADE, "port_forwards": [_forward(5353, 53), _forward(5354, 53)]}
    assert ok(nat("merged", base))["changed"] is True
    # Three live flows: two through the port forwards, one masqueraded LAN->WAN.
    assert lab.probe(lab.wan, "udp", GW_WAN, 5353, source_port=40053).server == "lansrv"
    assert lab.probe(lab.wan, "udp", GW_WAN, 5354, source_port=40054).server == "lansrv"
    assert lab.probe(lab.lan, "udp", WAN_HOST, WAN_PORT, source_port=41000).peer_ip == GW_WAN
    lan_flow = _conntrack(lab, "-p", "udp", "--orig-port-dst", str(WAN_PORT))
    assert "sport=41000" in lan_flow, lan_flow

    run = nat.play(nat.task("merged", {"port_forwards": [_forward(5354, 54)]}, conntrack_flush="none"),
                   nat.task("merged", {"port_forwards": [_forward(5353, 54)]}))
    kept, flushed = ok(run[0]), ok(run[1])
    assert kept["changed"] and kept["conntrack_deleted"] == [], brief(kept)
    assert flushed["changed"] and flushed["conntrack_deleted"], brief(flushed)

    # conntrack_flush: none -> the old mapping lives on (this is why flushing matters).
    assert lab.probe(lab.wan, "udp", GW_WAN, 5354, source_port=40054).server == "lansrv"
    # Flushed -> the same client now reaches the new target.
    assert lab.probe(lab.wan, "udp", GW_WAN, 5353, source_port=40053).server == "lansrv54"
    # Someone else's flow (here: the masqueraded one) was not touched.
    assert "sport=41000" in _conntrack(lab, "-p", "udp", "--orig-port-dst", str(WAN_PORT))
    foreign.assert_intact(lab)
