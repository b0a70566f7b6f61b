"""The lab itself, checked with hand-written rules: proof that the other tests can fail.

If the lab let traffic through without NAT, or the foreign-rule capture missed
a change, every module test would pass for the wrong reason.
"""
import os

import foreign
import netlab
from netlab import GW_WAN, LAN_CLIENT, LAN_SERVER, WAN_HOST, WAN_PORT

HAND_MASQUERADE = """\
table inet handmade {
\tchain postrouting {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\toifname "wan0" ip saddr 192.168.77.0/24 masquerade
\t}
}
"""


def test_without_nat_the_wan_cannot_answer_the_lan(lab):
    # The WAN host has no route back to 192.168.77.0/24, like the Internet.
    assert not lab.probe(lab.lan, "tcp", WAN_HOST, WAN_PORT, timeout=1).ok
    assert not lab.probe(lab.lan, "udp", WAN_HOST, WAN_PORT, timeout=1).ok
    # Nothing listens on the gateway itself.
    assert not lab.probe(lab.wan, "tcp", GW_WAN, 8080, timeout=1).ok


def test_lan_traffic_is_direct(lab):
    reply = lab.probe(lab.lan, "tcp", LAN_SERVER, 80)
    assert (reply.ok, reply.server, reply.peer_ip) == (True, "lansrv", LAN_CLIENT), reply


def test_handwritten_masquerade_shows_gateway_address(lab):
    lab.gw.run("nft", "-f", "-", input_text=HAND_MASQUERADE)
    for proto in ("tcp", "udp"):
        reply = lab.probe(lab.lan, proto, WAN_HOST, WAN_PORT)
        assert (reply.ok, reply.server, reply.peer_ip) == (True, "wan", GW_WAN), reply


def test_route_into_lan_reaches_server_directly(lab):
    lab.route_wan_to_lan()
    reply = lab.probe(lab.wan, "tcp", LAN_SERVER, 80)
    assert (reply.ok, reply.server, reply.peer_ip) == (True, "lansrv", WAN_HOST), reply


def test_foreign_capture_ignores_ours_and_sees_theirs(lab):
    gw = lab.gw
    gw.run("iptables-restore", "--noflush", input_text=(
        "*nat\n:IPMASQ-POSTROUTING - [0:0]\n-A POSTROUTING -j IPMASQ-POSTROUTING\n"
        "-A IPMASQ-POSTROUTING -s 192.168.77.0/24 -o wan0 -j MASQUERADE\nCOMMIT\n"
        "*filter\n:IPMASQ-FORWARD - [0:0]\n-I FORWARD 1 -j IPMASQ-FORWARD\n"
        "-A IPMASQ-FORWARD -s 192.168.77.0/24 -o wan0 -j ACCEPT\nCOMMIT\n"))
    gw.run("ip6tables-restore", "--noflush", input_text=(
        "*nat\n:IPMASQ-POSTROUTING - [0:0]\n-A POSTROUTING -j IPMASQ-POSTROUTING\nCOMMIT\n"))
    gw.run("nft", "-f", "-", input_text="table inet ipmasq {\n\tchain forward {\n"
           "\t\ttype filter hook forward priority filter; policy accept;\n\t}\n}\n")
    # Traffic moves counters in foreign chains; that is not a change.
    assert lab.probe(lab.lan, "tcp", WAN_HOST, WAN_PORT).ok
    foreign.assert_intact(lab)
    assert "IPMASQ-FORWARD" in foreign.owned_iptables(gw)
    assert "chain forward" in foreign.owned_nft(gw)

    gw.run("iptables", "-D", "f2b-sshd", "-j", "RETURN")
    gw.run("nft", "add", "rule", "inet", "foreign", "forward", "counter")
    now = foreign.capture_not_ours(gw)
    changed = sorted(k for k in now if now[k] != lab.foreign_before[k])
    assert changed == ["iptables-save", "nft ruleset minus ours", "nft table inet foreign"]


def test_teardown_leaves_no_namespace():
    built = netlab.Lab("imq%dxself" % os.getpid())
    try:
        built.build()
    finally:
        built.destroy()
    names = netlab.run(["ip", "netns", "list"]).stdout
    assert built.prefix not in names
