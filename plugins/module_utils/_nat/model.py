# -*- coding: utf-8 -*-
# Copyright: contributors to the ipmasq.gateway collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE to the ipmasq.gateway collection. Not a public API: it may change at any time.
"""The rule model: typed entries per kind, validation, and conversion to and from plain dicts.

Every value from the user passes through ``build_config`` before anything touches a host.
Errors name the entry (kind and index), the field and the value.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import functools
import ipaddress
import re
import unicodedata
from collections import namedtuple

from ansible.module_utils.parsing.convert_bool import boolean

KINDS = ("masquerade", "snat", "port_forwards", "forward", "helpers", "input", "static_nat",
         "npt", "connection_limits")
# Kinds whose entries are matched by identity; ``forward`` is an ordered list.
KEYED_KINDS = ("masquerade", "snat", "port_forwards", "helpers", "input", "static_nat", "npt",
               "connection_limits")

IFNAME_MAX = 15  # IFNAMSIZ - 1
COMMENT_MAX = 128  # nftables' limit; iptables allows 256
ECHO_MAX = 100  # an error message shows at most this much of a bad value
# The kernel refuses ':' and '/' in interface names (dev_valid_name); "eth0:1" is an
# address label, which no packet ever carries as its interface.
IFNAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
# An interface field may also name every interface that starts with a prefix, iptables'
# spelling: "ppp+" (nftables: "ppp*"), for links that come and go (PPP, WireGuard, VPNs).
IFPATTERN_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\+\Z")
CT_STATES = ("new", "established", "related", "invalid", "untracked")
FORWARD_PROTOCOLS = ("tcp", "udp", "icmp", "icmpv6")
FORWARD_ACTIONS = ("accept", "drop", "reject")
PF_PROTOCOLS = ("tcp", "udp", "tcp_udp")
# What an ``input`` entry may let in: ports of tcp/udp, or IPv4 ping and the like (ICMPv6
# is always let in where input is filtered: IPv6 needs it to find its neighbours).
INPUT_PROTOCOLS = ("tcp", "udp", "tcp_udp", "icmp")
# Conntrack helpers the kernel ships, with the protocol they follow.
LIMIT_PROTOCOLS = ("tcp", "udp", "any")
LIMIT_ACTIONS = ("reject", "drop")
NPT_MAX_PREFIX = 64  # ip6tables' SNPT/DNPT take no longer prefix
# The per-rule timeouts a masquerade or snat entry may set, with the protocol and the
# connection state each one applies to (the keys of the global ipmasq_conntrack_timeouts).
TIMEOUT_KEYS = {
    "tcp_syn_sent": ("tcp", "syn_sent"), "tcp_syn_recv": ("tcp", "syn_recv"),
    "tcp_established": ("tcp", "established"), "tcp_fin_wait": ("tcp", "fin_wait"),
    "tcp_close_wait": ("tcp", "close_wait"), "tcp_last_ack": ("tcp", "last_ack"),
    "tcp_time_wait": ("tcp", "time_wait"), "tcp_close": ("tcp", "close"),
    "udp": ("udp", "unreplied"), "udp_stream": ("udp", "replied"),
}
TIMEOUT_KEYS_BY_STATE = dict((value, key) for key, value in TIMEOUT_KEYS.items())
TIMEOUT_MAX = 2147483  # seconds; the kernel keeps timeouts in 32-bit jiffies
HELPER_PROTOCOLS = {
    "amanda": ("udp",), "ftp": ("tcp",), "irc": ("tcp",),
    "netbios-ns": ("udp",), "pptp": ("tcp",), "sane": ("tcp",), "sip": ("tcp", "udp"),
    "snmp": ("udp",), "tftp": ("udp",),
}

# The kernel registers these helpers for IPv4 only (nf_conntrack_irc, _pptp, _snmp,
# _netbios_ns): ip6tables refuses them, so they are never rendered for IPv6.
IPV4_ONLY_HELPERS = frozenset(("irc", "netbios-ns", "pptp", "snmp"))

# ports: the source ports NAT picks from ("1024-65535"); random_fully, persistent: how it
# picks them and the address (persistent: a client keeps one address of a pool); timeouts:
# ((key, seconds), ...) sorted, for the connections from ``source`` (see TIMEOUT_KEYS).
Masquerade = namedtuple("Masquerade", "source out_interface comment ports random_fully timeouts")
Masquerade.__new__.__defaults__ = (None, False, None)
Snat = namedtuple("Snat",
                  "source out_interface to_address comment ports random_fully persistent timeouts")
Snat.__new__.__defaults__ = (None, False, False, None)
# 1:1 NAT: ``external`` and ``internal`` are addresses, or networks of one prefix length
# mapped address for address (NETMAP).
StaticNat = namedtuple("StaticNat", "interface external internal source hairpin comment")
# IPv6 network prefix translation (RFC 6296): ``internal`` leaves by ``interface`` as
# ``external``, and back.
Npt = namedtuple("Npt", "interface internal external comment")
# MAXCON: ``per_address`` connections at most from each host of ``source``.
ConnectionLimit = namedtuple("ConnectionLimit", "source per_address protocol action")
STATIC_NAT_FIELDS = StaticNat._fields
NPT_FIELDS = Npt._fields
PortForward = namedtuple(
    "PortForward", "in_interface protocol port to_address to_port source hairpin comment")
Forward = namedtuple(
    "Forward",
    "in_interface out_interface source destination protocol port ct_state action comment")
Helper = namedtuple("Helper", "helper protocol port")
# Traffic to the gateway itself that ``in_interface`` lets in once input is filtered there.
Input = namedtuple("Input", "in_interface protocol port source comment")


class ConfigError(ValueError):
    """Invalid input. The message names the entry, the field and the value."""


def identity(kind, entry):
    """The fields that make an entry unique within its kind (documented per kind)."""
    if kind in ("masquerade", "snat"):
        return (entry.source, entry.out_interface)
    if kind == "port_forwards":
        return (entry.in_interface, entry.protocol, entry.port)
    if kind == "helpers":
        return entry
    if kind == "input":
        return (entry.in_interface, entry.protocol, entry.port, entry.source)
    if kind == "static_nat":
        return (entry.interface, entry.external)
    if kind == "npt":
        return (entry.interface, entry.internal)
    if kind == "connection_limits":
        return (entry.source, entry.protocol)
    return entry._replace(comment=None)  # forward: the whole rule but its comment


def family_of(*addresses):
    """4 or 6 from the first address-like string given, None when there is none."""
    for addr in addresses:
        if addr:
            return 6 if ":" in addr else 4
    return None


# ---------------------------------------------------------------- field validators

def echo(value):
    """``repr(value)`` cut to ECHO_MAX characters: a 2 MB comment must not make a 2 MB error."""
    text = repr(value)
    if len(text) > ECHO_MAX:
        text = "%s... (%d characters)" % (text[:ECHO_MAX], len(text))
    return text


def _name(key):
    """A field or kind name as given, or its cut ``repr`` when it is not a plain word."""
    return key if isinstance(key, str) and re.match(r"^\w{1,64}\Z", key) else echo(key)


def _fail(where, field, value, why):
    raise ConfigError("%s.%s: %s (got %s)" % (where, field, why, echo(value)))


def _absent(where, field, value, required):
    """True when the field is unset; an unset required field is an error."""
    if value is None or value == "":
        if required:
            _fail(where, field, value, "is required")
        return True
    return False


# The module's argument spec leaves the entries of ``config`` to this file (validating
# 10,000 of them twice cost more than the rest of a no-change run), so the conversions
# Ansible's option types make are made here: a number for a text field (an interface
# named 0, a comment 2024), and yes/no/on/off/1/0 for a boolean.

def _number_as_text(value):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


def _bool(where, field, value):
    try:
        return boolean(value, strict=True)
    except TypeError:
        _fail(where, field, value, "must be true or false")


def is_pattern(interface):
    """Whether an interface field names a pattern ("ppp+") rather than one interface."""
    return isinstance(interface, str) and interface.endswith("+")


def _interface(where, field, value, required=False):
    if _absent(where, field, value, required):
        return None
    value = _number_as_text(value)
    if not isinstance(value, str):
        _fail(where, field, value, "must be an interface name")
    if len(value) > IFNAME_MAX:
        _fail(where, field, value, "is longer than %d characters" % IFNAME_MAX)
    if value == "+":
        _fail(where, field, value, "a pattern needs the start of the names it matches, "
              "as in ppp+ (omit the field to match every interface)")
    if not (IFNAME_RE.match(value) or IFPATTERN_RE.match(value)) \
            or value in (".", ".."):  # \Z: no trailing newline
        _fail(where, field, value,
              "may contain only letters, digits and _ . - (no spaces, quotes, ':' or '/'), "
              "and a pattern only a + at the end (ppp+)")
    return value


def _no_zone(where, field, value):
    """Refuse an IPv6 zone (scope) id: ``ipaddress`` accepts any text after '%'."""
    if "%" in str(value):
        _fail(where, field, value, "must not carry a zone id ('%' and what follows)")


def _network(where, field, value, required=False):
    if _absent(where, field, value, required):
        return None
    _no_zone(where, field, value)
    try:
        net = ipaddress.ip_network(str(value), strict=True)
    except ValueError as exc:
        if "host bits set" in str(exc):
            _fail(where, field, value, "has host bits set; use the network address")
        _fail(where, field, value, "is not a valid IP network in CIDR form")
    if net.prefixlen == 0:
        _fail(where, field, value, "matches every address; omit the field instead")
    return net.with_prefixlen


def _unicast(where, field, value):
    _no_zone(where, field, value)
    addr, why = _check_unicast(str(value))
    if why:
        _fail(where, field, value, why)
    return addr


@functools.lru_cache(maxsize=4096)
def _check_unicast(text):
    """(address, None) or (None, why). Cached: thousands of forwards share few targets."""
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None, "is not a valid IP address"
    if getattr(addr, "scope_id", None):
        return None, "must not carry a zone id ('%' and what follows)"
    if addr.is_multicast or addr.is_unspecified or addr.is_loopback or addr.is_link_local \
            or (addr.version == 4 and addr == ipaddress.IPv4Address("255.255.255.255")):
        return None, "must be a unicast host address"
    return addr, None


def _host(where, field, value, required=True):
    if _absent(where, field, value, required):
        return None
    return str(_unicast(where, field, value))


def _host_or_range(where, field, value):
    """An address or an inclusive range ``a.b.c.d-a.b.c.e`` (SNAT pools)."""
    _absent(where, field, value, required=True)
    text = str(value)
    if "-" not in text:
        return str(_unicast(where, field, text))
    lo_text, hi_text = text.split("-", 1)
    lo, hi = _unicast(where, field, lo_text), _unicast(where, field, hi_text)
    if lo.version != hi.version:
        _fail(where, field, value, "mixes IPv4 and IPv6")
    if hi < lo:
        _fail(where, field, value, "is a reversed range")
    return "%s-%s" % (lo, hi) if lo != hi else str(lo)


_DIGITS = re.compile(r"[0-9]+\Z")


def digits(text):
    """Whether ``text`` is a string of ASCII digits (str.isdigit also takes "²" or "₀",
    which int() refuses, and other scripts' digits, which int() reads)."""
    return isinstance(text, str) and _DIGITS.match(text) is not None


def parse_ports(text):
    """"80" or "5000-5010" (also "5000:5010") -> (lo, hi); raises ValueError."""
    # the common case first, and cheap: one port, as a number or digits
    if digits(text) or \
            isinstance(text, int) and not isinstance(text, bool):
        port = int(text)
        return port, port
    text = str(text).strip()
    for sep in ("-", ":"):
        if sep in text:
            lo, hi = text.split(sep, 1)
            return _port_number(lo), _port_number(hi)
    return _port_number(text), _port_number(text)


def _port_number(text):
    """ASCII digits only: int() also reads "+80", "8_0" and other scripts' digits."""
    text = text.strip()
    if not digits(text):
        raise ValueError("not a port number: %r" % text)
    return int(text)


def format_ports(lo, hi):
    return str(lo) if lo == hi else "%d-%d" % (lo, hi)


def _ports(where, field, value, required=True):
    if _absent(where, field, value, required):
        return None
    if isinstance(value, bool):
        _fail(where, field, value, "must be a port or a range like 5000-5010")
    try:
        lo, hi = parse_ports(value)
    except ValueError:
        _fail(where, field, value, "must be a port or a range like 5000-5010")
    if not (1 <= lo <= 65535 and 1 <= hi <= 65535):
        _fail(where, field, value, "ports must be between 1 and 65535")
    if hi < lo:
        _fail(where, field, value, "is a reversed range")
    return format_ports(lo, hi)


def _comment(where, value):
    if value is None or value == "":
        return None
    value = _number_as_text(value)
    if not isinstance(value, str):
        _fail(where, "comment", value, "must be a string")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        _fail(where, "comment", value, "must be valid Unicode text (it holds a lone surrogate)")
    if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in value):
        _fail(where, "comment", value, "must not contain control characters")
    if '"' in value or "\\" in value:
        _fail(where, "comment", value, "must not contain double quotes or backslashes")
    if size > COMMENT_MAX:
        _fail(where, "comment", value, "is longer than %d bytes" % COMMENT_MAX)
    return value


