#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to the ipmasq.gateway collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: nat_status
short_description: What a NAT gateway is doing - connection tracking, per-host connections, rule counters, drift
version_added: 1.1.0
description:
  - Reads, and changes nothing. Reports how full the connection tracking table is, which
    LAN hosts hold the most tracked connections, how often each rule of the collection was
    used (packet and byte counters), the commit-confirm changes waiting for confirmation,
    and whether the live rules still equal the files that C(ipmasq.service) loads at boot.
  - What needs a look comes back as RV(findings); the warnings among them are also Ansible
    warnings. They are a connection tracking table above O(conntrack_threshold), a pending
    or failed rollback, drift, and rules in our table or chains that the collection did not
    write.
  - The host lock (C(/run/ipmasq.lock)) is held only while the rules, the boot files and the
    pending rollbacks are read, so that they are seen as one M(ipmasq.gateway.nat_rules) run
    left them; the connection tracking table is read after it is released. When another
    run holds the lock for more than 10 seconds, the module reads without it and says so.
  - C(playbooks/status.yml) prints one line per gateway for a fleet, writes the figures as
    JSON, and can write them for node-exporter's textfile collector.
author:
  - ipmasq.gateway contributors (@ipmasq)
attributes:
  check_mode:
    description: The same as a normal run; nothing is ever changed.
    support: full
  diff_mode:
    description: Nothing changes, so there is no diff.
    support: none
  platform:
    description: Linux hosts with nftables (C(nft)) or iptables (C(iptables-save)).
    platforms: posix
    support: full
options:
  backend:
    description:
      - Where the rules are.
      - V(auto) takes the backend that holds the collection's rules (C(table inet ipmasq),
        else the C(IPMASQ-*) chains), and on a host with neither what
        M(ipmasq.gateway.nat_rules) would pick.
    type: str
    choices: [auto, nftables, iptables]
    default: auto
  top:
    description:
      - How many LAN source addresses to list in RV(top_sources), the ones with the most
        tracked connections first.
      - V(0) does not read the connection tracking table at all (RV(conntrack) still has the
        count and the size), which is cheaper on a busy gateway.
      - Reading the table needs the C(conntrack) command (Debian/Ubuntu package
        C(conntrack)), or C(/proc/net/nf_conntrack) where the kernel has it.
    type: int
    default: 10
  lan_networks:
    description:
      - The networks (CIDR) whose addresses count as LAN hosts in RV(top_sources); a
        connection counts for its original source address.
      - Default the sources of the host's masquerade and SNAT rules; when none has a source,
        every address counts.
    type: list
    elements: str
  conntrack_threshold:
    description:
      - "Warn when the connection tracking table is at least this full, in percent of
        C(net.netfilter.nf_conntrack_max). A full table makes the kernel drop new
        connections (C(nf_conntrack: table full) in the kernel log)."
    type: float
    default: 80.0
  prometheus:
    description:
      - Also return the figures as a Prometheus text-format file in RV(prometheus), for
        node-exporter's textfile collector (save it as C(ipmasq.prom) in the collector's
        directory; C(playbooks/status.yml) does that).
    type: bool
    default: false
