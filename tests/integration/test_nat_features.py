"""1:1 NAT, NPTv6, interface patterns (ppp+), connection limits (MAXCON), per-rule timeouts
and the NAT options (ports, random_fully, persistent) with real traffic, both backends.

Each test builds one lab and runs everything it shows in it. The external addresses of
static NAT and NPT (203.0.113.0/24, 2001:db8:77::/64) are not on the WAN link: the WAN host
routes them to the gateway, as a provider routes a customer's block to its router.
"""
import ipaddress
import subprocess
import sys
from pathlib import Path

import foreign
from netlab import (ECHO6, GW_WAN, GW_WAN6, LAN_CLIENT, LAN_NET, LAN_NET6, LAN_SERVER, WAN_HOST,
                    WAN_HOST6, WAN_PORT, WAN_PORT6)
from playbook import ok

HOLD = Path(__file__).resolve().parent / "hold.py"
WAN = "wan0"
MASQUERADE = {"source": LAN_NET, "out_interface": WAN}


def _apply(nat, config, state="merged"):
    """Apply, then prove the second run changes nothing and check mode predicted the run."""
    checked = ok(nat(state, config, check=True))
    result = ok(nat(state, config))
    assert result["changed"] is True
    assert checked["commands"] == result["commands"]
    assert ok(nat(state, config))["commands"] == []
    return result


def _reply(lab, ns, proto, host, port):
    reply = lab.probe(ns, proto, host, port)
    assert reply.ok, reply
    return reply


def _conntrack(ns, *args):
    """``conntrack -L`` lines in namespace ``ns``, each as (protocol, timeout, {field: [values
    in the order printed]}): the original tuple's src/dst/sport/dport come first."""
    out = ns.run("conntrack", "-L", *args, check=False).stdout
    entries = []
    for line in out.splitlines():
        words = line.split()
        fields = {}
        for word in words:
            if "=" in word:
                key, value = word.split("=", 1)
                fields.setdefault(key, []).append(value)
        entries.append((words[0], int(words[2]) if words[2].isdigit() else None, fields))
    return entries


# ---------------------------------------------------------------- 1:1 NAT

def test_static_nat_one_to_one_and_netmap(lab, nat):
    lab.wan.ip("route", "add", "203.0.113.0/24", "via", GW_WAN)
    lab.srv.ip("addr", "add", "192.168.77.21/24", "dev", "eth0")
    lab.start_servers()
    config = {"masquerade": [MASQUERADE], "static_nat": [
        {"interface": WAN, "external": "203.0.113.10", "internal": LAN_SERVER,
         "comment": "srv"}]}
    _apply(nat, config)
    # the WAN client reaches the inside host on unrelated ports, TCP and UDP, unmasqueraded
    for proto, port in (("tcp", 80), ("tcp", 9001), ("udp", 53)):
        reply = _reply(lab, lab.wan, proto, "203.0.113.10", port)
        assert (reply.server, reply.peer_ip) == ("lansrv", WAN_HOST), reply
    # the inside host leaves as its external address; another LAN host is still masqueraded
    for proto in ("tcp", "udp"):
        reply = _reply(lab, lab.srv, proto, WAN_HOST, WAN_PORT)
        assert (reply.server, reply.peer_ip) == ("wan", "203.0.113.10"), reply
        reply = _reply(lab, lab.lan, proto, WAN_HOST, WAN_PORT)
        assert (reply.server, reply.peer_ip) == ("wan", GW_WAN), reply
    gathered = nat.gathered()["static_nat"]
    assert gathered == [{"interface": WAN, "external": "203.0.113.10",
                         "internal": LAN_SERVER, "comment": "srv"}]

    # a /29 mapped address for address: .20 and .21 (both the server's) answer as
    # themselves, .18 (nobody inside) does not answer
    netmap = {"static_nat": [{"interface": WAN, "external": "203.0.113.16/29",
                              "internal": "192.168.77.16/29"}]}
    _apply(nat, netmap, state="replaced")
    for last in (20, 21):
        reply = _reply(lab, lab.wan, "tcp", "203.0.113.%d" % last, 80)
        assert (reply.server, reply.peer_ip) == ("lansrv", WAN_HOST), reply
        mapped = [fields for _p, _t, fields in _conntrack(
            lab.gw, "-p", "tcp", "--orig-dst", "203.0.113.%d" % last)]
        assert mapped and all(f["src"][1] == "192.168.77.%d" % last for f in mapped), mapped
    assert not lab.probe(lab.wan, "tcp", "203.0.113.18", 80, timeout=1).ok
    reply = _reply(lab, lab.srv, "udp", WAN_HOST, WAN_PORT)
    assert reply.peer_ip == "203.0.113.20", reply
    foreign.assert_intact(lab)