def _choice(where, field, value, choices, required=True):
    if _absent(where, field, value, required):
        return None
    if value not in choices:
        _fail(where, field, value, "must be one of %s" % ", ".join(choices))
    return value


def _same_family(where, entry_fields):
    """Reject a rule whose addresses mix IPv4 and IPv6."""
    families = set(family_of(value) for field, value in entry_fields if value)
    if len(families) > 1:
        _fail(where, entry_fields[0][0], dict(entry_fields),
              "mixes IPv4 and IPv6 addresses in one rule")


# ---------------------------------------------------------------- entry builders

def _get(raw, key, default):
    """raw[key], or ``default`` when absent or None (Ansible fills unset options with None)."""
    value = raw.get(key)
    return default if value is None else value


def _known_keys(where, raw, allowed):
    if not isinstance(raw, dict):
        raise ConfigError("%s: must be a dictionary (got %s)" % (where, echo(raw)))
    unknown = sorted(set(raw) - set(allowed), key=str)
    if unknown:
        raise ConfigError("%s: unknown field %s (allowed: %s)"
                          % (where, ", ".join(_name(k) for k in unknown), ", ".join(allowed)))


def _timeouts(where, value, source):
    """{key: seconds} -> ((key, seconds), ...) sorted by key, or None."""
    if value is None or value == {}:
        return None
    if not isinstance(value, dict):
        _fail(where, "timeouts", value, "must be a dictionary of seconds by connection state, "
              "for example {tcp_established: 960, udp: 30}")
    out = []
    for key in sorted(value, key=str):
        if key not in TIMEOUT_KEYS:
            _fail(where, "timeouts", key, "is not a timeout a rule can set (known: %s)"
                  % ", ".join(sorted(TIMEOUT_KEYS)))
        seconds = value[key]
        if isinstance(seconds, bool) or not (isinstance(seconds, int) or isinstance(
                seconds, str) and digits(seconds)) or not 1 <= int(seconds) <= TIMEOUT_MAX:
            _fail(where, "timeouts.%s" % key, seconds,
                  "must be a whole number of seconds from 1 to %d" % TIMEOUT_MAX)
        out.append((key, int(seconds)))
    if source is None:
        _fail(where, "timeouts", value, "apply to the connections from the entry's source: "
              "set source")
    return tuple(out)


