"""Bad input fails before the host is touched, with a message naming entry, field and value."""
import copy

import foreign
import pytest
import scenarios
from foreign import Snapshot
from playbook import brief, ok
from netlab import LAN_SERVER

PF = scenarios.PORT_FORWARDS[0]

# (config, words the message must contain). got(value) is the message's "(got ...)" part:
# a bare "0" would be found in "port_forwards[0]" whatever the message said about the value.


def got(value):
    """How a message shows a bad value: its repr, cut to 100 characters (README, Security)."""
    text = repr(value)
    if len(text) > 100:
        text = "%s... (%d characters)" % (text[:100], len(text))
    return "(got %s)" % text


BAD_INPUTS = [
    ({"masquerade": [{"source": "192.168.77.1/24", "out_interface": "wan0"}]},
     ["masquerade[0].source", got("192.168.77.1/24")]),
    ({"port_forwards": [dict(PF, port=70000)]},
     ["port_forwards[0].port", got(70000)]),
    ({"port_forwards": [PF, dict(PF, port=8081, in_interface="eth0; rm")]},
     ["port_forwards[1].in_interface", got("eth0; rm")]),
    ({"port_forwards": [dict(PF, port="9002-9000")]},
     ["port_forwards[0].port", got("9002-9000")]),
    ({"port_forwards": [dict(PF, to_address="192.168.77.300")]},
     ["port_forwards[0].to_address", got("192.168.77.300")]),
    ({"snat": [{"source": "192.168.77.0/24", "out_interface": "wan0", "to_address": "198.51.100.9-198.51.100.3"}]},
     ["snat[0].to_address", got("198.51.100.9-198.51.100.3")]),
    # Choices are checked by Ansible's argument spec first: its message names the
    # option path and the value, not the entry's index.
    ({"forward": [scenarios.FORWARD[0], {"in_interface": "wan0", "ct_state": ["bogus"], "action": "accept"}]},
     ["forward", "ct_state", "bogus"]),
    ({"forward": [{"in_interface": "wan0", "destination": LAN_SERVER + "/33", "action": "accept"}]},
     ["forward[0].destination", got(LAN_SERVER + "/33")]),
]

