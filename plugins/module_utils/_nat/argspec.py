# -*- coding: utf-8 -*-
# Copyright: contributors to the ipmasq.gateway collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE to the ipmasq.gateway collection. Not a public API: it may change at any time.
"""The nat_rules argument spec. Types only: model.py does the real validation."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

STATES = ["merged", "replaced", "overridden", "deleted", "gathered", "rendered", "parsed"]

CONFIG_SPEC = {
    "masquerade": {"type": "list", "elements": "dict", "options": {
        "source": {"type": "str"},
        "out_interface": {"type": "str"},
        "comment": {"type": "str"},
        "ports": {"type": "raw"},
        "random_fully": {"type": "bool", "default": False},
        "timeouts": {"type": "dict"},
    }},
    "snat": {"type": "list", "elements": "dict", "options": {
        "source": {"type": "str"},
        "out_interface": {"type": "str"},
        "to_address": {"type": "str"},
        "comment": {"type": "str"},
        "ports": {"type": "raw"},
        "random_fully": {"type": "bool", "default": False},
        "persistent": {"type": "bool", "default": False},
        "timeouts": {"type": "dict"},
    }},
    "port_forwards": {"type": "list", "elements": "dict", "options": {
        "in_interface": {"type": "str"},
        "protocol": {"type": "str", "default": "tcp", "choices": ["tcp", "udp", "tcp_udp"]},
        "port": {"type": "raw"},
        "to_address": {"type": "str"},
        "to_port": {"type": "raw"},
        "source": {"type": "str"},
        "hairpin": {"type": "bool", "default": False},
        "comment": {"type": "str"},
    }},
    "forward": {"type": "list", "elements": "dict", "options": {
        "in_interface": {"type": "str"},
        "out_interface": {"type": "str"},
        "source": {"type": "str"},
        "destination": {"type": "str"},
        "protocol": {"type": "str", "choices": ["tcp", "udp", "icmp", "icmpv6"]},
        "port": {"type": "raw"},
        "ct_state": {"type": "list", "elements": "str",
                     "choices": ["new", "established", "related", "invalid", "untracked"]},
        "action": {"type": "str", "default": "accept", "choices": ["accept", "drop", "reject"]},
        "comment": {"type": "str"},
    }},
    "helpers": {"type": "list", "elements": "dict", "options": {
        "helper": {"type": "str"},
        "protocol": {"type": "str", "choices": ["tcp", "udp"]},
        "port": {"type": "raw"},
    }},
    "input": {"type": "list", "elements": "dict", "options": {
        "in_interface": {"type": "str"},
        "protocol": {"type": "str", "default": "tcp", "choices": ["tcp", "udp", "tcp_udp", "icmp"]},
        "port": {"type": "raw"},
        "source": {"type": "str"},
        "comment": {"type": "str"},
    }},
    "static_nat": {"type": "list", "elements": "dict", "options": {
        "interface": {"type": "str"},
        "external": {"type": "str"},
        "internal": {"type": "str"},
        "source": {"type": "str"},
        "hairpin": {"type": "bool", "default": False},
        "comment": {"type": "str"},
    }},
    "npt": {"type": "list", "elements": "dict", "options": {
        "interface": {"type": "str"},
        "internal": {"type": "str"},
        "external": {"type": "str"},
        "comment": {"type": "str"},
    }},
    "connection_limits": {"type": "list", "elements": "dict", "options": {
        "source": {"type": "str"},
        "per_address": {"type": "int"},
        "protocol": {"type": "str", "default": "any", "choices": ["tcp", "udp", "any"]},
        "action": {"type": "str", "default": "reject", "choices": ["reject", "drop"]},
    }},
}

ARGUMENT_SPEC = {
    "backend": {"type": "str", "default": "auto", "choices": ["auto", "nftables", "iptables"]},
    "state": {"type": "str", "default": "merged", "choices": STATES},
    "config": {"type": "dict", "options": CONFIG_SPEC},
    "running_config": {"type": "str"},
    "persist": {"type": "bool", "default": True},
    "conntrack_flush": {"type": "str", "default": "affected", "choices": ["affected", "none"]},
    "rollback_timeout": {"type": "int", "default": 0},
    "confirm": {"type": "bool", "default": True},
    "confirm_token": {"type": "str", "no_log": False},  # an identifier, not a secret
    "foreign_forward_drop": {"type": "str", "default": "fail", "choices": ["fail", "warn"]},
    "adopt": {"type": "bool", "default": False},
}

# What AnsibleModule gets: ``config`` as a plain dict. The entries are validated (types,
# defaults, choices, unknown fields) by model.build_config, which names the entry in its
# errors; AnsibleModule going through the suboptions as well cost 0.2 s per 10,000 port
# forwards and echoed every unset field back as null. CONFIG_SPEC stays the documented
# shape (tests/unit checks it against the documentation and the model).
MODULE_ARGUMENT_SPEC = dict(ARGUMENT_SPEC, config={"type": "dict"})