def _build_nat(kind, where, raw, partial):
    fields = ("source", "out_interface", "comment", "ports", "random_fully", "timeouts") + (
        ("to_address", "persistent") if kind == "snat" else ())
    _known_keys(where, raw, fields)
    source = _network(where, "source", raw.get("source"))
    out_if = _interface(where, "out_interface", raw.get("out_interface"), required=True)
    comment = _comment(where, raw.get("comment"))
    ports = _ports(where, "ports", raw.get("ports"), required=False)
    random_fully = _bool(where, "random_fully", _get(raw, "random_fully", False))
    timeouts = _timeouts(where, raw.get("timeouts"), source)
    if kind == "masquerade":
        return [Masquerade(source, out_if, comment, ports, random_fully, timeouts)]
    persistent = _bool(where, "persistent", _get(raw, "persistent", False))
    to = raw.get("to_address")
    to = None if partial and not to else _host_or_range(where, "to_address", to)
    _same_family(where, [("source", source), ("to_address", to)])
    return [Snat(source, out_if, to, comment, ports, random_fully, persistent, timeouts)]


def _host_or_network(where, field, value):
    """An address, or a network (CIDR) for a mapping address for address; a /32 or /128
    is its address."""
    _absent(where, field, value, required=True)
    text = str(value)
    if "/" not in text:
        return str(_unicast(where, field, text))
    net = _network(where, field, text)
    if net.endswith("/32") or net.endswith("/128"):
        return str(_unicast(where, field, net.split("/")[0]))
    return net


