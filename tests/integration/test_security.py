"""Hostile input and awkward hosts: the module refuses, or tells the truth, and touches
nothing it does not own. One test (or a few) per finding of the security review."""
import os
import stat
import time

import foreign
import pytest
import scenarios
from foreign import Snapshot
from playbook import NatRules, brief, ok, path_with
from netlab import GW_WAN, LAN_SERVER, WAN_HOST

INJECTION = "2001:db8::%1\n-F\n#/64"

# Every field that takes an address or a network, in every kind, carrying a zone id.
ZONE_IDS = [
    ({"masquerade": [{"source": INJECTION, "out_interface": "wan0"}]}, "masquerade[0].source"),
    ({"snat": [{"source": "fd00:77::/64", "out_interface": "wan0",
                "to_address": "2001:db8:100::1%wan0"}]}, "snat[0].to_address"),
    ({"snat": [{"source": "fd00:77::/64", "out_interface": "wan0",
                "to_address": "2001:db8:100::1-2001:db8:100::9%x"}]}, "snat[0].to_address"),
    ({"port_forwards": [{"in_interface": "wan0", "port": 8080, "to_address": "fd00:77::20%lan0"}]},
     "port_forwards[0].to_address"),
    ({"port_forwards": [{"in_interface": "wan0", "port": 8080, "to_address": "fd00:77::20",
                         "source": "2001:db8::%1\nflush ruleset\n#/64"}]}, "port_forwards[0].source"),
    ({"forward": [{"source": "fd00:77::%1/64", "action": "accept"}]}, "forward[0].source"),
    ({"forward": [{"destination": "fd00:77::%1;/64", "action": "drop"}]}, "forward[0].destination"),
]


def _persisted(nat):
    folder = nat.etc / "ipmasq"
    return dict((p.name, p.read_text()) for p in folder.iterdir()
                if p.is_file()) if folder.is_dir() else {}


def test_zone_ids_are_refused_everywhere_and_change_nothing(lab, nat):
    """Finding 1: the text after '%' never reaches a rule, a file or the kernel."""
    tasks = [nat.task("merged", scenarios.full(), persist=True), nat.snapshot()]
    tasks += [nat.task("merged", config, persist=True) for config, _field in ZONE_IDS]
    tasks += [nat.task("rendered", config) for config, _field in ZONE_IDS]
    run = nat.play(*(tasks + [nat.snapshot()]))
    files = _persisted(nat)
    assert files, "the good run persisted nothing"
    results = run.results[2:-1]
    for (config, field), result in zip(ZONE_IDS * 2, results):
        assert result.get("failed") is True, "accepted %r: %s" % (config, brief(result))
        assert result["msg"].startswith("invalid config: %s: must not carry a zone id" % field), \
            brief(result)
        assert "rendered" not in result
    before, after = (foreign.whole(Snapshot.parse(ok(run[i])["stdout"])) for i in (1, -1))
    assert not foreign.changes(before, after), foreign.changes(before, after)
    assert _persisted(nat) == files
    foreign.assert_intact(lab)


def test_an_error_echoes_at_most_a_slice_of_a_huge_value(nat):
    huge = "x" * (2 * 1024 * 1024)
    result = nat("merged", {"masquerade": [{"source": "192.168.77.0/24", "out_interface": "wan0",
                                            "comment": huge}]})
    assert result.get("failed") is True, brief(result)
    assert "masquerade[0].comment" in result["msg"]
    assert "(2097154 characters)" in result["msg"] and len(result["msg"]) < 400, result["msg"][:500]


@pytest.mark.parametrize("backend", ["nftables"])
def test_a_confirm_token_is_checked_before_it_names_a_path(nat):
    result = nat(confirm_token="../../../etc")
    assert result.get("failed") is True, brief(result)
    assert "not a token this module issued" in result["msg"], brief(result)


# -- finding 3: the rollback restores exactly what was there, or says it did not ------------

HAND_RULE = {
    "nftables": ["nft", "add", "rule", "inet", "ipmasq", "forward", "meta", "mark", "0x2a",
                 "limit", "rate", "5/second", "accept", "comment", "\"hand made\""],
    "iptables": ["iptables", "-w", "-A", "IPMASQ-FORWARD", "-m", "mark", "--mark", "0x2a",
                 "-m", "limit", "--limit", "5/sec", "-j", "ACCEPT"],
}


def _changed_config():
    config = scenarios.full()
    config["port_forwards"].append({"in_interface": "wan0", "protocol": "tcp", "port": 8091,
                                    "to_address": LAN_SERVER, "to_port": 80})
    return config


def _wait_for_outcome(nat, token, seconds):
    """Poll (bounded) the rollback's status until the timer acted; return the last answer."""
    end = time.monotonic() + seconds
    while True:
        status = ok(nat(confirm_token=token, confirm=False))["rollback_status"]
        if status != "pending" or time.monotonic() > end:
            return status
        time.sleep(0.5)


