"""Hairpin reaches the inside host only through the forward's own interface address.

The gateway gets a third interface (``dmz0``, a DMZ or a VPN) and an echo server of its own
on the forwarded port, answering as ``gw``: a probe that is not translated reaches that
server, so every check tells "reached the gateway" from "reached the inside host".
"""
import time

import pytest

import foreign
import scenarios
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import refresh
from netlab import (DMZ_HOST, DMZ_NET, GW_DMZ, GW_LAN, GW_WAN, LAN_CLIENT, LAN_SERVER,
                    WAN_HOST)
from playbook import ok

PORT = 8080  # forwarded to the LAN server's port 80
WAN_NET = "198.51.100.0/24"


def _forward(**fields):
    entry = {"in_interface": scenarios.WAN_IF, "protocol": "tcp", "port": PORT,
             "to_address": LAN_SERVER, "to_port": 80, "hairpin": True, "comment": "web"}
    entry.update(fields)
    return entry


@pytest.fixture(name="refresh_script")
def fixture_refresh_script(tmp_path):
    """The refresh script exactly as nat_kernel installs it."""
    path = tmp_path / "ipmasq-refresh"
    path.write_text(refresh.SCRIPT)
    return path


@pytest.fixture
def gateway(lab):
    """The lab with a DMZ client, and a server on the gateway itself on the forwarded port."""
    lab.add_dmz()
    lab.start_servers()
    lab.start_echo(lab.gw, "gw", tcp=[PORT])
    lab._wait_listening(lab.gw, [PORT], [])
    return lab


def _reached(lab, client, address, port=PORT):
    """(server that answered, source address it saw), or None when nothing answered."""
    reply = lab.probe(client, "tcp", address, port)
    return (reply.server, reply.peer_ip) if reply.ok else None


def _apply(nat, config):
    result = ok(nat("merged", config))
    assert result["changed"] is True
    assert ok(nat("merged", config))["changed"] is False
    return result


def test_hairpin_of_a_forward_limited_to_a_source_keeps_the_limit(gateway, nat):
    lab = gateway
    _apply(nat, {"masquerade": scenarios.MASQUERADE, "port_forwards": [
        _forward(source=WAN_NET),
        # control: the same path from the DMZ works when the source allows it
        _forward(port=PORT + 1, to_port=9000, source=DMZ_NET, comment="dmz")]})
    # the allowed WAN client reaches the inside host, with its own address
    assert _reached(lab, lab.wan, GW_WAN) == ("lansrv", WAN_HOST)
    # a client behind another interface, outside the source, gets the gateway's own server
    assert _reached(lab, lab.dmz, GW_WAN) == ("gw", DMZ_HOST)
    assert _reached(lab, lab.lan, GW_WAN) == ("gw", LAN_CLIENT)
    assert _reached(lab, lab.dmz, GW_WAN, PORT + 1) == ("lansrv", GW_LAN)
    foreign.assert_intact(lab)


def test_hairpin_reaches_the_inside_host_only_through_the_wan_address(gateway, nat):
    lab = gateway
    _apply(nat, {"masquerade": scenarios.MASQUERADE, "port_forwards": [_forward()]})
    # from the LAN to the WAN address: the inside host, which sees the gateway (the way back
    # goes through the gateway)
    assert _reached(lab, lab.lan, GW_WAN) == ("lansrv", GW_LAN)
    # the gateway's other addresses on that port stay the gateway's own
    assert _reached(lab, lab.lan, GW_LAN) == ("gw", LAN_CLIENT)
    assert _reached(lab, lab.lan, GW_DMZ) == ("gw", LAN_CLIENT)
    assert _reached(lab, lab.dmz, GW_DMZ) == ("gw", DMZ_HOST)
    # the forward itself
    assert _reached(lab, lab.wan, GW_WAN) == ("lansrv", WAN_HOST)
    foreign.assert_intact(lab)


def _set_commands(backend, old, new):
    """The commands a run makes when wan0's address moved from ``old`` to ``new``."""
    if backend == "nftables":
        return ["delete element inet ipmasq hp4_wan0 { %s }" % old,
                "add element inet ipmasq hp4_wan0 { %s }" % new]
    return ["# ipset restore", "del ipmasq-hp4-wan0 %s" % old, "add ipmasq-hp4-wan0 %s" % new]


def _move_wan_address(lab, old, new):
    lab.gw.ip("addr", "del", old + "/24", "dev", "wan0")
    lab.gw.ip("addr", "add", new + "/24", "dev", "wan0")