def _prefix_length(address):
    return int(address.split("/")[1]) if "/" in address else (128 if ":" in address else 32)


def _build_static_nat(where, raw, partial):
    _known_keys(where, raw, STATIC_NAT_FIELDS)
    interface = _interface(where, "interface", raw.get("interface"), required=True)
    external = _host_or_network(where, "external", raw.get("external"))
    internal = None if partial and not raw.get("internal") else \
        _host_or_network(where, "internal", raw.get("internal"))
    source = _network(where, "source", raw.get("source"))
    hairpin = _bool(where, "hairpin", _get(raw, "hairpin", False))
    comment = _comment(where, raw.get("comment"))
    _same_family(where, [("external", external), ("internal", internal), ("source", source)])
    if internal is not None and _prefix_length(external) != _prefix_length(internal):
        _fail(where, "internal", raw.get("internal"),
              "must be as long a prefix as external %s (mapped address for address)"
              % external)
    return [StaticNat(interface, external, internal, source, hairpin, comment)]


def _build_npt(where, raw, partial):
    _known_keys(where, raw, NPT_FIELDS)
    interface = _interface(where, "interface", raw.get("interface"), required=True)
    prefixes = {}
    for field in ("internal", "external"):
        value = raw.get(field)
        if field == "external" and partial and not value:
            prefixes[field] = None
            continue
        net = _network(where, field, value, required=True)
        if family_of(net) != 6:
            _fail(where, field, value, "must be an IPv6 prefix (NPTv6 translates IPv6 only)")
        if _prefix_length(net) > NPT_MAX_PREFIX:
            _fail(where, field, value, "must be a prefix of /%d or shorter" % NPT_MAX_PREFIX)
        prefixes[field] = net
    internal, external = prefixes["internal"], prefixes["external"]
    if external is not None and _prefix_length(internal) != _prefix_length(external):
        _fail(where, "external", raw.get("external"),
              "must be as long a prefix as internal %s" % internal)
    return [Npt(interface, internal, external, _comment(where, raw.get("comment")))]