# ---------------------------------------------------------------- NPTv6

def test_npt_translates_the_prefix_both_ways(lab, nat, backend):
    lab.wan.ip("-6", "route", "add", "2001:db8:77::/64", "via", GW_WAN6)
    lab.start_servers()
    lab.start_echo(lab.srv, "lansrv6", tcp=[8600], udp=[8600], script=ECHO6)
    lab._wait_listening(lab.srv, [8600], [8600])  # pylint: disable=protected-access
    _apply(nat, {"npt": [{"interface": WAN, "internal": LAN_NET6,
                          "external": "2001:db8:77::/64"}]})
    seen = _reply(lab, lab.srv, "tcp", WAN_HOST6, WAN_PORT6).peer_ip
    assert ipaddress.ip_address(seen) in ipaddress.ip_network("2001:db8:77::/64"), seen
    if backend == "nftables":
        # prefix NAT keeps the interface identifier (the module docs say so)
        assert seen == "2001:db8:77::20", seen
    # the same address every time, for UDP too (a stateless mapping of the address)
    assert _reply(lab, lab.srv, "udp", WAN_HOST6, WAN_PORT6).peer_ip == seen
    # the WAN client reaches the LAN host through that address, unmasqueraded
    for proto in ("tcp", "udp"):
        reply = _reply(lab, lab.wan, proto, seen, 8600)
        assert (reply.server, reply.peer_ip) == ("lansrv6", WAN_HOST6), reply
    foreign.assert_intact(lab)


# ---------------------------------------------------------------- ppp+

def test_masquerade_on_a_pattern_follows_a_link_that_comes_later(lab, nat):
    lab.start_servers()
    result = _apply(nat, {"masquerade": [{"source": LAN_NET, "out_interface": "ppp+"}]})
    assert not [w for w in result.get("warnings", []) if "ppp" in w], result.get("warnings")
    # the dial-up link comes up after the rules: an interface ppp0 towards the WAN host
    subprocess.run(["ip", "link", "add", "ppp0", "netns", str(lab.gw), "type", "veth",
                    "peer", "name", "eth1", "netns", str(lab.wan)], check=True)
    lab.gw.ip("addr", "add", "100.64.1.1/24", "dev", "ppp0")
    lab.wan.ip("addr", "add", "100.64.1.2/24", "dev", "eth1")
    lab.gw.ip("link", "set", "ppp0", "up")
    lab.wan.ip("link", "set", "eth1", "up")
    for proto in ("tcp", "udp"):
        reply = _reply(lab, lab.lan, proto, "100.64.1.2", WAN_PORT)
        assert (reply.server, reply.peer_ip) == ("wan", "100.64.1.1"), reply
    # the link gets another address: the WAN server sees the new one
    lab.gw.ip("addr", "del", "100.64.1.1/24", "dev", "ppp0")
    lab.gw.ip("addr", "add", "100.64.1.3/24", "dev", "ppp0")
    for proto in ("tcp", "udp"):
        reply = _reply(lab, lab.lan, proto, "100.64.1.2", WAN_PORT)
        assert (reply.server, reply.peer_ip) == ("wan", "100.64.1.3"), reply
    assert ok(nat("merged", {"masquerade": [{"source": LAN_NET, "out_interface": "ppp+"}]}))[
        "commands"] == []


# ---------------------------------------------------------------- MAXCON

