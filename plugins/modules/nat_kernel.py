#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to the ipmasq.gateway collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: nat_kernel
short_description: Forwarding, connection tracking and the boot unit of a NAT gateway, in one run
version_added: 1.1.0
description:
  - Switches on IP forwarding and sets the connection tracking table size and timeouts,
    live and in a sysctl.d file, in one module run. Only what differs is changed.
  - >-
    With O(boot_unit), installs and enables C(ipmasq.service). At boot it switches
    forwarding off, loads the ruleset that M(ipmasq.gateway.nat_rules) persisted (only
    complete files, each ending with the marker line that the module writes last), and
    only then switches forwarding on. A ruleset that does not load leaves the host not
    forwarding (fail closed).
  - Forwarding is therefore never written to the sysctl.d file. Run this module after
    M(ipmasq.gateway.nat_rules), so that forwarding goes on once the rules are in place.
  - The first time it manages a sysctl, the module records the value the host had, as a
    comment in its sysctl file. O(state=absent) puts those values back.
  - O(state=absent) removes what the module and M(ipmasq.gateway.nat_rules) put on the
    host besides the rules; C(playbooks/remove.yml) runs it and then removes the rules.
  - The roles of this collection call it; see the C(forwarding) and C(gateway) roles.
author:
  - ipmasq.gateway contributors (@ipmasq)
attributes:
  check_mode:
    description: Reports every value and file it would change, with the value before.
    support: full
  diff_mode:
    description: Shows the sysctl values and the files before and after.
    support: full
  platform:
    description: Linux with systemd (for O(boot_unit)).
    platforms: posix
    support: full
options:
  state:
    description:
      - V(present) sets the sysctls, writes the sysctl file and, with O(boot_unit), the boot unit.
      - V(absent) undoes that, and ignores the other options. It first puts back every sysctl
        it recorded, IPv4 forwarding first. Without a record of that one, forwarding is
        switched off, with a warning, because a host without the NAT rules must not route
        into its LAN. Then
        it disables and stops C(ipmasq.service) and C(ipmasq-refresh.service) and removes
        their unit files, the refresh script C(/usr/local/sbin/ipmasq-refresh) and its
        PPP and dhclient hooks, the sysctl files in C(/etc/sysctl.d) and C(/run/sysctl.d),
        the rulesets that M(ipmasq.gateway.nat_rules) persisted in C(/etc/ipmasq) (of both
        backends) and that directory when nothing else is in it. The rules themselves stay;
        remove them with M(ipmasq.gateway.nat_rules) and O(ipmasq.gateway.nat_rules#module:state=deleted),
        after this module, so that forwarding is off before the inbound drop goes.
    type: str
    choices: [present, absent]
    default: present
  ipv6_forwarding:
    description:
      - Also switch on IPv6 forwarding (C(net.ipv6.conf.all.forwarding)), live and at boot.
      - V(false) leaves IPv6 forwarding as it is.
    type: bool
    default: false
  conntrack_max:
    description:
      - Size of the connection tracking table (C(net.netfilter.nf_conntrack_max)).
      - Only the host's initial network namespace can change it. Inside a container the
        module warns when it differs, and keeps the value in the file.
    type: int
  conntrack_timeouts:
    description:
      - Connection tracking timeouts in seconds by short name, for example
        V(tcp_established=7200) and V(udp=60). The name V(udp) sets
        C(net.netfilter.nf_conntrack_udp_timeout). Unknown names are refused.
    type: dict
    default: {}
  persist:
    description:
      - V(true) writes the sysctl file to C(/etc/sysctl.d/90-ipmasq.conf) and, with
        O(boot_unit), the boot unit. V(false) writes it to C(/run/sysctl.d), which boot
        clears, and installs no unit.
    type: bool
    default: true
  boot_unit:
    description:
      - Install and enable C(/etc/systemd/system/ipmasq.service) for these rules.
    type: dict
    suboptions:
      backend:
        description: The backend of the persisted ruleset (RV(ipmasq.gateway.nat_rules#module:backend)).
        type: str
        choices: [nftables, iptables]
        required: true
      files:
        description:
          - The persisted files, as M(ipmasq.gateway.nat_rules) returns them in
            C(persist_files), by key (V(nft), or V(ipv4), V(ipv6), V(ipset) and V(nfct)).
        type: dict
        required: true
"""

EXAMPLES = r"""
- name: Apply the rules and persist them
  ipmasq.gateway.nat_rules:
    config:
      masquerade:
        - {source: 192.168.10.0/24, out_interface: ppp0}
  register: rules

- name: Switch on forwarding, size conntrack, restore the rules at boot
  ipmasq.gateway.nat_kernel:
    conntrack_max: 262144
    conntrack_timeouts: {tcp_established: 7200}
    boot_unit:
      backend: "{{ rules.backend }}"
      files: "{{ rules.persist_files }}"

- name: Undo - sysctls as they were, no boot unit, no files of ours
  ipmasq.gateway.nat_kernel:
    state: absent

- name: Then the rules of both backends, without writing a boot file again
  ipmasq.gateway.nat_rules:
    state: deleted
    backend: "{{ item }}"
    persist: false
  loop: [nftables, iptables]
"""

RETURN = r"""
sysctl:
  description: The live values changed, each with its value before.
  returned: always
  type: dict
  sample: {"net.ipv4.ip_forward": {"before": "0", "after": "1"}}
files:
  description: The files written (or, in check mode, that would be); with O(state=absent), removed.
  returned: always
  type: list
  elements: str
  sample: ["/etc/sysctl.d/90-ipmasq.conf", "/etc/systemd/system/ipmasq.service"]
unit:
  description:
    - The boot unit's path, and whether it was written or enabled now.
    - With O(state=absent), C(disabled_now) lists the units that were disabled and stopped.
  returned: always
  type: dict
  sample: {"path": "/etc/systemd/system/ipmasq.service", "enabled": true, "changed": false}
changes:
  description: Each change in a line, for a short plan in check mode.
  returned: always
  type: list
  elements: str
  sample: ["~ net.ipv4.ip_forward: 1 -> 0", "~ disable ipmasq.service", "~ remove /etc/ipmasq/ipmasq.nft"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import kernel_plan

ARGUMENT_SPEC = {
    "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
    "ipv6_forwarding": {"type": "bool", "default": False},
    "conntrack_max": {"type": "int"},
    "conntrack_timeouts": {"type": "dict", "default": {}},
    "persist": {"type": "bool", "default": True},
    "boot_unit": {"type": "dict", "options": {
        "backend": {"type": "str", "choices": ["nftables", "iptables"], "required": True},
        "files": {"type": "dict", "required": True},
    }},
}


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    result = kernel_plan.run(module)
    if result.pop("failed", False):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
