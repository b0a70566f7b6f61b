"""Real packets through a gateway configured by nat_rules, for both backends."""
import foreign
import scenarios
from playbook import ok
from netlab import (GW_LAN, GW_WAN, GW_WAN6, LAN_CLIENT, LAN_SERVER, WAN_HOST, WAN_HOST6,
                    WAN_PORT, WAN_PORT6)


def _applied(nat, config):
    result = ok(nat("merged", config))
    assert result["changed"] is True
    return result


def _assert_reply(reply, server, peer_ip):
    assert reply.ok, reply
    assert (reply.server, reply.peer_ip) == (server, peer_ip), reply


def test_masquerade_shows_gateway_address(lab, nat):
    _applied(nat, {"masquerade": scenarios.MASQUERADE + scenarios.MASQUERADE6})
    for proto in ("tcp", "udp"):
        _assert_reply(lab.probe(lab.lan, proto, WAN_HOST, WAN_PORT), "wan", GW_WAN)
    for proto in ("tcp", "udp"):
        _assert_reply(lab.probe(lab.lan, proto, WAN_HOST6, WAN_PORT6), "wan6", GW_WAN6)
    foreign.assert_intact(lab)


def test_snat_to_fixed_address(lab, nat):
    # A second WAN address on the gateway, used as the fixed SNAT source.
    lab.gw.ip("addr", "add", "198.51.100.2/24", "dev", "wan0")
    _applied(nat, {"snat": [{"source": "192.168.77.0/24", "out_interface": "wan0",
                             "to_address": "198.51.100.2"}]})
    for proto in ("tcp", "udp"):
        _assert_reply(lab.probe(lab.lan, proto, WAN_HOST, WAN_PORT), "wan", "198.51.100.2")


# Where a forward that is too wide would land on the LAN server: UDP on the TCP forward's
# ports (8080 -> 80) and TCP one past the range 9000-9002. Something listens there, so a
# wrong forward gets an answer instead of failing like a closed port.
UNFORWARDED = (("udp", 8080, 80), ("udp", 8080, 8080), ("tcp", 9003, 9003))


def test_port_forwards_reach_lan_server_with_client_address(lab, nat):
    lab.listen(lab.srv, "unforwarded", tcp=[9003], udp=[80, 8080])
    for proto, _public, port in UNFORWARDED:  # control: the listeners answer
        _assert_reply(lab.probe(lab.lan, proto, LAN_SERVER, port), "unforwarded", LAN_CLIENT)
    _applied(nat, {"port_forwards": scenarios.PORT_FORWARDS})
    _assert_reply(lab.probe(lab.wan, "tcp", GW_WAN, 8080), "lansrv", WAN_HOST)
    _assert_reply(lab.probe(lab.wan, "udp", GW_WAN, 5353), "lansrv", WAN_HOST)
    for port in (9000, 9001, 9002):
        _assert_reply(lab.probe(lab.wan, "tcp", GW_WAN, port), "lansrv", WAN_HOST)
    # Only what was forwarded: UDP 8080 and TCP 9003 stay closed.
    for proto, public in sorted(set((proto, public) for proto, public, _port in UNFORWARDED)):
        reply = lab.probe(lab.wan, proto, GW_WAN, public, timeout=1)
        assert not reply.ok, "%s %d was forwarded: %r" % (proto, public, reply)
    foreign.assert_intact(lab)


def test_forward_drop_blocks_direct_access_but_not_forwards(lab, nat):
    lab.route_wan_to_lan()
    # Control: with a route and no rules, the WAN host reaches the LAN server directly.
    _assert_reply(lab.probe(lab.wan, "tcp", LAN_SERVER, 80), "lansrv", WAN_HOST)

    _applied(nat, scenarios.full())
    assert not lab.probe(lab.wan, "tcp", LAN_SERVER, 80, timeout=1).ok
    assert not lab.probe(lab.wan, "udp", LAN_SERVER, 53, timeout=1).ok
    _assert_reply(lab.probe(lab.wan, "tcp", GW_WAN, 8080), "lansrv", WAN_HOST)
    _assert_reply(lab.probe(lab.wan, "udp", GW_WAN, 5353), "lansrv", WAN_HOST)
    for proto in ("tcp", "udp"):
        _assert_reply(lab.probe(lab.lan, proto, WAN_HOST, WAN_PORT), "wan", GW_WAN)
    foreign.assert_intact(lab)


def test_hairpin_lets_lan_clients_use_the_public_address(lab, nat):
    hairpin = [dict(scenarios.PORT_FORWARDS[0], hairpin=True)]
    _applied(nat, {"masquerade": scenarios.MASQUERADE, "port_forwards": hairpin})
    reply = lab.probe(lab.lan, "tcp", GW_WAN, 8080)
    assert reply.ok and reply.server == "lansrv", reply
    # The server must answer through the gateway, so it sees the gateway, not the client.
    assert reply.peer_ip in (GW_LAN, GW_WAN) and reply.peer_ip != LAN_CLIENT, reply
