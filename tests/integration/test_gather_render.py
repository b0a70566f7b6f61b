"""gathered reads back what was applied; rendered and parsed never touch the host."""
import copy

import foreign
import pytest
import scenarios
from playbook import NatRules, brief, ok
from scenarios import normalise


def _config():
    config = scenarios.full()
    config["masquerade"] = config["masquerade"] + scenarios.MASQUERADE6
    config["snat"] = [{"source": "192.168.78.0/24", "out_interface": "wan0",
                       "to_address": "198.51.100.5-198.51.100.6", "comment": "pool"}]
    config["port_forwards"] = config["port_forwards"] + [
        {"in_interface": "wan0", "protocol": "tcp_udp", "port": 6000, "to_address": "192.168.77.21",
         "source": "203.0.113.0/24", "comment": "partners-only"},
    ]
    return config


def _ruleset(ns):
    return ns.out("nft", "list", "ruleset") + ns.out("iptables-save") + ns.out("ip6tables-save")


def test_gathered_returns_what_was_applied(lab, nat, backend):
    config = _config()
    run = nat.play(nat.task("merged", config), nat.task("gathered"), nat.task("gathered", backend="auto"))
    merged, gathered, auto = ok(run[0]), ok(run[1]), ok(run[2])
    assert merged["changed"] is True and gathered["changed"] is False
    assert gathered["backend"] == backend
    assert normalise(gathered["gathered"]) == normalise(config)
    # auto reads the backend that holds our rules, whichever it is.
    assert auto["backend"] == backend, brief(auto)
    assert normalise(auto["gathered"]) == normalise(config)
    foreign.assert_intact(lab)


def test_rendered_leaves_a_fresh_namespace_empty(empty_ns, tmp_path, backend):
    nat = NatRules(empty_ns, tmp_path, backend)
    assert _ruleset(empty_ns) == ""
    result = ok(nat("rendered", _config()))
    assert result["changed"] is False
    text = "\n".join(result["rendered"])
    if backend == "nftables":
        assert "table inet ipmasq" in text and "masquerade" in text, text
    else:
        assert "*nat" in text and "IPMASQ-POSTROUTING" in text and "COMMIT" in text, text
    assert "192.168.77.20" in text and "203.0.113.0/24" in text
    assert _ruleset(empty_ns) == "", "rendered touched the namespace"
    if backend == "nftables":
        # The script is what nft would load: its dry run accepts it (and changes nothing).
        check = empty_ns.run("nft", "-c", "-f", "-", input_text=text + "\n", check=False)
        assert check.returncode == 0, check.stderr
        assert _ruleset(empty_ns) == ""


def _v4_only(config):
    config = copy.deepcopy(config)
    config["masquerade"] = [m for m in config["masquerade"] if ":" not in m["source"]]
    return config


def test_parsed_reads_a_whole_live_dump(lab, nat, backend):
    """A user feeds the host's full dump, neighbours included: out come our rules."""
    config = _config()
    if backend == "nftables":
        dumps = ["nft list ruleset", "nft -j list ruleset"]
        want = config
    else:
        # iptables-save holds one family; Docker's and fail2ban's chains are in it too.
        dumps = ["iptables-save"]
        want = _v4_only(config)
    tasks = [nat.task("merged", config)]
    for index, command in enumerate(dumps):
        tasks.append({"name": command, "ansible.builtin.command": command,
                      "register": "dump%d" % index, "changed_when": False})
        tasks.append(nat.task("parsed", running_config="{{ dump%d.stdout }}" % index))
    run = nat.play(*tasks)
    assert ok(run[0])["changed"] is True
    for command, result in zip(dumps, run.results[2::2]):
        assert normalise(ok(result)["parsed"]) == normalise(want), command


def test_parsed_reads_back_rendered_text(empty_ns, tmp_path, backend):
    nat = NatRules(empty_ns, tmp_path, backend)
    config = _config()
    run = nat.play(nat.task("rendered", config, register="out"),
                   nat.task("parsed", running_config="{{ out.rendered | join('\n') }}"))
    ok(run[0])
    assert normalise(ok(run[1])["parsed"]) == normalise(config)
    assert _ruleset(empty_ns) == ""


@pytest.mark.parametrize("backend", ["nftables"])
def test_parsed_rejects_text_it_cannot_read(empty_ns, tmp_path, backend):
    nat = NatRules(empty_ns, tmp_path, backend)
    unreadable = [
        "table inet ipmasq { garbage }",
        "table inet ipmasq {\n\tchain postrouting {\n\t\tthis is not nft\n\t}\n}\n",
        "*nat\n-A IPMASQ-POSTROUTING -s 10.0.0.0/8 --bogus-option x -j MASQUERADE\nCOMMIT\n",
    ]
    run = nat.play(*[nat.task("parsed", running_config=text) for text in unreadable])
    accepted = [(text, r.get("parsed")) for text, r in zip(unreadable, run) if not r.get("failed")]
    assert not accepted, "parsed returned a model for unreadable text: %s" % accepted


def test_comment_with_spaces_is_applied_and_read_back(lab, nat):
    config = {"masquerade": [{"source": "192.168.77.0/24", "out_interface": "wan0",
                              "comment": "office LAN out"}]}
    run = nat.play(nat.task("merged", config), nat.task("gathered"), nat.task("merged", config))
    applied, gathered, again = run[0], run[1], run[2]
    ok(applied)
    assert normalise(ok(gathered)["gathered"]) == normalise(config)
    assert ok(again)["changed"] is False and again["commands"] == []
