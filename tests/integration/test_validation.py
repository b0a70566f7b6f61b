"""Bad input fails before the host is touched, with a message naming entry, field and value."""
import copy

import foreign
import pytest
import scenarios
from foreign import Snapshot
from playbook import brief, ok
from netlab import LAN_SERVER

PF = scenarios.PORT_FORWARDS[0]

# (config, words the message must contain)
BAD_INPUTS = [
    ({"masquerade": [{"source": "192.168.77.1/24", "out_interface": "wan0"}]},
     ["masquerade[0].source", "192.168.77.1/24"]),
    ({"port_forwards": [dict(PF, port=70000)]},
     ["port_forwards[0].port", "70000"]),
    ({"port_forwards": [PF, dict(PF, port=8081, in_interface="eth0; rm")]},
     ["port_forwards[1].in_interface", "eth0; rm"]),
    ({"port_forwards": [dict(PF, port="9002-9000")]},
     ["port_forwards[0].port", "9002-9000"]),
    ({"port_forwards": [dict(PF, to_address="192.168.77.300")]},
     ["port_forwards[0].to_address", "192.168.77.300"]),
    ({"snat": [{"source": "192.168.77.0/24", "out_interface": "wan0", "to_address": "198.51.100.9-198.51.100.3"}]},
     ["snat[0].to_address", "198.51.100.9-198.51.100.3"]),
    # Choices are checked by Ansible's argument spec first: its message names the
    # option path and the value, not the entry's index.
    ({"forward": [scenarios.FORWARD[0], {"in_interface": "wan0", "ct_state": ["bogus"], "action": "accept"}]},
     ["forward", "ct_state", "bogus"]),
    ({"forward": [{"in_interface": "wan0", "destination": LAN_SERVER + "/33", "action": "accept"}]},
     ["forward[0].destination", LAN_SERVER + "/33"]),
]


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