def test_rollback_restores_a_hand_added_rule_byte_for_byte(lab, nat, backend):
    ok(nat("merged", scenarios.full()))
    lab.gw.run(*HAND_RULE[backend])
    previous = foreign.owned(lab.gw)
    assert "0x0000002a" in previous["nft"] or "0x2a" in previous["iptables"], previous
    result = ok(nat("merged", _changed_config(), rollback_timeout=3, confirm=False))
    assert result["changed"] is True and result.get("rollback_token"), brief(result)
    assert foreign.owned(lab.gw) != previous
    assert _wait_for_outcome(nat, result["rollback_token"], 15) == "restored"
    assert foreign.owned(lab.gw) == previous, "the rollback lost or changed a rule"
    late = nat(confirm_token=result["rollback_token"])
    assert late.get("failed") is True and "already restored the previous rules" in late["msg"]
    assert late["rollback_status"] == "restored"
    foreign.assert_intact(lab, "by the rollback")


# A stand-in for the tool the rollback uses: it works until the test creates ``broken``.
BREAKABLE = """#!/bin/sh
[ -e '{broken}' ] && {{ echo 'Error: injected rollback failure' >&2; exit 1; }}
exec '{real}' "$@"
"""


def _breakable_tools(directory, backend):
    tools = ["nft"] if backend == "nftables" else ["iptables-restore", "ip6tables-restore"]
    for tool in tools:
        real = next(os.path.join(d, tool) for d in ("/usr/sbin", "/sbin", "/usr/bin")
                    if os.path.exists(os.path.join(d, tool)))
        path = directory / tool
        path.write_text(BREAKABLE.format(broken=directory / "broken", real=real))
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return directory / "broken"


def test_a_failed_rollback_says_so_everywhere(lab, nat, backend, tmp_path):
    shims = tmp_path / "shims"
    shims.mkdir()
    broken = _breakable_tools(shims, backend)
    ok(nat("merged", scenarios.full()))
    result = ok(nat("merged", _changed_config(), rollback_timeout=3, confirm=False,
                    env={"PATH": path_with(shims)}))
    changed = foreign.owned(lab.gw)
    broken.write_text("")  # the timer's restore now fails
    status = _wait_for_outcome(nat, result["rollback_token"], 15)
    assert status.startswith("failed: ") and "injected rollback failure" in status, status
    assert foreign.owned(lab.gw) == changed, "the failed rollback changed our rules anyway"
    late = nat(confirm_token=result["rollback_token"])
    assert late.get("failed") is True, brief(late)
    assert "FAILED" in late["msg"] and "still runs the unconfirmed change" in late["msg"], late["msg"]
    assert "restored the previous rules" not in late["msg"]
    # The next run warns about it, sets the rules, and then forgets the failed rollback.
    run = nat.play(nat.task("merged", scenarios.full()), nat.task("merged", scenarios.full()))
    first, second = ok(run[0]), ok(run[1])
    assert any("FAILED" in w for w in first.get("warnings", [])), brief(first)
    assert not second.get("warnings"), second.get("warnings")


# -- finding 4: one pending change at a time; the boot file holds confirmed rules only -----

def _boot_rules(nat):
    """The persisted files, read back by the module's own parser."""
    files = _persisted(nat)
    text = files.get("ipmasq.nft") or files.get("ipmasq.v4", "") + files.get("ipmasq.v6", "")
    return scenarios.normalise(ok(nat("parsed", running_config=text))["parsed"])


def test_a_run_while_a_rollback_is_pending_is_refused(lab, nat, backend):
    ok(nat("merged", scenarios.full(), persist=True))
    confirmed = foreign.owned(lab.gw)
    boot = _boot_rules(nat)
    assert boot == scenarios.normalise(nat.gathered())
    # Long enough for the runs below on a loaded machine, which all happen before it fires.
    pending = ok(nat("merged", _changed_config(), persist=True, rollback_timeout=20,
                     confirm=False))
    token = pending["rollback_token"]
    other = {"masquerade": [{"source": "192.168.88.0/24", "out_interface": "wan0"}]}
    refused = nat("merged", other, persist=True)
    assert refused.get("failed") is True, brief(refused)
    assert token in refused["msg"] and "waiting for confirmation" in refused["msg"], refused["msg"]
    planned = ok(nat("merged", other, persist=True, check=True))
    assert any(token in w for w in planned.get("warnings", [])), brief(planned)
    assert _boot_rules(nat) == boot, "the boot file took rules nobody confirmed"
    assert _wait_for_outcome(nat, token, 35) == "restored"
    assert foreign.owned(lab.gw) == confirmed
    # Now the other change goes through, and the boot file follows the kernel.
    ok(nat("merged", other, persist=True))
    assert _boot_rules(nat) == scenarios.normalise(nat.gathered()) != boot