def _build_connection_limit(where, raw, partial):
    _known_keys(where, raw, ConnectionLimit._fields)
    source = _network(where, "source", raw.get("source"), required=True)
    count = raw.get("per_address")
    if partial and count is None:
        count = None
    elif isinstance(count, bool) or not (isinstance(count, int) or isinstance(
            count, str) and digits(count)) or not 1 <= int(count) <= 1000000:
        _fail(where, "per_address", count,
              "must be a whole number of connections from 1 to 1000000")
    else:
        count = int(count)
    proto = _choice(where, "protocol", _get(raw, "protocol", "any"), LIMIT_PROTOCOLS)
    action = _choice(where, "action", _get(raw, "action", "reject"), LIMIT_ACTIONS)
    return [ConnectionLimit(source, count, proto, action)]


def _build_port_forward(where, raw, partial):
    _known_keys(where, raw, ("in_interface", "protocol", "port", "to_address", "to_port",
                             "source", "hairpin", "comment"))
    in_if = _interface(where, "in_interface", raw.get("in_interface"), required=True)
    proto = _choice(where, "protocol", _get(raw, "protocol", "tcp"), PF_PROTOCOLS)
    port = _ports(where, "port", raw.get("port"))
    to_addr = _host(where, "to_address", raw.get("to_address"), required=not partial)
    to_port = _ports(where, "to_port", raw.get("to_port"), required=False)
    source = _network(where, "source", raw.get("source"))
    hairpin = _bool(where, "hairpin", _get(raw, "hairpin", False))
    comment = _comment(where, raw.get("comment"))
    if hairpin and is_pattern(in_if):
        _fail(where, "hairpin", raw.get("hairpin"), "needs the addresses of one interface, "
              "but in_interface %s is a pattern: name the interface" % in_if)
    _same_family(where, [("to_address", to_addr), ("source", source)])
    if to_port is not None:
        (lo, hi), (tlo, thi) = parse_ports(port), parse_ports(to_port)
        if hi - lo != thi - tlo:
            _fail(where, "to_port", raw.get("to_port"),
                  "spans %d ports but port %s spans %d" % (thi - tlo + 1, port, hi - lo + 1))
        if hi != lo and tlo != lo:
            _fail(where, "to_port", raw.get("to_port"),
                  "a port range keeps its ports: omit to_port or set it equal to port")
        if to_port == port:
            to_port = None  # same port: stored as "unchanged"
    protos = ("tcp", "udp") if proto == "tcp_udp" else (proto,)
    return [PortForward(in_if, p, port, to_addr, to_port, source, hairpin, comment)
            for p in protos]