notes:
  - "Counters. With nftables every rule of the collection carries a C(counter) statement and
    the port forward maps count per element; with iptables the counters are built in and are
    read with C(iptables-save -c). A NAT rule sees only the first packet of a connection, so
    for masquerade, SNAT and port forwards RV(counters) counts the connections translated
    (C(packets)) and the bytes of their first packets; forward rules count every packet."
  - "Counters start at 0 when their rule is loaded: at boot, and when
    M(ipmasq.gateway.nat_rules) rewrites the rule. It rewrites only what changes: an
    nftables map element or an iptables chain that stays the same keeps its counters, while
    an nftables chain with any changed rule restarts all its rules' counters. A
    commit-confirm rollback with nftables reloads the table as it was listed when the change
    was made, counters included (what was counted while the change was pending is lost);
    with iptables the chains it restores restart at 0. RV(unused_port_forwards) therefore
    means unused since the counters started."
  - Hand edits of the collection's table or chains, and a ruleset that was changed with
    O(ipmasq.gateway.nat_rules#module:persist=false), show as drift. The addresses in the
    hairpin sets are not compared (they follow the interface addresses between runs), and
    neither are counters.
seealso:
  - module: ipmasq.gateway.nat_rules
  - name: node-exporter textfile collector
    description: Where RV(prometheus) goes.
    link: https://github.com/prometheus/node_exporter#textfile-collector
"""

EXAMPLES = r"""
- name: Read the gateway's status
  ipmasq.gateway.nat_status:
  register: gw_status

- name: Say which LAN host holds the most connections
  ansible.builtin.debug:
    msg: "{{ gw_status.top_sources[0].address }} holds {{ gw_status.top_sources[0].connections }} connections"
  when: gw_status.top_sources | length > 0

- name: List the port forwards that nobody used since their counters started
  ansible.builtin.debug:
    msg: "{{ gw_status.counters.port_forwards | selectattr('packets', '==', 0) | list }}"

- name: Fail when the live rules are not the ones that load at boot
  ansible.builtin.assert:
    that: not gw_status.drift.differs
    fail_msg: "{{ gw_status.drift.reason }}: {{ gw_status.drift.changes | join('; ') }}"

- name: Only the counts (the connection table is not read), warn from 60 percent
  ipmasq.gateway.nat_status:
    top: 0
    conntrack_threshold: 60

# The whole fleet, one line per gateway, a JSON file, and a node-exporter textfile on each:
#   ansible-playbook -i INVENTORY ipmasq.gateway.status -e nat_status_textfile_dir=/var/lib/prometheus/node-exporter
"""

RETURN = r"""
backend:
  description: The backend read (V(auto) resolved).
  returned: success
  type: str
  sample: nftables
rules:
  description: Entries of the owned ruleset by kind, and C(total). A C(tcp_udp) forward counts as two.
  returned: success
  type: dict
  sample: {masquerade: 1, snat: 0, port_forwards: 2, forward: 3, helpers: 0, total: 6}
foreign_rules:
  description: Rules in the collection's table or chains that it did not write (a hand edit); the next M(ipmasq.gateway.nat_rules) run removes them.
  returned: success
  type: int
  sample: 0
conntrack:
  description:
    - C(count) tracked connections of C(max) (C(net.netfilter.nf_conntrack_max)) and
      C(used_percent); all three null when connection tracking is not loaded.
    - C(threshold_percent) is O(conntrack_threshold); C(lan_networks) the networks
      RV(top_sources) counted; C(table_read) whether the table was read.
  returned: success
  type: dict
  sample: {count: 1234, max: 262144, used_percent: 0.47, threshold_percent: 80, lan_networks: [192.168.10.0/24], table_read: true}
top_sources:
  description: The O(top) LAN addresses with the most tracked connections, by original source address, with the count per protocol.
  returned: success
  type: list
  elements: dict
  sample: [{address: 192.168.10.23, connections: 412, protocols: {tcp: 380, udp: 32}}]
counters:
  description:
    - Packets and bytes per entry of the owned ruleset, by kind, in the order
      M(ipmasq.gateway.nat_rules) C(state=gathered) lists them. Each row holds the entry's
      identity fields (masquerade and SNAT C(source), C(out_interface); port forwards
      C(in_interface), C(protocol), C(port), a C(tcp_udp) forward as its C(tcp) and its
      C(udp) entry; helpers C(helper), C(protocol), C(port); forward rules every field but
      C(comment)), then C(packets) and C(bytes).
    - A port forward's figures add up its DNAT and, with hairpin, its hairpin DNAT.
    - For NAT entries C(packets) is the number of connections translated (see the notes).
      Null when a rule carries no counter (loaded by an older version).
  returned: success
  type: dict
  sample:
    masquerade: [{source: 192.168.10.0/24, out_interface: ppp0, packets: 5120, bytes: 307200}]
    port_forwards: [{in_interface: ppp0, protocol: tcp, port: 8080, packets: 37, bytes: 2220}]
unused_port_forwards:
  description:
    - "How many port forwards count zero connections. Which ones:
      C(counters.port_forwards | selectattr('packets', '==', 0))."
  returned: success
  type: int
  sample: 1
rollbacks:
  description:
    - Commit-confirm changes recorded in this network namespace. C(status) is V(pending)
      (waiting for confirmation; C(seconds_left) until the rollback fires), V(restored) or
      V(failed) (C(detail) says why; the host runs the unconfirmed change).
  returned: success
  type: list
  elements: dict
  sample: [{token: 4242-1a2b3c4d5e6f, status: pending, seconds_left: 87, detail: null}]
drift:
  description:
    - C(differs) is V(true) when the live rules differ from what the boot files would load,
      V(false) when they are the same, null when there is no boot file (rules applied with
      C(persist=false)).
    - C(reason) says why in words; C(changes) lists C(- rule) lines only in the boot files
      and C(+ rule) lines only live (at most 50); C(boot_files) the files read.
  returned: success
  type: dict
  sample:
    differs: true
    reason: the live rules differ from the boot file (1 line)
    changes: ['+ forward: tcp dport 22 counter accept']
    boot_files: [/etc/ipmasq/ipmasq.nft]
findings:
  description: What needs a look, each with C(severity) (V(warning) or V(info)), C(topic) and C(message). Warnings are also returned as Ansible warnings.
  returned: success
  type: list
  elements: dict
  sample:
    - severity: warning
      topic: conntrack
      message: "the connection tracking table is 85% full (222822 of 262144, threshold 80%): when it is full
        the kernel drops new connections (nf_conntrack: table full)"
prometheus:
  description:
    - The figures in the Prometheus text format, for node-exporter's textfile collector
      (C(ipmasq_nf_conntrack_entries), C(ipmasq_nf_conntrack_entries_limit),
      C(ipmasq_port_forward_packets_total) and so on).
  returned: when O(prometheus=true)
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import status_run

ARGUMENT_SPEC = {
    "backend": {"type": "str", "default": "auto", "choices": ["auto", "nftables", "iptables"]},
    "top": {"type": "int", "default": 10},
    "lan_networks": {"type": "list", "elements": "str"},
    "conntrack_threshold": {"type": "float", "default": 80.0},
    "prometheus": {"type": "bool", "default": False},
}


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    result = status_run.run(module)
    if result.pop("failed", False):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
