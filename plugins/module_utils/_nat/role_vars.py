# -*- coding: utf-8 -*-
# Copyright: contributors to the ipmasq.gateway collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE to the ipmasq.gateway collection. Not a public API: it may change at any time.
"""The roles' ``ipmasq_*`` variables -> the config of ``nat_rules`` and ``nat_kernel``.

Pure, and run on the controller (the ``ipmasq.gateway.role_config`` filter), so a role
checks all its variables before it changes anything. Every error names the variable and,
for lists, the entry: ``ipmasq_port_forwards[2].port: ...``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import difflib
import re

from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import model

# The kinds each role owns: it passes them all to nat_rules with state replaced, so the
# roles compose in any order and a single role never undoes another's rules.
# The masquerade role owns the WAN side's filter (forward and input), the gateway role all.
# The masquerade role: the LAN's way out (and NPT, and the LAN hosts' connection limits);
# the port_forward role: what is published inside (port forwards and 1:1 NAT).
ROLE_KINDS = {
    "masquerade": ("masquerade", "snat", "forward", "input", "npt", "connection_limits"),
    "port_forward": ("port_forwards", "static_nat"),
    "forwarding": ("helpers",),
    "gateway": ("masquerade", "snat", "forward", "port_forwards", "helpers", "input",
                "static_nat", "npt", "connection_limits"),
}
# Roles that own the kernel settings and the boot unit.
KERNEL_ROLES = ("forwarding", "gateway")

# Every variable of the public roles (tests/unit checks this against their argument specs).
VARIABLES = (
    "ipmasq_backend", "ipmasq_wan_interface", "ipmasq_lan_networks", "ipmasq_snat_address",
    "ipmasq_port_forwards", "ipmasq_inbound_policy", "ipmasq_ipv6_forwarding",
    "ipmasq_conntrack_max", "ipmasq_conntrack_timeouts", "ipmasq_helpers",
    "ipmasq_rollback_timeout", "ipmasq_conntrack_flush", "ipmasq_persist", "ipmasq_wan_input",
    "ipmasq_foreign_forward_drop", "ipmasq_adopt",
    "ipmasq_static_nat", "ipmasq_npt", "ipmasq_client_connection_limit",
    "ipmasq_masquerade_timeouts",
)
# The variables a role cannot do without (no silent ppp0 or 192.168.10.0/24).
REQUIRED = {
    "masquerade": ("ipmasq_wan_interface", "ipmasq_lan_networks"),
    "gateway": ("ipmasq_wan_interface", "ipmasq_lan_networks"),
    "port_forward": (),
    "forwarding": (),
}

# Short names of ipmasq_conntrack_timeouts and the sysctl each one sets.
CONNTRACK_TIMEOUTS = dict((short, "net.netfilter.nf_conntrack_%s" % name) for short, name in (
    ("generic", "generic_timeout"), ("icmp", "icmp_timeout"), ("icmpv6", "icmpv6_timeout"),
    ("udp", "udp_timeout"), ("udp_stream", "udp_timeout_stream"), ("gre", "gre_timeout"),
    ("gre_stream", "gre_timeout_stream"),
    ("tcp_syn_sent", "tcp_timeout_syn_sent"), ("tcp_syn_recv", "tcp_timeout_syn_recv"),
    ("tcp_established", "tcp_timeout_established"), ("tcp_fin_wait", "tcp_timeout_fin_wait"),
    ("tcp_close_wait", "tcp_timeout_close_wait"), ("tcp_last_ack", "tcp_timeout_last_ack"),
    ("tcp_time_wait", "tcp_timeout_time_wait"), ("tcp_close", "tcp_timeout_close"),
    ("tcp_max_retrans", "tcp_timeout_max_retrans"),
    ("tcp_unacknowledged", "tcp_timeout_unacknowledged"),
    ("sctp_closed", "sctp_timeout_closed"), ("sctp_cookie_wait", "sctp_timeout_cookie_wait"),
    ("sctp_cookie_echoed", "sctp_timeout_cookie_echoed"),
    ("sctp_established", "sctp_timeout_established"),
    ("sctp_shutdown_sent", "sctp_timeout_shutdown_sent"),
    ("sctp_shutdown_recd", "sctp_timeout_shutdown_recd"),
    ("sctp_shutdown_ack_sent", "sctp_timeout_shutdown_ack_sent"),
    ("sctp_heartbeat_sent", "sctp_timeout_heartbeat_sent"),
))

# The port each helper follows when ipmasq_helpers names it alone.
HELPER_PORTS = {"ftp": 21, "tftp": 69, "sip": 5060, "irc": 6667, "pptp": 1723, "snmp": 161,
                "amanda": 10080, "netbios-ns": 137, "sane": 6566}


class RoleVarError(ValueError):
    """A bad ``ipmasq_*`` variable; the message names it."""


def _fail(name, why, value):
    raise RoleVarError("%s: %s (got %s)" % (name, why, model.echo(value)))


# ---------------------------------------------------------------- whole-variable checks

def check_names(names):
    """Refuse ``ipmasq_*`` variables no role knows, naming the closest known one."""
    for name in sorted(names):
        if name.startswith("ipmasq_") and name not in VARIABLES:
            close = difflib.get_close_matches(name, VARIABLES, n=1, cutoff=0.6)
            raise RoleVarError("%s: no ipmasq.gateway role reads this variable%s" % (
                name, "; did you mean %s?" % close[0] if close else
                " (known: %s)" % ", ".join(VARIABLES)))


def _list(variables, name):
    value = variables.get(name)
    if value is None:
        return []
    if isinstance(value, str):
        _fail(name, "must be a list, not a string: write [%s]" % value, value)
    if not isinstance(value, (list, tuple)):
        _fail(name, "must be a list", value)
    return list(value)


def _dict(variables, name):
    value = variables.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        _fail(name, "must be a dictionary", value)
    return value


def _positive(name, value):
    if isinstance(value, bool) or not (isinstance(value, int) or
                                       model.digits(value)):
        _fail(name, "must be a positive whole number", value)
    if int(value) <= 0:
        _fail(name, "must be a positive whole number", value)
    return int(value)


# ---------------------------------------------------------------- rules

def _nat_rules(variables, role):
    """{kind: entries} for the role's kinds, as plain dicts for nat_rules."""
    kinds = ROLE_KINDS[role]
    wan = variables.get("ipmasq_wan_interface")
    config = dict((kind, []) for kind in kinds)
    if "masquerade" in kinds:
        snat_to = variables.get("ipmasq_snat_address") or ""
        timeouts = _dict(variables, "ipmasq_masquerade_timeouts")
        limit = _connection_limit(variables)
        for network in _list(variables, "ipmasq_lan_networks"):
            entry = {"source": network, "out_interface": wan}
            if timeouts:
                entry["timeouts"] = dict(timeouts)
            if snat_to:
                config["snat"].append(dict(entry, to_address=snat_to))
            else:
                config["masquerade"].append(entry)
            if limit:
                config["connection_limits"].append({"source": network, "per_address": limit})
            config["forward"].append({"out_interface": wan, "source": network,
                                      "action": "accept"})
        config["forward"].append({"in_interface": wan, "ct_state": ["established", "related"],
                                  "action": "accept"})
        if variables.get("ipmasq_inbound_policy", "drop") == "drop":
            config["forward"].append({"in_interface": wan, "action": "drop"})
    if "port_forwards" in kinds:
        for index, entry in enumerate(_list(variables, "ipmasq_port_forwards")):
            if not isinstance(entry, dict):
                _fail("ipmasq_port_forwards[%d]" % index, "must be a dictionary", entry)
            if wan in (None, "") and not entry.get("in_interface"):
                _fail("ipmasq_port_forwards[%d].in_interface" % index,
                      "is required when ipmasq_wan_interface is not set", None)
            config["port_forwards"].append(dict({"in_interface": wan}, **entry))
    for kind, name in (("static_nat", "ipmasq_static_nat"), ("npt", "ipmasq_npt")):
        if kind in kinds:
            for index, entry in enumerate(_list(variables, name)):
                config[kind].append(_wan_entry(name, index, entry, wan))
    if "input" in kinds:
        for index, entry in enumerate(_list(variables, "ipmasq_wan_input")):
            where = "ipmasq_wan_input[%d]" % index
            if not isinstance(entry, dict):
                _fail(where, "must be a dictionary {protocol, port, source, comment}", entry)
            unknown = sorted(set(entry) - {"protocol", "port", "source", "comment"}, key=str)
            if unknown:
                _fail(where, "unknown key %s (allowed: protocol, port, source, comment; the "
                      "interface is ipmasq_wan_interface)" % ", ".join(str(k) for k in unknown),
                      entry)
            config["input"].append(dict(entry, in_interface=wan))
    if "helpers" in kinds:
        for index, entry in enumerate(_list(variables, "ipmasq_helpers")):
            config["helpers"].append(_helper("ipmasq_helpers[%d]" % index, entry))
    return config


