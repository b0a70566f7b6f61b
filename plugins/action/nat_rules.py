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

MODULE = "ipmasq.gateway.nat_rules"


class ActionModule(ActionBase):
    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        args = self._task.args
        started = time.time()
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
            # The change may have cut this very connection (the answer never came back):
            # the timer armed before the change is the way back; wait for it to fire.
            time.sleep(max(0.0, started + timeout - time.time()) + 1)
            result.update(failed=True, confirmed=False, msg=(
                "the connection was lost while the change was applied (%s); the change was "
                "not confirmed, so the host's rollback timer restored the previous rules "
                "after %ss" % (exc, timeout)))
            return result
        token = result.get("rollback_token")
        if not token or result.get("failed") or not args.get("confirm", True):
            return result
        deadline = started + timeout
        try:
            self._connection.reset()
            answer = self._execute_module(module_name=MODULE, task_vars=task_vars,
                                          module_args={"confirm_token": token})
        except AnsibleConnectionFailure as exc:
            answer = {"failed": True, "msg": "no new connection: %s" % exc}
        if answer.get("failed") or answer.get("unreachable"):
            time.sleep(max(0.0, deadline - time.time()) + 1)
            result.update(failed=True, confirmed=False, msg=(
                "the change was applied but could not be confirmed over a new connection "
                "(%s); the host's rollback timer restored the previous rules after %ss"
                % (answer.get("msg", "unreachable"), timeout)))
            return result
        result.update(confirmed=True, persisted=answer.get("persisted", []))
        return result
