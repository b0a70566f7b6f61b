# -*- coding: utf-8 -*-
# Copyright: contributors to the ipmasq.gateway collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: status_report
short_description: One line per gateway from the results of nat_status
version_added: 1.1.0
description:
  - Used by C(playbooks/status.yml); a playbook of your own can use it the same way.
  - Takes what M(ipmasq.gateway.nat_status) registered on each gateway, failed and
    unreachable ones too, and returns one row of figures per gateway and the same as an
    aligned text table. The gateway with the fullest connection tracking table comes first;
    gateways without figures come last, with the reason.
options:
  _input:
    description: The registered results by gateway name.
    type: dict
    required: true
author:
  - ipmasq.gateway contributors (@ipmasq)
"""

EXAMPLES = r"""
- name: Print the fleet table
  ansible.builtin.debug:
    msg: "{{ (dict(names | zip(names | map('extract', hostvars) | map(attribute='gw_status')))
             | ipmasq.gateway.status_report).table }}"
  vars:
    names: "{{ groups['gateways'] }}"
"""

RETURN = r"""
_value:
  description:
    - C(gateways), one row per gateway (C(gateway), C(backend), C(rules),
      C(conntrack_count), C(conntrack_max), C(conntrack_used_percent), C(top_host),
      C(top_host_connections), C(port_forwards), C(unused_port_forwards), C(drift),
      C(pending_rollbacks) and C(findings); or C(gateway) and C(error)).
    - C(table), the rows as lines of text under a header line.
  type: dict
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import status_format


def status_report(results):
    if not isinstance(results, dict):
        raise AnsibleFilterError("status_report: expects a dict of results by gateway, got %s"
                                 % type(results).__name__)
    rows = status_format.fleet_rows(dict((str(k), v) for k, v in results.items()))
    return {"gateways": rows, "table": status_format.fleet_table(rows)}


class FilterModule(object):
    def filters(self):
        return {"status_report": status_report}