def _connection_limit(variables):
    """ipmasq_client_connection_limit: the connections each LAN host may hold, 0 = off."""
    value = variables.get("ipmasq_client_connection_limit", 0)
    if value in (None, 0, "0"):
        return 0
    if isinstance(value, bool) or not (isinstance(value, int) and value > 0 or
                                       model.digits(value)):
        _fail("ipmasq_client_connection_limit", "must be 0 (off) or a number of connections",
              value)
    return int(value)


def _wan_entry(name, index, entry, wan):
    """An ipmasq_static_nat or ipmasq_npt entry; its interface defaults to the WAN's."""
    where = "%s[%d]" % (name, index)
    if not isinstance(entry, dict):
        _fail(where, "must be a dictionary", entry)
    if entry.get("interface") in (None, ""):
        if wan in (None, ""):
            _fail(where + ".interface", "is required when ipmasq_wan_interface is not set", None)
        return dict(entry, interface=wan)
    return dict(entry)


def _helper(where, entry):
    if isinstance(entry, str):
        entry = {"name": entry}
    if not isinstance(entry, dict):
        _fail(where, "must be a helper's name or a dictionary {name, protocol, port}", entry)
    unknown = sorted(set(entry) - {"name", "protocol", "port"}, key=str)
    if unknown:
        _fail(where, "unknown key %s (allowed: name, protocol, port)" % ", ".join(
            str(k) for k in unknown), entry)
    if not entry.get("name"):
        _fail(where, "needs a name (one of %s)" % ", ".join(sorted(HELPER_PORTS)), entry)
    if entry["name"] not in HELPER_PORTS:
        _fail(where, "is not a helper the kernel ships (known: %s)" % ", ".join(
            sorted(HELPER_PORTS)), entry["name"])
    out = {"helper": entry["name"], "port": entry.get("port", HELPER_PORTS[entry["name"]])}
    if entry.get("protocol") is not None:
        out["protocol"] = entry["protocol"]
    return out


