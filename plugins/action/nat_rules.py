# -*- coding: utf-8 -*-
# Copyright: contributors to the ipmasq.gateway collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Commit-confirm for nat_rules: confirm a change over a fresh connection.

With ``rollback_timeout`` the module arms a timer on the host that restores the previous
rules, then applies. This plugin then drops the connection and opens a new one: if the
change cut the controller off, the new connection fails, the timer fires on the host and
the task fails saying so. If the host answers, the plugin confirms the change.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible.errors import AnsibleConnectionFailure
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

MODULE = "ipmasq.gateway.nat_rules"

display = Display()


class ActionModule(ActionBase):
    _cut_off = False  # set when the change cut the connection and the host rolled back

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        args = self._task.args
        try:
            timeout = int(args.get("rollback_timeout") or 0)
        except (TypeError, ValueError):
            timeout = 0  # the module rejects the value and names it
        try:
            result.update(self._execute_module(module_name=MODULE, module_args=args,
                                               task_vars=task_vars))
        except AnsibleConnectionFailure as exc:
            if timeout <= 0:
                raise
            # The change may have cut this very connection before its answer came back.
            self._wait_until(time.time() + timeout)
            return self._not_confirmed(result, timeout, None, (
                "the connection was lost while the change was applied (%s)" % exc))
        # The host armed its timer before applying, so before now: `timeout` seconds from
        # now is past the moment it fires.
        deadline = time.time() + timeout
        token = result.get("rollback_token")
        if not token or result.get("failed") or not args.get("confirm", True):
            return result
        try:
            self._connection.reset()
            answer = self._execute_module(module_name=MODULE, task_vars=task_vars,
                                          module_args={"confirm_token": token})
        except AnsibleConnectionFailure as exc:
            answer = {"unreachable": True, "msg": str(exc)}
        if answer.get("confirmed"):
            # The timer is stopped; a failure now can only be the write of the boot files.
            result.update(confirmed=True, persisted=answer.get("persisted", []))
            if answer.get("failed"):
                result.update(failed=True, msg=answer.get("msg"))
            return result
        if answer.get("rollback_status"):  # the host answered: too late
            return self._not_confirmed(result, timeout, answer["rollback_status"], (
                "the change was applied but not confirmed in time (%s)" % answer.get("msg")))
        self._wait_until(deadline)
        return self._not_confirmed(result, timeout, self._outcome(token, task_vars), (
            "the change was applied but could not be confirmed over a new connection (%s)"
            % answer.get("msg", "unreachable")))

    def _wait_until(self, deadline):
        """Sleep past the moment the host's rollback timer fires."""
        time.sleep(max(0.0, deadline - time.time()) + 1)
        self._cut_off = True

    def _not_confirmed(self, result, timeout, outcome, why):
        """Fail the task, saying what the host's rollback timer did (``outcome``: "restored",
        "failed: why", or None / a note when nobody could ask the host)."""
        if outcome == "restored":
            # The host is back at the previous rules, and it wrote no file.
            if "before" in result:
                result["after"] = result["before"]
            what = "the host's rollback timer restored the previous rules after %ss" % timeout
        elif outcome and outcome.startswith("failed: "):
            what = ("the host's rollback timer FAILED to restore the previous rules (%s): the "
                    "host still runs the unconfirmed change" % outcome[len("failed: "):])
        else:
            what = ("the host's rollback timer was due to restore the previous rules after "
                    "%ss; whether it did could not be checked (%s)"
                    % (timeout, outcome or "no token came back"))
        result.update(failed=True, confirmed=False, persisted=[], rollback_status=outcome,
                      msg="%s; %s" % (why, what))
        return result

    def _outcome(self, token, task_vars):
        """What the host's timer did, asked over a new connection."""
        if not token:
            return None
        try:
            self._connection.reset()
            answer = self._execute_module(module_name=MODULE, task_vars=task_vars,
                                          module_args={"confirm_token": token, "confirm": False})
        except AnsibleConnectionFailure as exc:
            return "no connection to ask: %s" % exc
        if answer.get("unreachable") or answer.get("failed"):
            return "no answer: %s" % answer.get("msg", "unreachable")
        return answer.get("rollback_status")

    def cleanup(self, force=False):
        # After a lockout, removing the temporary files needs yet another connection; its
        # failure must not hide the task's own message about the rollback.
        try:
            super(ActionModule, self).cleanup(force)
        except AnsibleConnectionFailure as exc:
            if not self._cut_off:
                raise
            display.warning("temporary files left on the host: %s" % exc)
