"""gathered reads back what was applied; rendered and parsed never touch the host."""
import copy

import foreign
import scenarios
from playbook import NatRules
from scenarios import normalise


def _config():
    config = scenarios.full()
    config["masquerade"] = config["masquerade"] + scenarios.MASQUERADE6
    config["snat"] = [{"source": "192.168.78.0/24", "out_interface": "wan0",
                       "to_address": "198.51.100.5-198.51.100.6", "comment": "pool"}]
    config["port_forwards"] = config["port_forwards"] + [
        {"in_interface": "wan0", "protocol": "tcp_udp", "port": 6000, "to_address": "192.168.77.21",
         "source": "203.0.113.0/24", "comment": "partners only"},
    ]
    return config


def _ruleset(ns):
    return ns.out("nft", "list", "ruleset") + ns.out("iptables-save") + ns.out("ip6tables-save")


def test_gathered_returns_what_was_applied(lab, nat):
    config = _config()
    run = nat.play(nat.task("merged", config), nat.task("gathered"))
    merged, gathered = run[0], run[1]
    assert not merged.get("failed") and merged["changed"], merged
    assert not gathered.get("failed") and gathered["changed"] is False, gathered
    assert normalise(gathered["gathered"]) == normalise(config)
    foreign.assert_intact(lab)


def test_rendered_leaves_a_fresh_namespace_empty(empty_ns, tmp_path, backend):
    nat = NatRules(empty_ns, tmp_path, backend)
    assert _ruleset(empty_ns) == ""
    result = nat("rendered", _config())
    assert not result.get("failed") and result["changed"] is False, result
    rendered = result["rendered"]
    text = rendered if isinstance(rendered, str) else "\n".join(rendered)
    if backend == "nftables":
        assert "table inet ipmasq" in text and "masquerade" in text, text
    else:
        assert "*nat" in text and "IPMASQ-POSTROUTING" in text and "COMMIT" in text, text
    assert "192.168.77.20" in text and "203.0.113.0/24" in text
    assert _ruleset(empty_ns) == "", "rendered touched the namespace"


def test_rendered_nft_script_is_accepted_by_nft_check(empty_ns, tmp_path):
    nat = NatRules(empty_ns, tmp_path, "nftables")
    result = nat("rendered", _config())
    assert not result.get("failed"), result
    rendered = result["rendered"]
    text = rendered if isinstance(rendered, str) else "\n".join(rendered)
    check = empty_ns.run("nft", "-c", "-f", "-", input_text=text, check=False)
    assert check.returncode == 0, check.stderr
    assert _ruleset(empty_ns) == ""


def test_parsed_reads_live_dump_and_rendered_text(lab, nat, backend):
    config = _config()
    applied = nat("merged", config)
    assert not applied.get("failed"), applied
    if backend == "nftables":
        dump = lab.gw.out("nft", "list", "table", "inet", "ipmasq")
        want = config
    else:
        # The whole iptables-save, Docker and fail2ban included: only IPMASQ-* is ours.
        dump = lab.gw.out("iptables-save")
        want = copy.deepcopy(config)
        want["masquerade"] = [m for m in want["masquerade"] if ":" not in m["source"]]
    rendered = nat("rendered", config)["rendered"]
    if not isinstance(rendered, str):
        rendered = "\n".join(rendered)
    run = nat.play(nat.task("parsed", running_config=dump), nat.task("parsed", running_config=rendered))
    from_dump, from_rendered = run[0], run[1]
    assert not from_dump.get("failed"), from_dump
    assert normalise(from_dump["parsed"]) == normalise(want)
    assert not from_rendered.get("failed"), from_rendered
    if backend == "nftables":
        assert normalise(from_rendered["parsed"]) == normalise(config)
    else:
        # iptables rendered text holds both families; parsed must at least recover IPv4.
        got = normalise(from_rendered["parsed"])
        got["masquerade"] = [m for m in got["masquerade"] if ":" not in m["source"]]
        assert got == normalise(want)
