"""The nat_rules action plugin: commit-confirm over a fresh connection.

The plugin runs the module, drops the connection and confirms over a new one. Here the
module runs and the connection are stand-ins that record what the plugin asked for; time
is a fake clock, so the waits for the host's rollback timer are checked without sleeping.
"""
import pytest

from ansible.errors import AnsibleConnectionFailure
from ansible.plugins.action import ActionBase

from ansible_collections.ipmasq.gateway.plugins.action import nat_rules as action

APPLIED = {"changed": True, "commands": ["add element inet ipmasq fwd4 { ... }"]}


class FakeClock:
    def __init__(self):
        self.now = 1000.0
        self.slept = []

    def time(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


class Connection:
    def __init__(self):
        self.resets = 0

    def reset(self):
        self.resets += 1


class Task:
    def __init__(self, args):
        self.args = args


def make_plugin(args, answers, clock):
    """An ActionModule whose module runs return (or raise) ``answers`` in order."""
    plugin = action.ActionModule.__new__(action.ActionModule)
    plugin._task = Task(args)
    plugin._connection = Connection()
    plugin.calls = []

    def execute_module(module_name, module_args, task_vars):
        plugin.calls.append((module_name, dict(module_args)))
        clock.now += 2  # every module run takes a while
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return dict(answer)

    plugin._execute_module = execute_module
    return plugin


@pytest.fixture(name="clock")
def fixture_clock(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(action.time, "time", clock.time)
    monkeypatch.setattr(action.time, "sleep", clock.sleep)
    monkeypatch.setattr(ActionBase, "run", lambda self, tmp=None, task_vars=None: {})
    return clock


def test_without_rollback_timeout_the_module_result_is_returned_as_is(clock):
    plugin = make_plugin({"config": {}}, [APPLIED], clock)
    assert plugin.run(task_vars={}) == APPLIED
    assert plugin._connection.resets == 0
    assert len(plugin.calls) == 1


def test_confirmed_over_a_new_connection(clock):
    armed = dict(APPLIED, rollback_token="42-abc", rollback_timeout=10)
    plugin = make_plugin({"rollback_timeout": 10},
                         [armed, {"changed": True, "confirmed": "42-abc",
                                  "persisted": ["/etc/ipmasq/ipmasq.nft"]}], clock)
    result = plugin.run(task_vars={})
    assert plugin._connection.resets == 1
    assert plugin.calls[1] == (action.MODULE, {"confirm_token": "42-abc"})
    assert result["confirmed"] is True
    assert result["persisted"] == ["/etc/ipmasq/ipmasq.nft"]
    assert not result.get("failed")
    assert clock.slept == []


ARMED = dict(APPLIED, rollback_token="42-abc", rollback_timeout=10,
             before={"port_forwards": []}, after={"port_forwards": [{"port": 22}]},
             persisted=["/etc/ipmasq/ipmasq.nft"])
RESTORED = {"changed": False, "rollback_status": "restored"}
ROLLBACK_FAILED = {"changed": False, "rollback_status": "failed: nft -f (rollback) failed"}


@pytest.mark.parametrize("confirm_answer", [
    AnsibleConnectionFailure("ssh: connect to host 198.51.100.1 port 22: Connection timed out"),
    {"unreachable": True, "msg": "Failed to connect"},
])
def test_unconfirmed_change_fails_after_the_rollback_fired(clock, confirm_answer):
    started = clock.now
    plugin = make_plugin({"rollback_timeout": 10}, [ARMED, confirm_answer, RESTORED], clock)
    result = plugin.run(task_vars={})
    assert result["failed"] is True
    assert result["confirmed"] is False
    # The host is back where it was and wrote no file.
    assert result["after"] == {"port_forwards": []}
    assert result["persisted"] == []
    assert "rollback timer restored the previous rules after 10s" in result["msg"]
    assert result["rollback_token"] == "42-abc"
    # It asks what the timer did only once the timer has fired: armed during the first
    # module run (which took 2 s), it fires at most 10 s after that run returned.
    assert plugin.calls[2] == (action.MODULE, {"confirm_token": "42-abc", "confirm": False})
    assert clock.now >= started + 2 + 10 + 1


def test_a_failed_rollback_is_reported_as_failed(clock):
    plugin = make_plugin({"rollback_timeout": 10},
                         [ARMED, AnsibleConnectionFailure("timed out"), ROLLBACK_FAILED], clock)
    result = plugin.run(task_vars={})
    assert result["failed"] is True and result["confirmed"] is False
    assert "rollback timer FAILED to restore the previous rules" in result["msg"]
    assert "nft -f (rollback) failed" in result["msg"]
    assert "restored the previous rules" not in result["msg"]
    assert result["after"] == ARMED["after"]  # the change is still there


def test_an_outcome_nobody_could_check_is_not_called_restored(clock):
    plugin = make_plugin({"rollback_timeout": 10},
                         [ARMED, AnsibleConnectionFailure("timed out"),
                          AnsibleConnectionFailure("still timed out")], clock)
    result = plugin.run(task_vars={})
    assert result["failed"] is True
    assert "whether it did could not be checked" in result["msg"]
    assert "still timed out" in result["msg"]
    assert "restored the previous rules" not in result["msg"]


def test_too_late_answer_reports_what_the_timer_did_without_waiting(clock):
    too_late = {"failed": True, "rollback_status": "failed: nft -f (rollback) failed",
                "msg": "too late: the rollback of 42-abc FAILED (nft -f (rollback) failed)"}
    plugin = make_plugin({"rollback_timeout": 10}, [ARMED, too_late], clock)
    result = plugin.run(task_vars={})
    assert result["failed"] is True and "FAILED to restore" in result["msg"]
    assert clock.slept == []


def test_confirmed_but_boot_files_not_written_is_a_failure_that_keeps_the_change(clock):
    answer = {"failed": True, "changed": True, "confirmed": "42-abc", "persisted": [],
              "msg": "the change is confirmed and stays, but writing /etc/ipmasq/ipmasq.nft "
                     "failed: [Errno 28] No space left on device"}
    plugin = make_plugin({"rollback_timeout": 10}, [ARMED, answer], clock)
    result = plugin.run(task_vars={})
    assert result["failed"] is True and result["confirmed"] is True
    assert "No space left" in result["msg"] and result["persisted"] == []
    assert clock.slept == []


def test_connection_lost_during_the_change_waits_for_the_rollback(clock):
    started = clock.now
    lost = AnsibleConnectionFailure("Data could not be sent to remote host")
    plugin = make_plugin({"rollback_timeout": 15}, [lost], clock)
    result = plugin.run(task_vars={})
    assert result["failed"] is True
    assert "connection was lost while the change was applied" in result["msg"]
    # No token came back, so nobody can ask the host what its timer did.
    assert "rollback timer was due to restore the previous rules after 15s" in result["msg"]
    assert "could not be checked" in result["msg"]
    assert clock.now >= started + 2 + 15 + 1
    assert plugin._connection.resets == 0


def test_connection_lost_without_rollback_timeout_is_an_ordinary_failure(clock):
    plugin = make_plugin({}, [AnsibleConnectionFailure("gone")], clock)
    with pytest.raises(AnsibleConnectionFailure):
        plugin.run(task_vars={})


@pytest.mark.parametrize("args, answer", [
    # confirm: false returns the token for a later task
    pytest.param({"rollback_timeout": 10, "confirm": False},
                 dict(APPLIED, rollback_token="42-abc"), id="confirm-false"),
    # with no token nothing was armed
    pytest.param({"rollback_timeout": 10}, {"changed": False}, id="nothing-armed"),
])
def test_no_confirmation_when_not_asked_or_nothing_armed(clock, args, answer):
    plugin = make_plugin(args, [answer], clock)
    result = plugin.run(task_vars={})
    assert plugin._connection.resets == 0
    assert len(plugin.calls) == 1
    assert result == answer


def test_failed_module_run_is_not_confirmed(clock):
    failed = {"failed": True, "msg": "port_forwards[0].port: not a port (got 'x')",
              "rollback_token": None}
    plugin = make_plugin({"rollback_timeout": 10}, [failed], clock)
    assert plugin.run(task_vars={}) == failed
    assert len(plugin.calls) == 1


def test_bad_rollback_timeout_is_left_to_the_module(clock):
    failed = {"failed": True, "msg": "argument 'rollback_timeout' is of type str ..."}
    plugin = make_plugin({"rollback_timeout": "soon"}, [failed], clock)
    assert plugin.run(task_vars={}) == failed


def test_cleanup_failure_after_a_lockout_is_only_a_warning(clock, monkeypatch):
    def unreachable(self, force=False):
        raise AnsibleConnectionFailure("No route to host")

    monkeypatch.setattr(ActionBase, "cleanup", unreachable)
    warnings = []
    monkeypatch.setattr(action.display, "warning", warnings.append)
    plugin = make_plugin({"rollback_timeout": 10},
                         [dict(APPLIED, rollback_token="42-abc"),
                          AnsibleConnectionFailure("No route to host"),
                          AnsibleConnectionFailure("No route to host")], clock)
    assert plugin.run(task_vars={})["failed"] is True
    plugin.cleanup()
    assert warnings and "No route to host" in warnings[0]
    # Without a lockout, a cleanup failure is the task's failure as usual.
    plain = make_plugin({}, [APPLIED], clock)
    plain.run(task_vars={})
    with pytest.raises(AnsibleConnectionFailure):
        plain.cleanup()
