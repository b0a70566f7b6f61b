"""Persistence, with /etc overlaid per test (see playbook.py): nothing reaches the real /etc."""
import shlex

import foreign
import pytest
import scenarios
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import kernel
from playbook import brief, ok


def _config():
    config = scenarios.full()
    config["masquerade"] = config["masquerade"] + [
        dict(entry, timeouts={"udp": 45, "tcp_established": 900})
        for entry in scenarios.MASQUERADE6]
    return config


def _nfct_boot_command(path):
    """The command ipmasq.service runs to make the timeout objects of ``path``."""
    files = {"ipv4": "/x.v4", "ipv6": "/x.v6", "nfct": str(path)}
    bins = dict((name, name) for name in kernel.unit_tools("iptables", files))
    [line] = [line for line in kernel.unit_text("iptables", files, bins, False, "/s").splitlines()
              if str(path) in line and line.startswith("ExecStart=")]
    return shlex.split(line[len("ExecStart=-"):])


def _written(nat):
    root = nat.etc / "ipmasq"  # a whiteout (not a directory) when the module wrote nothing
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else None


@pytest.mark.parametrize("backend", ["nftables"])  # the file handling is shared by both
def test_persist_false_writes_nothing(nat):
    result = ok(nat("merged", _config(), persist=False))
    assert result["changed"] is True and result["persisted"] == []
    assert _written(nat) is None, "persist: false still created /etc/ipmasq: %s" % _written(nat)


def test_persisted_files_restore_exactly_our_rules(lab, nat, backend, empty_ns):
    run = nat.play(nat.task("merged", _config(), persist=True),
                   nat.task("merged", _config(), persist=True))
    first, again = ok(run[0]), ok(run[1])
    assert first["persisted"], brief(first)
    assert again["changed"] is False and again["persisted"] == [], brief(again)
    names = [p.rsplit("/", 1)[-1] for p in first["persisted"]]
    assert _written(nat) == sorted(names)

    # Boot, simulated: load the files into a namespace that has no rules at all, in the
    # order of ipmasq.service (the timeout objects before the rules that use them).
    for name in sorted(names, key=lambda name: not name.endswith(".nfct")):
        text = (nat.etc / "ipmasq" / name).read_text()
        if name.endswith(".nft"):
            empty_ns.run("nft", "-f", "-", input_text=text)
        elif name.endswith(".nfct"):
            assert text.startswith("add timeout "), text
            empty_ns.run(*_nfct_boot_command(nat.etc / "ipmasq" / name))
        elif text.strip():
            tool = "ip6tables-restore" if name.endswith(".v6") else "iptables-restore"
            empty_ns.run(tool, "--noflush", input_text=text)
    if backend == "nftables":
        assert foreign.nft_blocks(foreign.owned_nft(empty_ns)) == foreign.nft_blocks(foreign.owned_nft(lab.gw))
    else:
        assert "ipmasq.nfct" in names
        assert foreign.owned_iptables(empty_ns) == foreign.owned_iptables(lab.gw)
        assert empty_ns.run("nfct", "list", "timeout").stdout == \
            lab.gw.run("nfct", "list", "timeout").stdout