def _build_forward(where, raw, partial):
    _known_keys(where, raw, Forward._fields)
    in_if = _interface(where, "in_interface", raw.get("in_interface"))
    out_if = _interface(where, "out_interface", raw.get("out_interface"))
    source = _network(where, "source", raw.get("source"))
    dest = _network(where, "destination", raw.get("destination"))
    proto = _choice(where, "protocol", raw.get("protocol"), FORWARD_PROTOCOLS, required=False)
    port = _ports(where, "port", raw.get("port"), required=False)
    if port is not None and proto not in ("tcp", "udp"):
        _fail(where, "port", raw.get("port"), "needs protocol tcp or udp")
    states = raw.get("ct_state") or []
    if isinstance(states, str):
        states = [s.strip() for s in states.split(",")]
    if not isinstance(states, (list, tuple)):
        _fail(where, "ct_state", states, "must be a list")
    for state in states:
        _choice(where, "ct_state", state, CT_STATES)
    if len(set(states)) != len(states):
        _fail(where, "ct_state", states, "lists a state twice")
    action = _choice(where, "action", _get(raw, "action", "accept"), FORWARD_ACTIONS)
    comment = _comment(where, raw.get("comment"))
    _same_family(where, [("source", source), ("destination", dest)])
    fam = family_of(source, dest)
    if (proto == "icmp" and fam == 6) or (proto == "icmpv6" and fam == 4):
        _fail(where, "protocol", proto, "does not match the address family of the rule")
    ct = tuple(s for s in CT_STATES if s in states) or None
    return [Forward(in_if, out_if, source, dest, proto, port, ct, action, comment)]


def _build_helper(where, raw, partial):
    _known_keys(where, raw, Helper._fields)
    name = _choice(where, "helper", raw.get("helper"), sorted(HELPER_PROTOCOLS))
    proto = _choice(where, "protocol", _get(raw, "protocol", HELPER_PROTOCOLS[name][0]),
                    HELPER_PROTOCOLS[name])
    port = _ports(where, "port", raw.get("port"))
    return [Helper(name, proto, port)]


def _build_input(where, raw, partial):
    _known_keys(where, raw, Input._fields)
    in_if = _interface(where, "in_interface", raw.get("in_interface"), required=True)
    proto = _choice(where, "protocol", _get(raw, "protocol", "tcp"), INPUT_PROTOCOLS)
    if proto == "icmp":
        if not _absent(where, "port", raw.get("port"), False):
            _fail(where, "port", raw.get("port"), "icmp has no ports: omit the field")
        port = None
    else:
        port = _ports(where, "port", raw.get("port"))
    source = _network(where, "source", raw.get("source"))
    comment = _comment(where, raw.get("comment"))
    if proto == "icmp" and family_of(source) == 6:
        _fail(where, "source", source, "is IPv6, but icmp is IPv4 (ICMPv6 is always let in)")
    protos = ("tcp", "udp") if proto == "tcp_udp" else (proto,)
    return [Input(in_if, p, port, source, comment) for p in protos]


_BUILDERS = {
    "masquerade": lambda where, raw, partial: _build_nat("masquerade", where, raw, partial),
    "snat": lambda where, raw, partial: _build_nat("snat", where, raw, partial),
    "port_forwards": _build_port_forward,
    "forward": _build_forward,
    "helpers": _build_helper,
    "input": _build_input,
    "static_nat": _build_static_nat,
    "npt": _build_npt,
    "connection_limits": _build_connection_limit,
}


def _check_port_overlap(entries, wheres):
    """Two forwards on one interface and protocol must not claim the same port."""
    spans = sorted((pf.in_interface, pf.protocol) + parse_ports(pf.port) + (where,)
                   for pf, where in zip(entries, wheres))
    for a, b in zip(spans, spans[1:]):
        if a[:2] == b[:2] and b[2] <= a[3]:
            first, second = sorted((a, b), key=lambda span: span[4])  # name the later entry
            raise ConfigError(
                "%s.port: overlaps %s on %s/%s (got %s and %s)"
                % (second[4], first[4], a[0], a[1], echo(format_ports(*second[2:4])),
                   echo(format_ports(*first[2:4]))))