_WHERE = re.compile(r"\b(masquerade|snat|forward|port_forwards|helpers|input|static_nat|npt|"
                    r"connection_limits)\[(\d+)\](?:\.(\w+))?")


def _variable_of(variables, kind, index, field):
    """The ipmasq_* variable (and entry) a config entry's field came from."""
    networks = len(_list(variables, "ipmasq_lan_networks"))
    if kind in ("static_nat", "npt"):
        name = "ipmasq_%s" % kind
        if field == "interface" and not _list(variables, name)[index].get("interface"):
            return "ipmasq_wan_interface"
        return "%s[%d]%s" % (name, index, "." + field if field else "")
    if kind == "connection_limits":
        return "ipmasq_client_connection_limit" if field == "per_address" else \
            "ipmasq_lan_networks[%d]" % index
    if kind in ("masquerade", "snat") and field == "timeouts":
        return "ipmasq_masquerade_timeouts"
    if field in ("out_interface", "in_interface") and kind in ("masquerade", "snat", "forward",
                                                               "input"):
        return "ipmasq_wan_interface"
    if kind == "input":
        return "ipmasq_wan_input[%d]%s" % (index, "." + field if field else "")
    if kind in ("masquerade", "snat", "forward") and index < networks:
        if kind == "snat" and field == "to_address":
            return "ipmasq_snat_address"
        return "ipmasq_lan_networks[%d]" % index
    if kind == "forward":
        return "ipmasq_wan_interface"
    if kind == "port_forwards":
        entries = _list(variables, "ipmasq_port_forwards")
        if field == "in_interface" and "in_interface" not in entries[index]:
            return "ipmasq_wan_interface"
        return "ipmasq_port_forwards[%d]%s" % (index, "." + field if field else "")
    return "ipmasq_helpers[%d]%s" % (index, "." + field if field and field != "helper" else "")


