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
            return self._rolled_back(result, time.time() + timeout, timeout, (
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
            answer = {"failed": True, "msg": "no new connection: %s" % exc}
        if answer.get("failed") or answer.get("unreachable"):
            return self._rolled_back(result, deadline, timeout, (
                "the change was applied but could not be confirmed over a new connection (%s)"
                % answer.get("msg", "unreachable")))
        result.update(confirmed=True, persisted=answer.get("persisted", []))
        return result

    def _rolled_back(self, result, deadline, timeout, why):
        """Wait until the host's timer has fired, then fail saying so."""
        time.sleep(max(0.0, deadline - time.time()) + 1)
        self._cut_off = True
        # The host is back at the previous rules, and files wait for a confirmation.
        if "before" in result:
            result["after"] = result["before"]
        result.update(failed=True, confirmed=False, persisted=[], msg=(
            "%s; the host's rollback timer restored the previous rules after %ss"
            % (why, timeout)))
        return result

    def cleanup(self, force=False):
        # After a lockout, removing the temporary files needs yet another connection; its
        # failure must not hide the task's own message about the rollback.
        try:
            super(ActionModule, self).cleanup(force)
        except AnsibleConnectionFailure as exc:
            if not self._cut_off:
                raise
            display.warning("temporary files left on the host: %s" % exc)