def build_config(config, partial=False):
    """Validate a ``config`` dict into {kind: tuple of entries} for the kinds it names.

    ``partial`` (state deleted) lets keyed entries carry only their identity fields.
    """
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise ConfigError("config: must be a dictionary (got %s)" % echo(config))
    unknown = sorted(set(config) - set(KINDS), key=str)
    if unknown:
        raise ConfigError("config: unknown kind %s (allowed: %s)"
                          % (", ".join(_name(k) for k in unknown), ", ".join(KINDS)))
    out, placed = {}, {}
    for kind in KINDS:
        if kind not in config or config[kind] is None:
            continue
        raw_list = config[kind]
        if not isinstance(raw_list, list):
            raise ConfigError("config.%s: must be a list (got %s)" % (kind, echo(raw_list)))
        entries, wheres, seen = [], [], {}
        for index, raw in enumerate(raw_list):
            where = "%s[%d]" % (kind, index)
            for entry in _BUILDERS[kind](where, raw, partial):
                key = identity(kind, entry)
                if key in seen:
                    raise ConfigError("%s: duplicate of %s (same %s: %s)" % (
                        where, seen[key], _identity_text(kind),
                        ", ".join(str(v) for v in key if v not in (None, False))))
                seen[key] = where
                entries.append(entry)
                wheres.append(where)
        if kind == "port_forwards":
            _check_port_overlap(entries, wheres)
        if kind == "static_nat":
            _check_network_overlap(entries, wheres, "internal", same_interface=False)
            _check_network_overlap(entries, wheres, "external", same_interface=True)
        if kind == "npt":
            _check_network_overlap(entries, wheres, "internal", same_interface=True)
            _check_network_overlap(entries, wheres, "external", same_interface=True)
        out[kind] = canonical(kind, entries)
        placed[kind] = list(zip(entries, wheres))
    _check_timeouts_per_source(placed)
    return out


def check_ruleset(ruleset):
    """The checks across entries, on a whole ruleset (the one a merged or replaced run
    leaves: the entries given and the ones on the host together). Errors name an entry by
    its identity, since it may not be one the user gave."""
    def where(kind, entry):
        return "%s (%s)" % (kind, ", ".join(
            "%s %s" % (name, value) for name, value in zip(
                _identity_text(kind).replace(" and ", ", ").split(", "),
                identity(kind, entry)) if value is not None))
    placed = dict((kind, [(e, where(kind, e)) for e in ruleset.get(kind, ())])
                  for kind in ("masquerade", "snat"))
    _check_timeouts_per_source(placed)
    for kind, fields in (("static_nat", (("internal", False), ("external", True))),
                         ("npt", (("internal", True), ("external", True)))):
        entries = list(ruleset.get(kind, ()))
        for field, same_interface in fields:
            _check_network_overlap(entries, [where(kind, e) for e in entries], field,
                                   same_interface)


def _check_network_overlap(entries, wheres, field, same_interface):
    """Two entries must not map overlapping ``field`` networks (on one interface, with
    ``same_interface``): one host would have two mappings."""
    seen = []
    for entry, where in zip(entries, wheres):
        value = getattr(entry, field)
        if value is None:
            continue
        net = ipaddress.ip_network(value)
        for other, other_where in seen:
            if (not same_interface or other.interface == entry.interface) and \
                    ipaddress.ip_network(getattr(other, field)).overlaps(net):
                raise ConfigError("%s.%s: overlaps %s.%s%s (got %s and %s)" % (
                    where, field, other_where, field,
                    " on %s" % entry.interface if same_interface else "",
                    echo(value), echo(getattr(other, field))))
        seen.append((entry, where))


def _check_timeouts_per_source(placed):
    """Per-rule timeouts apply to every connection from a source: all the masquerade and
    snat entries of one source must set the same ones."""
    seen = {}
    for kind in ("masquerade", "snat"):
        for entry, where in placed.get(kind, ()):
            if entry.source is None:
                continue
            first = seen.setdefault(entry.source, (entry.timeouts, where))
            if first[0] != entry.timeouts:
                raise ConfigError(
                    "%s.timeouts: differs from %s.timeouts for the same source %s; timeouts "
                    "apply to every connection from a source, so its entries must agree "
                    "(got %s and %s)" % (where, first[1], entry.source,
                                         echo(dict(entry.timeouts or ())),
                                         echo(dict(first[0] or ()))))


def interface_uses(config):
    """{interface: ["masquerade[0].out_interface", ...]}: where a config (as given, already
    validated) names each interface. A trailing ``+`` pattern names no one interface."""
    out = {}
    for kind in KINDS:
        entries = (config or {}).get(kind) or []
        for index, raw in enumerate(entries if isinstance(entries, list) else ()):
            for field in ("in_interface", "out_interface", "interface"):
                value = _number_as_text(raw.get(field)) if isinstance(raw, dict) else None
                if isinstance(value, str) and value and not value.endswith("+"):
                    out.setdefault(value, []).append("%s[%d].%s" % (kind, index, field))
    return out