def test_a_confirmed_change_whose_boot_file_cannot_be_written_says_so(lab, nat):
    ok(nat("merged", scenarios.full(), persist=True))
    files = _persisted(nat)
    result = ok(nat("merged", _changed_config(), persist=True, rollback_timeout=8, confirm=False))
    armed = time.monotonic()
    for name in files:  # a directory where the new file must go: the write fails
        (nat.etc / "ipmasq" / (name + ".tmp")).mkdir()
    answer = nat(confirm_token=result["rollback_token"])
    assert answer.get("failed") is True and answer.get("confirmed"), brief(answer)
    assert "confirmed and stays" in answer["msg"] and "writing" in answer["msg"], answer["msg"]
    changed = foreign.owned(lab.gw)
    time.sleep(max(0, armed + 9 - time.monotonic()))  # past the moment the timer was due
    assert foreign.owned(lab.gw) == changed, "a confirmed change was rolled back"
    assert _persisted(nat) == files


# -- finding 5: a DROP in DOCKER-USER applies to forwarded traffic -------------------------

def test_a_drop_in_docker_user_blocks_port_forwarded_traffic(lab, nat, backend):
    ok(nat("merged", scenarios.full()))
    reply = lab.probe(lab.wan, "tcp", GW_WAN, 8080)
    assert reply.server == "lansrv", reply  # control: the forward works
    lab.gw.run("iptables", "-w", "-I", "DOCKER-USER", "1", "-s", WAN_HOST, "-j", "DROP")
    assert not lab.probe(lab.wan, "tcp", GW_WAN, 8080, timeout=1).ok
    if backend == "iptables":
        forward = [line for line in lab.gw.out("iptables-save", "-t", "filter").splitlines()
                   if line.startswith("-A FORWARD ")]
        assert forward.index("-A FORWARD -j DOCKER-USER") < forward.index(
            "-A FORWARD -j IPMASQ-FORWARD"), forward


@pytest.mark.parametrize("backend", ["iptables"])
def test_our_jump_is_moved_behind_docker_user(lab, nat):
    """A jump an older version put first in FORWARD is moved after DOCKER-USER."""
    ok(nat("merged", scenarios.full()))
    lab.gw.run("iptables", "-w", "-D", "FORWARD", "-j", "IPMASQ-FORWARD")
    lab.gw.run("iptables", "-w", "-I", "FORWARD", "1", "-j", "IPMASQ-FORWARD")
    result = ok(nat("merged", scenarios.full()))
    assert result["changed"] is True, brief(result)
    assert "-I FORWARD 2 -j IPMASQ-FORWARD" in result["commands"], result["commands"]
    assert ok(nat("merged", scenarios.full()))["changed"] is False


# -- finding 7: robustness ----------------------------------------------------------------

@pytest.mark.parametrize("backend", ["iptables"])
def test_foreign_comments_with_odd_characters_do_not_stop_a_run(lab, nat):
    for text in ("line\u2028separator", "form\x0cfeed", "unclosed \"quote"):
        lab.gw.run("iptables", "-w", "-A", "INPUT", "-p", "tcp", "--dport", "2223",
                   "-m", "comment", "--comment", text, "-j", "ACCEPT")
    lab.foreign_before = foreign.capture_not_ours(lab.gw)
    for state in ("merged", "replaced", "overridden", "gathered", "deleted"):
        config = scenarios.full() if state != "gathered" else None
        result = nat(state, config)
        assert not result.get("failed"), "%s: %s" % (state, brief(result))
    foreign.assert_intact(lab)


@pytest.mark.parametrize("backend", ["nftables"])
def test_the_lock_file_is_private(nat):
    ok(nat("gathered"))
    mode = stat.S_IMODE(os.stat("/run/ipmasq.lock").st_mode)
    assert mode == 0o600, oct(mode)


# -- finding 8: an IPv4-only ruleset leaves ip6tables alone --------------------------------

def test_an_ipv4_only_run_creates_no_ip6_table(empty_ns, tmp_path):
    empty_ns.run("ip", "link", "add", "wan0", "type", "veth", "peer", "name", "lan0")
    nat = NatRules(empty_ns, tmp_path, "iptables")
    assert "ip6" not in empty_ns.out("nft", "list", "tables")
    ok(nat("merged", scenarios.full()))
    assert "IPMASQ-FORWARD" in empty_ns.out("iptables-save")  # control: the run did apply
    assert "ip6" not in empty_ns.out("nft", "list", "tables")
    ok(nat("deleted"))
    assert "ip6" not in empty_ns.out("nft", "list", "tables")
