"""Commit-confirm: a change made with rollback_timeout is undone unless it is confirmed.

The rollback timer is a detached process on the host (here: inside the gateway namespace),
so it fires whether or not Ansible is still connected.
"""
import time

import foreign
import scenarios
from playbook import brief, ok

# Long enough for a confirmation on a loaded machine (a module run can take several
# seconds there), short enough to keep the tests quick.
TIMEOUT = 10    # rollback_timeout given to the module
DEADLINE = 13   # the previous ruleset must be back this long after the change


def _changed_config():
    config = scenarios.full()
    config["port_forwards"] = config["port_forwards"] + [
        {"in_interface": "wan0", "protocol": "tcp", "port": 8091,
         "to_address": "192.168.77.20", "to_port": 80}]
    return config


def _owned(lab):
    return foreign.owned(lab.gw)


def _wait_for(lab, wanted, seconds):
    """Poll (bounded) until our rules equal ``wanted``; return what was last seen."""
    end = time.monotonic() + seconds
    seen = _owned(lab)
    while seen != wanted and time.monotonic() < end:
        time.sleep(0.25)
        seen = _owned(lab)
    return seen


def test_unconfirmed_change_rolls_back_byte_for_byte(lab, nat):
    ok(nat("merged", scenarios.full()))
    previous = _owned(lab)
    result = ok(nat("replaced", _changed_config(), rollback_timeout=TIMEOUT, confirm=False))
    applied = time.monotonic()
    assert result["changed"] is True and result.get("rollback_token"), brief(result)
    assert _owned(lab) != previous, "the change was not applied before the rollback"
    seen = _wait_for(lab, previous, DEADLINE - (time.monotonic() - applied))
    assert seen == previous, "previous ruleset not back within %ds" % DEADLINE
    # Too late to confirm now: the task says so and changes nothing.
    late = nat(confirm_token=result["rollback_token"])
    assert late.get("failed") is True and "too late" in late["msg"], brief(late)
    assert _owned(lab) == previous
    foreign.assert_intact(lab, "by the rollback")


def test_change_confirmed_by_token_stays(lab, nat):
    ok(nat("merged", scenarios.full()))
    previous = _owned(lab)
    result = ok(nat("replaced", _changed_config(), rollback_timeout=TIMEOUT, confirm=False))
    changed = _owned(lab)
    confirmed = ok(nat(confirm_token=result["rollback_token"]))
    assert confirmed["changed"] is True, brief(confirmed)
    time.sleep(DEADLINE)
    assert _owned(lab) == changed != previous, "a confirmed change was rolled back"


def test_change_confirmed_over_a_new_connection_stays(lab, nat):
    ok(nat("merged", scenarios.full()))
    previous = _owned(lab)
    result = ok(nat("replaced", _changed_config(), rollback_timeout=TIMEOUT))
    assert result.get("confirmed") is True, brief(result)
    changed = _owned(lab)
    time.sleep(DEADLINE)
    assert _owned(lab) == changed != previous, "a confirmed change was rolled back"