def _identity_text(kind):
    return {
        "masquerade": "source and out_interface", "snat": "source and out_interface",
        "port_forwards": "in_interface, protocol and port", "helpers": "helper, protocol and port",
        "forward": "match and action", "input": "in_interface, protocol, port and source",
        "static_nat": "interface and external", "npt": "interface and internal",
        "connection_limits": "source and protocol",
    }[kind]


def _prefix_sort_key(entry):
    if entry.source is None:  # any source: matched last
        return (1, 0, 0, "", entry.out_interface)
    net = ipaddress.ip_network(entry.source)
    return (0, -net.prefixlen, net.version, str(net), entry.out_interface)


def _input_sort_key(entry):
    source = ipaddress.ip_network(entry.source) if entry.source else None
    return (entry.in_interface, entry.protocol, parse_ports(entry.port) if entry.port else (0, 0),
            (source.version, int(source.network_address), source.prefixlen) if source else (0,))


def _net_key(text):
    net = ipaddress.ip_network(text) if text else None
    return (net.version, int(net.network_address), net.prefixlen) if net else (0, 0, 0)


def canonical(kind, entries):
    """The one order a kind is kept in, so that equal rule sets compare equal.

    NAT sources go most specific first (first match wins); forwards keep the user's
    order except that, in a run of family-specific rules, IPv4 ones come first (they
    never meet the same packet, and iptables/ip6tables keep them apart).
    """
    if kind in ("masquerade", "snat"):
        return tuple(sorted(entries, key=_prefix_sort_key))
    if kind == "port_forwards":
        return tuple(sorted(entries, key=lambda pf: (pf.in_interface, pf.protocol)
                            + parse_ports(pf.port)))
    if kind == "helpers":
        return tuple(sorted(entries, key=lambda h: (h.helper, h.protocol, parse_ports(h.port))))
    if kind == "input":
        return tuple(sorted(entries, key=_input_sort_key))
    if kind in ("static_nat", "npt"):
        return tuple(sorted(entries, key=lambda e: (e.interface, _net_key(e.external
                                                                          or e.internal))))
    if kind == "connection_limits":
        return tuple(sorted(entries, key=lambda e: (_net_key(e.source), e.protocol)))
    out, run = [], []
    for entry in list(entries) + [None]:
        fam = entry and family_of(entry.source, entry.destination)
        if fam:
            run.append(entry)
            continue
        out.extend(sorted(run, key=lambda e: family_of(e.source, e.destination)))
        run = []
        if entry is not None:
            out.append(entry)
    return tuple(out)


def empty_ruleset():
    return dict((kind, ()) for kind in KINDS)


def is_empty(ruleset):
    return not any(ruleset.get(kind) for kind in KINDS)


# ---------------------------------------------------------------- back to plain dicts

def _drop_none(d):
    return dict((k, v) for k, v in d.items() if v is not None and v is not False)


def entry_to_dict(kind, entry):
    d = entry._asdict()
    if kind == "port_forwards" and digits(d["port"]):
        d["port"] = int(d["port"])
    if kind == "port_forwards" and d["to_port"] and digits(d["to_port"]):
        d["to_port"] = int(d["to_port"])
    if kind == "forward":
        d["ct_state"] = list(entry.ct_state) if entry.ct_state else None
        if d["port"] and digits(d["port"]):
            d["port"] = int(d["port"])
    if kind == "helpers" and digits(d["port"]):
        d["port"] = int(d["port"])
    if kind == "input" and d["port"] and digits(d["port"]):
        d["port"] = int(d["port"])
    if kind in ("masquerade", "snat"):
        d["timeouts"] = dict(entry.timeouts) if entry.timeouts else None
    return _drop_none(d)


def ruleset_to_dict(ruleset):
    """{kind: [dict]} for return values; tcp+udp twins of a forward fold into tcp_udp."""
    out = {}
    for kind in KINDS:
        entries = [entry_to_dict(kind, e) for e in ruleset.get(kind, ())]
        if kind in ("port_forwards", "input"):
            entries = _fold_tcp_udp(entries)
        out[kind] = entries
    return out


def _fold_tcp_udp(entries):
    folded, index = [], {}
    for d in entries:
        rest = tuple(sorted((k, v) for k, v in d.items() if k != "protocol"))
        if d["protocol"] == "udp" and rest in index:
            folded[index.pop(rest)]["protocol"] = "tcp_udp"
            continue
        if d["protocol"] == "tcp":
            index[rest] = len(folded)
        folded.append(dict(d))
    return folded