MASQ = {"source": "192.168.77.0/24", "out_interface": "wan0"}
SNAT = dict(MASQ, to_address="198.51.100.1")
RANGE = dict(PF, port="9000-9002", to_port=None)
# The rest of the matrix: one bad field each, for every kind.
BAD_INPUTS += [
    ({"masquerade": [dict(MASQ, source="not-a-net")]}, ["masquerade[0].source", got("not-a-net")]),
    ({"masquerade": [dict(MASQ, source="0.0.0.0/0")]}, ["masquerade[0].source", got("0.0.0.0/0")]),
    ({"masquerade": [{"source": "192.168.77.0/24"}]}, ["masquerade[0].out_interface", "required"]),
    ({"masquerade": [dict(MASQ, out_interface="w" * 16)]}, ["masquerade[0].out_interface", got("w" * 16)]),
    ({"masquerade": [dict(MASQ, out_interface='wan"0')]}, ["masquerade[0].out_interface", got('wan"0')]),
    ({"masquerade": [dict(MASQ, out_interface="wan/0")]}, ["masquerade[0].out_interface", got("wan/0")]),
    ({"masquerade": [dict(MASQ, out_interface="wan*")]}, ["masquerade[0].out_interface", got("wan*")]),
    ({"masquerade": [dict(MASQ, out_interface="wan 0")]}, ["masquerade[0].out_interface", got("wan 0")]),
    ({"masquerade": [dict(MASQ, comment="two\nlines")]},
     ["masquerade[0].comment", "control", got("two\nlines")]),
    ({"masquerade": [dict(MASQ, comment='say "hi"')]}, ["masquerade[0].comment", got('say "hi"')]),
    ({"masquerade": [dict(MASQ, comment="c" * 129)]}, ["masquerade[0].comment", "128", got("c" * 129)]),
    ({"masquerade": [MASQ, dict(MASQ, comment="again")]}, ["masquerade[1]", "duplicate", "wan0"]),
    ({"snat": [{"source": "192.168.77.0/24", "out_interface": "wan0"}]}, ["snat[0].to_address", "required"]),
    ({"snat": [dict(SNAT, to_address="224.0.0.1")]}, ["snat[0].to_address", got("224.0.0.1")]),
    ({"snat": [dict(SNAT, to_address="0.0.0.0")]}, ["snat[0].to_address", got("0.0.0.0")]),
    ({"snat": [dict(SNAT, to_address="2001:db8::1")]}, ["snat[0]", "IPv4 and IPv6", "2001:db8::1"]),
    ({"snat": [dict(SNAT, to_address="198.51.100.1-2001:db8::1")]},
     ["snat[0].to_address", "mixes", got("198.51.100.1-2001:db8::1")]),
    ({"port_forwards": [dict(PF, port=0)]}, ["port_forwards[0].port", got(0)]),
    ({"port_forwards": [dict(PF, port="abc")]}, ["port_forwards[0].port", got("abc")]),
    ({"port_forwards": [dict(PF, to_port=70000)]}, ["port_forwards[0].to_port", got(70000)]),
    ({"port_forwards": [dict(RANGE, to_port="80-81")]}, ["port_forwards[0].to_port", got("80-81")]),
    ({"port_forwards": [dict(RANGE, to_port="9100-9102")]}, ["port_forwards[0].to_port", got("9100-9102")]),
    ({"port_forwards": [dict(PF, to_address="127.0.0.1")]}, ["port_forwards[0].to_address", got("127.0.0.1")]),
    ({"port_forwards": [dict(PF, to_address="ff02::1")]}, ["port_forwards[0].to_address", got("ff02::1")]),
    ({"port_forwards": [dict(PF, to_address=None)]}, ["port_forwards[0].to_address", "required"]),
    ({"port_forwards": [dict(PF, in_interface=None)]}, ["port_forwards[0].in_interface", "required"]),
    ({"port_forwards": [dict(PF, source="10.0.0.1/8")]}, ["port_forwards[0].source", got("10.0.0.1/8")]),
    ({"port_forwards": [dict(PF, source="2001:db8::/32")]}, ["port_forwards[0]", "IPv4 and IPv6", "2001:db8::/32"]),
    ({"port_forwards": [RANGE, dict(PF, port=9001)]}, ["port_forwards[1].port", "overlaps"]),
    ({"port_forwards": [dict(PF, protocol="tcp_udp"), dict(PF, protocol="udp")]},
     ["port_forwards[1]", "duplicate"]),
    ({"forward": [{"in_interface": "wan0", "port": 22, "action": "drop"}]},
     ["forward[0].port", "protocol", got(22)]),
    ({"forward": [{"source": "2001:db8::/32", "protocol": "icmp", "action": "drop"}]},
     ["forward[0].protocol", got("icmp")]),
    ({"forward": [{"source": "2001:db8::/32", "destination": "192.168.77.0/24", "action": "drop"}]},
     ["forward[0]", "IPv4 and IPv6"]),
    ({"forward": [{"in_interface": "wan0;", "action": "drop"}]}, ["forward[0].in_interface", got("wan0;")]),
    ({"helpers": [{"helper": "bogus", "port": 21}]}, ["helpers[0].helper", got("bogus")]),
    ({"helpers": [{"helper": "ftp"}]}, ["helpers[0].port", "required"]),
    ({"helpers": [{"helper": "tftp", "protocol": "tcp", "port": 69}]}, ["helpers[0].protocol", got("tcp")]),
]


def test_the_matrix_is_large_enough():
    assert len(BAD_INPUTS) >= 40


def test_bad_input_fails_with_field_and_value_and_changes_nothing(lab, nat):
    # One playbook: the good config, a snapshot, every bad input (ignore_errors keeps
    # the play going), and a snapshot after them.
    tasks = [nat.task("merged", scenarios.full()), nat.snapshot()]
    tasks += [nat.task("merged", copy.deepcopy(cfg)) for cfg, _words in BAD_INPUTS]
    run = nat.play(*(tasks + [nat.snapshot()]))
    assert ok(run[0])["changed"] is True
    problems = []
    for (cfg, words), result in zip(BAD_INPUTS, run.results[2:-1]):
        msg = result.get("msg", "")
        if result.get("failed") is not True:
            problems.append("accepted %s: %s" % (cfg, brief(result)))
        elif not all(w in msg for w in words):
            problems.append("message for %s should name %s, got: %s" % (words[0], words, msg))
    assert not problems, "\n".join(problems)
    # Every rule in the namespace, ours included, is unchanged (counters masked).
    before, after = (foreign.whole(Snapshot.parse(ok(run[i])["stdout"])) for i in (1, -1))
    diff = foreign.changes(before, after)
    assert not diff, "bad input changed the ruleset:\n" + diff


@pytest.mark.parametrize("backend", ["nftables"])
def test_unknown_option_is_rejected_by_the_argument_spec(nat):
    result = nat("merged", {"masquerade": [{"source": "192.168.77.0/24", "out_interface": "wan0",
                                            "typo": 1}]})
    assert result.get("failed") is True and "typo" in result.get("msg", ""), brief(result)
