"""ipmasq_wan_input: what reaches the gateway itself from the WAN, with real packets.

Servers run on the gateway (the lab's ``gw`` namespace) on ports listed in
``ipmasq_wan_input`` and on ports that are not. The gateway role applies the list; then the
WAN host reaches the listed ports only, the LAN still reaches every port (also at the
gateway's WAN address), the gateway's own connections to the WAN get their replies, and the
LAN keeps its masquerade. Before the role runs, every port answers from the WAN: the
control that shows the probes can tell open from dropped.
"""
import foreign
import pytest
import scenarios
from netlab import (ECHO6, GW_LAN, GW_WAN, GW_WAN6, LAN_CLIENT, LAN_NET, LAN_NET6, WAN_HOST,
                    WAN_HOST6, WAN_PORT, WAN_PORT6)
from playbook import role_task, run_plays, systemctl_stand_in, task_results

LISTED, UNLISTED, OTHER_SOURCE = 2201, 2202, 2203  # IPv4 server on the gateway
LISTED6, UNLISTED6 = 2301, 2302  # IPv6 server on the gateway
WAN_INPUT = [
    {"protocol": "tcp", "port": LISTED, "comment": "admin"},
    {"protocol": "udp", "port": LISTED},
    {"protocol": "tcp", "port": OTHER_SOURCE, "source": "203.0.113.0/24"},  # not the WAN host's
    {"protocol": "tcp", "port": LISTED6, "source": "2001:db8:100::/64"},
]
# The LAN in both families: the iptables backend then fills ip6tables too.
GATEWAY = {"ipmasq_wan_interface": scenarios.WAN_IF, "ipmasq_lan_networks": [LAN_NET, LAN_NET6],
           "ipmasq_persist": False}
APPLY = "ipmasq.gateway.converge : Apply the NAT and forward rules"


def converge(lab, tmp_path, backend, *runs):
    """One playbook, one gateway-role run per dict of variables; the apply task's results."""
    tasks = [role_task("run %d" % i, "ipmasq.gateway.gateway", v) for i, v in enumerate(runs)]
    plays = [{"name": "wan input", "hosts": "all", "gather_facts": False,
              "vars": dict(GATEWAY, ipmasq_backend=backend), "tasks": tasks}]
    proc, report = run_plays(lab.gw, tmp_path, plays,
                             path_prefix=systemctl_stand_in(tmp_path / "shims"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return [result for name, result in task_results(report) if name == APPLY]


@pytest.fixture(name="servers")
def fixture_servers(lab):
    """Echo servers on the gateway itself, answering as "gw"."""
    lab.start_servers()
    lab.start_echo(lab.gw, "gw", tcp=[LISTED, UNLISTED, OTHER_SOURCE], udp=[LISTED, UNLISTED])
    lab.start_echo(lab.gw, "gw6", tcp=[LISTED6, UNLISTED6], script=ECHO6)
    lab._wait_listening(lab.gw, [LISTED, UNLISTED, OTHER_SOURCE, LISTED6, UNLISTED6],
                        [LISTED, UNLISTED])
    return lab


def answers(lab, ns, proto, address, port):
    reply = lab.probe(ns, proto, address, port, timeout=1)
    return reply.ok and reply.server in ("gw", "gw6")


def test_only_the_listed_traffic_reaches_the_gateway_from_the_wan(servers, tmp_path, backend):
    lab = servers
    # Control: without the list, every port answers from the WAN, and so does ping.
    for proto, port in (("tcp", UNLISTED), ("udp", UNLISTED), ("tcp", OTHER_SOURCE)):
        assert answers(lab, lab.wan, proto, GW_WAN, port), (proto, port)
    assert answers(lab, lab.wan, "tcp", GW_WAN6, UNLISTED6)
    assert lab.ping(lab.wan, GW_WAN)

    first, again = converge(lab, tmp_path, backend, {"ipmasq_wan_input": WAN_INPUT},
                            {"ipmasq_wan_input": WAN_INPUT})
    assert first["changed"] and not again["changed"], again

    # From the WAN: the listed ports, from their source, and nothing else.
    reply = lab.probe(lab.wan, "tcp", GW_WAN, LISTED)
    assert reply.ok and (reply.server, reply.peer_ip) == ("gw", WAN_HOST), reply
    assert answers(lab, lab.wan, "udp", GW_WAN, LISTED)
    assert answers(lab, lab.wan, "tcp", GW_WAN6, LISTED6)  # ICMPv6 (neighbours) passes too
    for proto, address, port in (("tcp", GW_WAN, UNLISTED), ("udp", GW_WAN, UNLISTED),
                                 ("tcp", GW_WAN, OTHER_SOURCE), ("tcp", GW_WAN6, UNLISTED6)):
        assert not answers(lab, lab.wan, proto, address, port), (proto, address, port)
    assert not lab.ping(lab.wan, GW_WAN), "ping is not listed, yet it passed"

    # The LAN is not filtered: every port, at the LAN address and at the WAN address.
    for address in (GW_LAN, GW_WAN):
        reply = lab.probe(lab.lan, "tcp", address, UNLISTED)
        assert reply.ok and (reply.server, reply.peer_ip) == ("gw", LAN_CLIENT), reply
        assert answers(lab, lab.lan, "udp", address, UNLISTED)
    assert lab.ping(lab.lan, GW_LAN)

    # The gateway's own connections out of the WAN get their replies (established).
    for proto in ("tcp", "udp"):
        reply = lab.probe(lab.gw, proto, WAN_HOST, WAN_PORT)
        assert reply.ok and (reply.server, reply.peer_ip) == ("wan", GW_WAN), reply
    assert lab.probe(lab.gw, "tcp", WAN_HOST6, WAN_PORT6).ok
    # Forwarded traffic is not the input filter's business: the LAN still goes out.
    reply = lab.probe(lab.lan, "tcp", WAN_HOST, WAN_PORT)
    assert reply.ok and reply.peer_ip == GW_WAN, reply
    foreign.assert_intact(lab)


def test_changing_and_emptying_the_list(servers, tmp_path, backend):
    lab = servers
    ping_only = [{"protocol": "icmp"}]
    results = converge(lab, tmp_path, backend, {"ipmasq_wan_input": WAN_INPUT},
                       {"ipmasq_wan_input": ping_only})
    assert all(r["changed"] for r in results), results
    assert lab.ping(lab.wan, GW_WAN)
    assert not answers(lab, lab.wan, "tcp", GW_WAN, LISTED), "a port no longer listed answers"

    [empty] = converge(lab, tmp_path, backend, {"ipmasq_wan_input": []})
    assert empty["changed"] and empty["summary"]["input"] == {
        "added": 0, "removed": 1, "unchanged": 0}, empty["summary"]
    for proto, port in (("tcp", UNLISTED), ("udp", UNLISTED), ("tcp", LISTED)):
        assert answers(lab, lab.wan, proto, GW_WAN, port), (proto, port)
    # Nothing of the input filter is left: no chain, no jump.
    if backend == "nftables":
        assert "chain input" not in lab.gw.out("nft", "list", "table", "inet", "ipmasq")
    else:
        for tool in ("iptables-save", "ip6tables-save"):
            assert "IPMASQ-INPUT" not in lab.gw.out(tool), tool
    foreign.assert_intact(lab)