def test_a_changed_wan_address_is_refilled_by_the_script_and_by_the_module(
        gateway, nat, backend, refresh_script):
    lab = gateway
    config = {"masquerade": scenarios.MASQUERADE, "port_forwards": [_forward()]}
    _apply(nat, config)
    assert _reached(lab, lab.lan, GW_WAN) == ("lansrv", GW_LAN)

    # The address changes, as a PPP or DHCP link's does. Until the sets are refilled, the
    # new address is the gateway's own.
    _move_wan_address(lab, GW_WAN, "198.51.100.5")
    assert _reached(lab, lab.lan, "198.51.100.5") == ("gw", LAN_CLIENT)
    lab.gw.run("sh", refresh_script)
    assert _reached(lab, lab.lan, "198.51.100.5") == ("lansrv", GW_LAN)
    # the old address is no longer the gateway's, and no longer hairpins
    assert _reached(lab, lab.lan, GW_WAN) is None
    # the script left the sets as the module would: a run changes nothing
    assert ok(nat("merged", config))["changed"] is False

    # Without the script, the next module run refills them: check mode shows the element
    # change, the run makes it, and a second run has nothing left to do.
    _move_wan_address(lab, "198.51.100.5", "198.51.100.6")
    checked = ok(nat("merged", config, check=True))
    assert checked["changed"] is True
    assert checked["commands"] == _set_commands(backend, "198.51.100.5", "198.51.100.6")
    assert checked["summary"]["port_forwards"] == {"added": 0, "removed": 0, "unchanged": 1}
    real = ok(nat("merged", config))
    assert real["changed"] is True and real["commands"] == checked["commands"]
    assert ok(nat("merged", config))["commands"] == []
    assert _reached(lab, lab.lan, "198.51.100.6") == ("lansrv", GW_LAN)
    assert _reached(lab, lab.lan, "198.51.100.5") is None
    foreign.assert_intact(lab)


def test_refresh_empties_the_sets_of_an_interface_that_is_gone(gateway, nat, backend, refresh_script):
    """A PPP link that went down: its sets match nothing until it is back."""
    lab = gateway
    config = {"masquerade": scenarios.MASQUERADE, "port_forwards": [_forward()]}
    _apply(nat, config)
    lab.gw.ip("addr", "flush", "dev", "wan0")
    lab.gw.run("sh", refresh_script)
    assert ok(nat("merged", config))["changed"] is False
    gathered = nat.gathered()
    assert gathered["port_forwards"][0]["hairpin"] is True
    if backend == "nftables":
        listing = lab.gw.out("nft", "list", "set", "inet", "ipmasq", "hp4_wan0")
        assert "elements" not in listing, listing
    else:
        assert "add " not in lab.gw.out("ipset", "save", "ipmasq-hp4-wan0")


def _ipsets(ns):
    """Our ipsets as comparable text (``ipset save`` without its random initval)."""
    names = [n for n in ns.out("ipset", "list", "-n").split() if n.startswith("ipmasq-hp")]
    out = []
    for name in sorted(names):
        lines = ns.out("ipset", "save", name).splitlines()
        out.append(" ".join(lines[0].split()[:5]))
        out.extend(sorted(lines[1:]))
    return out


def _ours(ns):
    """Our table's blocks (in any order: nft lists them in creation order), our iptables
    chains and our ipsets."""
    return {"nft": "\n".join(foreign.nft_blocks(foreign.owned_nft(ns))),
            "iptables": foreign.owned_iptables(ns), "ipsets": _ipsets(ns)}


def test_persisted_files_restore_hairpin_at_boot(lab, nat, backend, empty_ns, refresh_script):
    config = {"masquerade": scenarios.MASQUERADE, "port_forwards": [_forward()]}
    result = ok(nat("merged", config, persist=True))
    names = sorted(p.rsplit("/", 1)[-1] for p in result["persisted"])
    files = dict((name, (nat.etc / "ipmasq" / name).read_text()) for name in names)
    # Boot, simulated, with the commands the boot unit runs, in this order.
    if backend == "nftables":
        assert names == ["ipmasq.nft"]
        assert "\tset hp4_wan0 {" in files["ipmasq.nft"]
        empty_ns.run("nft", "-f", "-", input_text=files["ipmasq.nft"])
    else:
        assert names == ["ipmasq.ipset", "ipmasq.v4", "ipmasq.v6"]
        assert "create ipmasq-hp4-wan0 hash:ip family inet" in files["ipmasq.ipset"]
        empty_ns.run("ipset", "-exist", "restore", input_text=files["ipmasq.ipset"])
        empty_ns.run("iptables-restore", "--noflush", input_text=files["ipmasq.v4"])
    booted = _ours(empty_ns)
    assert booted == _ours(lab.gw)
    assert GW_WAN in str(booted)  # with the address the module saw
    # At boot the interface may not be there yet (PPP): the refresh empties the sets and
    # leaves the rules; the refresh that PPP's ip-up runs fills them.
    empty_ns.run("sh", refresh_script)
    after = _ours(empty_ns)
    assert GW_WAN not in str(after)
    if backend == "nftables":
        assert 'iifname != "wan0" ip daddr @hp4_wan0 tcp dport 8080' in after["nft"]
    else:
        assert after["iptables"] == booted["iptables"]
        assert after["ipsets"] == ["create ipmasq-hp4-wan0 hash:ip family inet"]


def test_rollback_brings_the_sets_back(gateway, nat):
    lab = gateway
    config = {"masquerade": scenarios.MASQUERADE, "port_forwards": [_forward()]}
    ok(nat("merged", config))
    previous = _ours(lab.gw)
    without = {"port_forwards": [_forward(hairpin=False)]}
    result = ok(nat("replaced", without, rollback_timeout=4, confirm=False))
    assert result["changed"] is True and result.get("rollback_token")
    assert _ours(lab.gw) != previous and GW_WAN not in str(_ours(lab.gw))
    deadline = time.monotonic() + 8
    while _ours(lab.gw) != previous and time.monotonic() < deadline:
        time.sleep(0.25)
    assert _ours(lab.gw) == previous, "hairpin and its set not back in time"
    assert _reached(lab, lab.lan, GW_WAN) == ("lansrv", GW_LAN)
    assert _reached(lab, lab.lan, GW_LAN) == ("gw", LAN_CLIENT)