def _in_role_words(variables, message):
    return _WHERE.sub(lambda match: _variable_of(
        variables, match.group(1), int(match.group(2)), match.group(3)), message)


def _check_snat_family(config):
    """ipmasq_snat_address and each LAN network must be of one family (the model would
    name the generated rule instead of the variable)."""
    for index, entry in enumerate(config.get("snat", ())):
        network, to = entry["source"], str(entry["to_address"])
        if model.family_of(str(network)) and model.family_of(to) \
                and model.family_of(str(network)) != model.family_of(to):
            _fail("ipmasq_snat_address", "mixes IPv4 and IPv6: ipmasq_lan_networks[%d] is %s"
                  % (index, network), to)


# ---------------------------------------------------------------- kernel

def _kernel(variables):
    timeouts = {}
    for key, seconds in sorted(_dict(variables, "ipmasq_conntrack_timeouts").items(), key=str):
        name = "ipmasq_conntrack_timeouts.%s" % key
        if key not in CONNTRACK_TIMEOUTS:
            close = difflib.get_close_matches(str(key), CONNTRACK_TIMEOUTS, n=1)
            _fail(name, "is not a timeout%s (known: %s)" % (
                "; did you mean %s?" % close[0] if close else "",
                ", ".join(sorted(CONNTRACK_TIMEOUTS))), key)
        timeouts[key] = _positive(name, seconds)
    kernel = {"ipv6_forwarding": bool(variables.get("ipmasq_ipv6_forwarding", False)),
              "conntrack_timeouts": timeouts,
              "persist": bool(variables.get("ipmasq_persist", True))}
    if variables.get("ipmasq_conntrack_max") is not None:
        kernel["conntrack_max"] = _positive("ipmasq_conntrack_max",
                                            variables["ipmasq_conntrack_max"])
    return kernel


# ---------------------------------------------------------------- the whole translation

def role_config(variables, role):
    """``{"config": nat_rules config, "kernel": nat_kernel options or None}``.

    ``variables`` holds the ``ipmasq_*`` variables the play defines (role defaults
    included). Raises RoleVarError naming the variable.
    """
    if role not in ROLE_KINDS:
        raise RoleVarError("role_config: unknown role %s (known: %s)"
                           % (model.echo(role), ", ".join(sorted(ROLE_KINDS))))
    check_names(variables)
    for name in REQUIRED[role]:
        if variables.get(name) in (None, "", []):
            raise RoleVarError("%s: the %s role needs it (got %s); there is no default"
                               % (name, role, model.echo(variables.get(name))))
    for name in ("ipmasq_wan_interface", "ipmasq_snat_address"):
        value = variables.get(name)
        if value is not None and not isinstance(value, (str, int)) or isinstance(value, bool):
            _fail(name, "must be a string", value)
    timeout = variables.get("ipmasq_rollback_timeout", 0)
    if isinstance(timeout, bool) or not model.digits(str(timeout).lstrip("-")) or int(timeout) < 0:
        _fail("ipmasq_rollback_timeout", "must be 0 (off) or a number of seconds", timeout)
    config = _nat_rules(variables, role)
    _check_snat_family(config)
    try:
        model.build_config(config)
    except model.ConfigError as exc:
        raise RoleVarError(_in_role_words(variables, str(exc)))
    kernel = _kernel(variables) if role in KERNEL_ROLES else None
    return {"config": config, "kernel": kernel}