def _hold(ns, host, port, count):
    """A client in ``ns`` holding ``count`` connections; returns (process, outcomes)."""
    proc = subprocess.Popen(ns.argv(sys.executable, HOLD, "client", host, port, count),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    outcomes = []
    while True:
        line = proc.stdout.readline().strip()
        if line in ("held", ""):
            return proc, outcomes
        outcomes.append(line)


def test_connection_limit_refuses_the_next_connection_of_one_host_only(lab, nat):
    server = subprocess.Popen(lab.wan.argv("timeout", 60, sys.executable, HOLD, "server", 7300,
                                           45), stdout=subprocess.DEVNULL)
    lab.servers.append(server)
    lab._wait_listening(lab.wan, [7300], [])  # pylint: disable=protected-access
    _apply(nat, {"masquerade": [MASQUERADE], "connection_limits": [
        {"source": LAN_NET, "per_address": 3, "protocol": "tcp"}]})
    holder, outcomes = _hold(lab.lan, WAN_HOST, 7300, 4)
    try:
        assert outcomes == ["ok", "ok", "ok", "refused"], outcomes
        other, others = _hold(lab.srv, WAN_HOST, 7300, 1)
        other.communicate(timeout=10)
        assert others == ["ok"], others
    finally:
        holder.communicate(timeout=10)
    # UDP is not limited by a tcp limit
    assert _reply(lab, lab.lan, "udp", WAN_HOST, WAN_PORT).server == "wan"


# ---------------------------------------------------------------- per-rule timeouts

def _timeout_objects(lab, backend):
    """The names of the conntrack timeout objects in the gateway: nft's ``ct timeout``
    objects of our table, or the ones ``nfct list timeout`` lists (iptables)."""
    if backend == "nftables":
        out = lab.gw.run("nft", "list", "table", "inet", "ipmasq", check=False).stdout
        return sorted(line.split()[2] for line in out.splitlines()
                      if line.strip().startswith("ct timeout "))
    out = lab.gw.run("nfct", "list", "timeout").stdout
    return sorted(line[1:].split()[0] for line in out.splitlines() if line.startswith("."))


def test_per_rule_timeouts_apply_to_their_source_only(lab, nat, backend):
    lab.start_servers()
    config = {"masquerade": [
        {"source": LAN_CLIENT + "/32", "out_interface": WAN, "timeouts": {"udp": 77}},
        MASQUERADE]}
    _apply(nat, config)  # a second run changes nothing
    objects = _timeout_objects(lab, backend)
    assert len(objects) == 1, objects
    if backend == "iptables":  # a 4-character object name, which iptables-save lists whole
        assert len(objects[0]) == 4
        assert "-j CT --timeout %s" % objects[0] in lab.gw.run("iptables-save", "-t", "raw").stdout
    global_udp = int(lab.gw.out("sysctl", "-n", "net.netfilter.nf_conntrack_udp_timeout"))
    assert global_udp < 70, global_udp
    for client in (lab.lan, lab.srv):
        assert _reply(lab, client, "udp", WAN_HOST, WAN_PORT).server == "wan"
    timeouts = dict((fields["src"][0], seconds) for _p, seconds, fields in _conntrack(
        lab.gw, "-p", "udp", "--orig-port-dst", WAN_PORT))
    assert 70 < timeouts[LAN_CLIENT] <= 77, timeouts
    assert timeouts[LAN_SERVER] <= global_udp, timeouts
    assert nat.gathered()["masquerade"][0]["timeouts"] == {"udp": 77}

    # without the timeouts, the rule and then its object go
    _apply(nat, {"masquerade": [dict(config["masquerade"][0], timeouts={}), MASQUERADE]},
           state="replaced")
    assert _timeout_objects(lab, backend) == []
    assert "timeouts" not in nat.gathered()["masquerade"][0]


# ---------------------------------------------------------------- ports, random_fully, persistent

def test_nat_ports_random_fully_and_a_persistent_pool(lab, nat):
    lab.start_servers()
    lab.wan.ip("addr", "add", "198.51.100.21/24", "dev", "eth0")
    _apply(nat, {"masquerade": [{"source": LAN_CLIENT + "/32", "out_interface": WAN,
                                 "ports": "20000-20099", "random_fully": True}]})
    for proto in ("tcp", "udp"):
        reply = _reply(lab, lab.lan, proto, WAN_HOST, WAN_PORT)
        assert reply.peer_ip == GW_WAN and 20000 <= int(reply.peer_port) <= 20099, reply
    replies = [fields for _p, _t, fields in _conntrack(lab.gw, "--orig-src", LAN_CLIENT)]
    assert replies and all(20000 <= int(f["dport"][1]) <= 20099 for f in replies), replies

    # a pool of three addresses; the client keeps one for every server it talks to
    for last in (2, 3, 4):
        lab.gw.ip("addr", "add", "198.51.100.%d/24" % last, "dev", WAN)
    pool = {"snat": [{"source": LAN_NET, "out_interface": WAN,
                      "to_address": "198.51.100.2-198.51.100.4", "persistent": True}]}
    _apply(nat, pool, state="overridden")
    lab.gw.run("conntrack", "-F", check=False)
    seen = set()
    for server in (WAN_HOST, "198.51.100.21"):
        for port in range(40000, 40004):
            reply = lab.probe(lab.lan, "udp", server, WAN_PORT, source_port=port)
            assert reply.ok, reply
            seen.add(reply.peer_ip)
    assert len(seen) == 1 and seen <= {"198.51.100.2", "198.51.100.3", "198.51.100.4"}, seen
    replies = [fields for _p, _t, fields in _conntrack(lab.gw, "--orig-src", LAN_CLIENT)]
    assert {f["dst"][1] for f in replies} == seen, replies
    assert nat.gathered()["snat"][0]["persistent"] is True
