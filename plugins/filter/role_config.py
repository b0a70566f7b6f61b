# -*- coding: utf-8 -*-
# Copyright: contributors to the ipmasq.gateway collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: role_config
short_description: Turn the roles' ipmasq_* variables into module configuration
version_added: 1.1.0
description:
  - Used by the roles of this collection; a playbook rarely needs it.
  - Checks every C(ipmasq_*) variable and returns the configuration for the
    M(ipmasq.gateway.nat_rules) and M(ipmasq.gateway.nat_kernel) modules. It runs on the
    controller, so bad input fails before the host changes.
  - >-
    An error names the variable and the entry, for example
    C(ipmasq_port_forwards[2].port: ports must be between 1 and 65535 (got 70000)).
  - A variable that starts with C(ipmasq_) but that no role reads (a typo) is an error that
    names the closest known variable.
options:
  _input:
    description: The C(ipmasq_*) variables, by name.
    type: dict
    required: true
  role:
    description: The role whose rules and settings to build.
    type: str
    choices: [gateway, masquerade, port_forward, forwarding]
    required: true
  errors:
    description:
      - >-
        V(raise) fails the task. V(return) returns C({error: message}) instead, so that a
        following task can report it once, in plain words.
    type: str
    choices: [raise, return]
    default: raise
author:
  - ipmasq.gateway contributors (@ipmasq)
"""

EXAMPLES = r"""
- name: Show what the gateway role would apply
  ansible.builtin.debug:
    msg: "{{ dict(names | zip(query('ansible.builtin.vars', *names))) | ipmasq.gateway.role_config('gateway') }}"
  vars:
    names: "{{ query('ansible.builtin.varnames', '^ipmasq_') }}"
"""

RETURN = r"""
_value:
  description:
    - C(config) for M(ipmasq.gateway.nat_rules) (the kinds the role owns) and C(kernel),
      the options of M(ipmasq.gateway.nat_kernel) (null for roles that do not own them).
  type: dict
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import role_vars


def role_config(variables, role, errors="raise"):
    try:
        return role_vars.role_config(variables, role)
    except role_vars.RoleVarError as exc:
        if errors == "return":
            return {"error": str(exc)}
        raise AnsibleFilterError(str(exc))


class FilterModule(object):
    def filters(self):
        return {"role_config": role_config}
