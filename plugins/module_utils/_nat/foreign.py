# -*- coding: utf-8 -*-
# Copyright: contributors to the ipmasq.gateway collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE to the ipmasq.gateway collection. Not a public API: it may change at any time.
"""Other people's rules, read permissively: iptables arguments and nft statements as FRules.

Reading our own chains (``iptables.py``, ``nft.py``) is strict and fast. The rules of
Docker, ufw, firewalld or an admin's hand are read here instead, by ``state: parsed``
(``importer.py``), by the check of foreign forward filters (``neighbours.py``) and by
adoption (``adopt.py``). Nothing here raises on a rule it does not know: what it cannot
read lands in ``FRule.unknown``, and the callers decide what that means.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import shlex
from collections import namedtuple

from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import model as m

# family: 4, 6 or None (both); saddr/daddr/dports: tuples of values as written (a set
# gives several); ct_state: frozenset or None, any of which matches (iptables' --ctstate
# may list dnat and snat there); ct_dnat: nft's "ct status dnat"; unknown: what was not understood, as text;
# verdict: accept, drop, reject, return, jump, goto, masquerade, snat, dnat, redirect,
# helper, or the lower-cased name of another target (log, mark...), None for none;
# target: the chain of a jump or goto; args: ((key, value), ...) of a NAT target: to,
# ports, random, random_fully, persistent, helper.
FRule = namedtuple(
    "FRule",
    "family iif iif_neg oif oif_neg saddr saddr_neg daddr daddr_neg proto proto_neg "
    "dports dports_neg ct_state ct_state_neg ct_dnat unknown verdict target args comment")
FRule.__new__.__defaults__ = (None, None, False, None, False, (), False, (), False, None,
                              False, (), False, None, False, False, (), None, None, (), None)


class CutShort(ValueError):
    """A rule that ends in the middle of an option: the text was cut, not just unusual."""


# ---------------------------------------------------------------- other managers

# Chains that other tools own, by name prefix (iptables, and iptables-nft tables in nft).
MANAGER_CHAINS = (
    ("DOCKER", "Docker"), ("KUBE-", "kube-proxy"), ("CNI-", "CNI"), ("cali-", "Calico"),
    ("FLANNEL", "flannel"), ("WEAVE", "Weave"), ("ufw-", "ufw"), ("ufw6-", "ufw"),
    ("f2b-", "fail2ban"), ("fail2ban-", "fail2ban"), ("ts-", "Tailscale"),
    ("LIBVIRT_", "libvirt"), ("NETAVARK", "podman"), ("zone_", "OpenWrt fw3"),
    ("delegate_", "OpenWrt fw3"), ("forwarding_", "OpenWrt fw3"),
    # firewalld's iptables backend
    ("FORWARD_", "firewalld"), ("INPUT_", "firewalld"), ("OUTPUT_", "firewalld"),
    ("PREROUTING_", "firewalld"), ("POSTROUTING_", "firewalld"), ("IN_", "firewalld"),
    ("FWDI_", "firewalld"), ("FWDO_", "firewalld"), ("FWD_", "firewalld"),
    ("PRE_", "firewalld"), ("POST_", "firewalld"),
)
# nft tables that other tools own, by name (any family).
MANAGER_TABLES = {
    "firewalld": "firewalld", "fw4": "OpenWrt fw4", "docker-bridges": "Docker",
    "lxd": "LXD", "incus": "Incus", "kube-proxy": "kube-proxy", "f2b-table": "fail2ban",
    "netavark": "podman", "libvirt_network": "libvirt", "tailscale": "Tailscale",
    "crowdsec": "CrowdSec", "crowdsec6": "CrowdSec",
}
# Bridges that container and VM managers make, by name: their rules name nothing else.
MANAGER_INTERFACES = (
    (re.compile(r"^(docker0|docker_gwbridge|br-[0-9a-f]{12})\Z"), "Docker"),
    (re.compile(r"^lxcbr[0-9]+\Z"), "lxc-net"), (re.compile(r"^lxdbr[0-9]+\Z"), "LXD"),
    (re.compile(r"^virbr[0-9]+\Z"), "libvirt"), (re.compile(r"^tailscale[0-9]+\Z"), "Tailscale"),
    (re.compile(r"^(cni[0-9]+|flannel\.[0-9]+|cali[0-9a-f]+|weave)\Z"), "Kubernetes"),
    (re.compile(r"^podman[0-9]+\Z"), "podman"),
)
OURS_TABLE = ("inet", "ipmasq")
OURS_CHAIN = re.compile(r"^IPMASQ-")


def chain_manager(name):
    """The tool that owns an iptables chain of this name, or None."""
    for prefix, manager in MANAGER_CHAINS:
        if name.startswith(prefix):
            return manager
    return None


def table_manager(name):
    return MANAGER_TABLES.get(name)


def interface_manager(name):
    for pattern, manager in MANAGER_INTERFACES:
        if name and pattern.match(name):
            return manager
    return None


# ---------------------------------------------------------------- ports by name

# The services hand-made rules name most (IANA); a port given by name the table lacks
# stays unread rather than resolved through the host's /etc/services, whose answer would
# depend on the machine.
SERVICES = {
    "ftp-data": 20, "ftp": 21, "ssh": 22, "telnet": 23, "smtp": 25, "domain": 53, "dns": 53,
    "bootps": 67, "bootpc": 68, "tftp": 69, "http": 80, "www": 80, "kerberos": 88,
    "pop3": 110, "sunrpc": 111, "ntp": 123, "netbios-ns": 137, "imap": 143, "imap2": 143,
    "snmp": 161, "ldap": 389, "https": 443, "microsoft-ds": 445, "isakmp": 500,
    "submission": 587, "ldaps": 636, "imaps": 993, "pop3s": 995, "openvpn": 1194,
    "pptp": 1723, "mysql": 3306, "ms-wbt-server": 3389, "rdp": 3389, "sip": 5060,
    "postgresql": 5432, "http-alt": 8080, "webcache": 8080,
}


def port_number(text):
    """A port as digits, or None when ``text`` is neither digits nor a known service."""
    text = str(text)
    if m.digits(text):
        return text
    number = SERVICES.get(text.lower())
    return None if number is None else str(number)


def ports_text(text):
    """"80", "ssh", "1000:2000" or "1000-2000" -> "80", "22", "1000-2000"; None if unknown."""
    text = str(text)
    for sep in (":", "-"):
        if sep in text:
            lo, hi = text.split(sep, 1)
            lo, hi = port_number(lo or "0"), port_number(hi or "65535")
            return None if lo is None or hi is None else "%s-%s" % (lo, hi)
    return port_number(text)


# ---------------------------------------------------------------- iptables

# Target extensions (everything else after -j names a chain).
IPT_TARGETS = frozenset((
    "ACCEPT", "DROP", "REJECT", "RETURN", "QUEUE", "NFQUEUE", "MASQUERADE", "SNAT", "DNAT",
    "REDIRECT", "NETMAP", "LOG", "NFLOG", "ULOG", "MARK", "CONNMARK", "CT", "NOTRACK",
    "TPROXY", "TCPMSS", "CHECKSUM", "CLASSIFY", "DSCP", "TOS", "TTL", "HL", "TRACE", "AUDIT",
    "SECMARK", "CONNSECMARK", "SET", "IDLETIMER", "LED", "RATEEST", "SYNPROXY", "TEE",
    "HMARK", "CLUSTERIP", "ECN", "TCPOPTSTRIP", "NFTRACE"))
_IPT_VERDICTS = {"CT": "helper"}

# option -> (field, number of values)
_IPT_OPTIONS = {
    "-s": ("saddr", 1), "--source": ("saddr", 1), "--src": ("saddr", 1),
    "-d": ("daddr", 1), "--destination": ("daddr", 1), "--dst": ("daddr", 1),
    "-i": ("iif", 1), "--in-interface": ("iif", 1),
    "-o": ("oif", 1), "--out-interface": ("oif", 1),
    "-p": ("proto", 1), "--protocol": ("proto", 1),
    "-m": ("match", 1), "--match": ("match", 1),
    "--dport": ("dports", 1), "--destination-port": ("dports", 1),
    "--dports": ("dports", 1), "--destination-ports": ("dports", 1),
    "--ctstate": ("ct_state", 1), "--state": ("ct_state", 1),
    "--comment": ("comment", 1),
    "-j": ("jump", 1), "--jump": ("jump", 1), "-g": ("goto", 1), "--goto": ("goto", 1),
    "--to-destination": ("to", 1), "--to-source": ("to", 1), "--to-ports": ("ports", 1),
    "--random": ("random", 0), "--random-fully": ("random_fully", 0),
    "--persistent": ("persistent", 0), "--helper": ("helper", 1),
    "--reject-with": ("ignore", 1), "-c": ("ignore", 2), "--set-counters": ("ignore", 2),
}


def _ipt_value_option(token, target):
    """The field an abbreviated NAT option stands for (``--to`` is ``--to-destination`` for
    DNAT), or None."""
    if not token.startswith("--to") or len(token) < 4:
        return None
    for full in ("--to-destination", "--to-source", "--to-ports"):
        if full.startswith(token):
            field = "ports" if full == "--to-ports" else "to"
            if target in ("REDIRECT", "MASQUERADE") and field == "to" and token == "--to":
                return "ports"
            return field
    return None


def parse_iptables(args):
    """iptables arguments after ``-A CHAIN`` -> FRule; raises CutShort for an option at the
    end of the rule without its value(s)."""
    f = {"unknown": [], "args": [], "dports": ()}
    neg, i, target = False, 0, None
    while i < len(args):
        token = args[i]
        i += 1
        if token == "!":
            neg = True
            continue
        spec = _IPT_OPTIONS.get(token)
        if spec is None and token.startswith("--to"):
            field = _ipt_value_option(token, target)
            spec = (field, 1) if field else None
        if spec is None:
            values = []
            while i < len(args) and not args[i].startswith("-") and args[i] != "!":
                values.append(args[i])
                i += 1
            f["unknown"].append(" ".join((["!"] if neg else []) + [token] + values))
            neg = False
            continue
        field, count = spec
        values = args[i:i + count]
        if len(values) < count:
            raise CutShort("%s has no value: the rule is cut short" % token)
        i += count
        value = values[0] if values else None
        if field in ("saddr", "daddr"):
            f[field], f[field + "_neg"] = tuple(value.split(",")), neg
        elif field in ("iif", "oif"):
            f[field], f[field + "_neg"] = value, neg
        elif field == "proto":
            value = value.lower()
            f["proto"] = {"ipv6-icmp": "icmpv6", "icmp6": "icmpv6", "6": "tcp",
                          "17": "udp", "all": None}.get(value, value)
            f["proto_neg"] = neg
        elif field == "match":
            pass  # a match module says nothing itself: its options do
        elif field == "dports":
            f["dports"] = f["dports"] + tuple(value.split(","))
            f["dports_neg"] = neg
        elif field == "ct_state":
            # one list, any of which matches: DNAT and SNAT stay in it (not ct_dnat, which
            # nft's "ct status dnat" sets and which must hold besides the others)
            f["ct_state"], f["ct_state_neg"] = frozenset(value.lower().split(",")), neg
        elif field == "comment":
            f["comment"] = value.replace("\\'", "'")
        elif field in ("jump", "goto"):
            target = value
            if value in IPT_TARGETS:
                f["verdict"] = _IPT_VERDICTS.get(value, value.lower())
            else:
                f["verdict"], f["target"] = field, value
        elif field in ("to", "ports", "helper"):
            f["args"].append((field, value))
        elif field in ("random", "random_fully", "persistent"):
            f["args"].append((field, True))
        if neg and field not in ("saddr", "daddr", "iif", "oif", "proto", "dports",
                                 "ct_state"):
            f["unknown"].append("! " + token)
        neg = False
    f["unknown"], f["args"] = tuple(f["unknown"]), tuple(f["args"])
    return FRule(**f)


def split_words(line):
    """A line into words the way a shell would; shlex only when quoting is involved."""
    if any(c in line for c in "\"'\\"):
        return shlex.split(line, comments=False)
    return line.split()


# ---------------------------------------------------------------- nft text

_NFT_FAMILIES = ("ip", "ip6", "inet", "arp", "bridge", "netdev")
# Words that start a statement in a rule: an unknown statement is skipped up to the next one.
_NFT_STARTS = frozenset((
    "iifname", "oifname", "iif", "oif", "ip", "ip6", "meta", "tcp", "udp", "th", "sctp",
    "udplite", "dccp", "ct", "counter", "comment", "log", "accept", "drop", "reject", "return",
    "jump", "goto", "masquerade", "snat", "dnat", "redirect", "notrack", "queue", "limit",
    "fib", "icmp", "icmpv6", "mark", "ether", "vlan", "socket", "tproxy", "quota", "flow",
    "numgen", "jhash", "rt", "fwd", "dup", "synproxy", "osf", "ipsec", "exthdr", "tcpopt",
    "frag", "hbh", "rt0", "mh", "ah", "esp", "comp", "arp", "set", "add", "update",
    "delete"))
_NFT_OPS = ("==", "!=", "eq", "ne", "<", ">", "<=", ">=", "lt", "gt", "le", "ge")
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{},;]|[^\s{},;"]+')


def nft_tokens(text):
    """A statement's words: quoted strings stay one word, braces and commas stand alone."""
    return _TOKEN.findall(text)


def _unquote(word):
    return word[1:-1] if len(word) >= 2 and word[0] == word[-1] == '"' else word


class _NftReader:
    """One rule's tokens, walked left to right into an FRule."""

    def __init__(self, tokens, defines, family):
        self.tokens, self.defines, self.i = list(tokens), defines or {}, 0
        self.f = {"unknown": [], "args": [], "family": family}

    def peek(self, offset=0):
        index = self.i + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def take(self):
        word = self.peek()
        if word is None:
            raise CutShort("the statement ends early: %s" % " ".join(self.tokens))
        self.i += 1
        return word

    def value(self):
        """(negated, [values]) of a match: one word, a ``{ set }`` or a ``$define``."""
        neg = False
        if self.peek() in _NFT_OPS:
            neg = self.take() in ("!=", "ne")
        word = self.take()
        if word == "{":
            items, current = [], []
            while True:
                word = self.take()
                if word in (",", "}"):
                    if current:
                        items.append(" ".join(current))
                    current = []
                    if word == "}":
                        break
                else:
                    current.append(word)
            return neg, [self._expand(v) for v in items]
        return neg, [self._expand(word)]

    def _expand(self, word):
        word = _unquote(word)
        if word.startswith("$") and word[1:] in self.defines:
            return self.defines[word[1:]]
        return word

    def flat(self, values):
        out = []
        for value in values:
            out.extend(value if isinstance(value, list) else [value])
        return out

    def skip_unknown(self, first):
        """Record a statement this reader does not know, up to the next one it does (a set
        of values in braces counts as one word)."""
        words = [first]
        while self.peek() is not None and self.peek() not in _NFT_STARTS:
            word = self.take()
            if word == "{":
                depth, inner = 1, ["{"]
                while depth and self.peek() is not None:
                    word = self.take()
                    depth += {"{": 1, "}": -1}.get(word, 0)
                    inner.append(word)
                word = " ".join(inner).replace(" ,", ",")
            words.append(word)
        self.f["unknown"].append(" ".join(words))

    def read(self):
        f = self.f
        while self.peek() is not None:
            word = self.take()
            if word in (";", ","):
                continue
            handler = getattr(self, "_w_" + word.replace("-", "_"), None)
            if handler is None:
                self.skip_unknown(word)
            else:
                handler(word)
        f["unknown"], f["args"] = tuple(f["unknown"]), tuple(f["args"])
        return FRule(**f)

    # -- matches
    def _interface(self, word):
        neg, values = self.value()
        values = self.flat(values)
        field = "iif" if word.startswith("i") else "oif"
        if len(values) != 1 or values[0].startswith("@"):
            self.f["unknown"].append("%s %s" % (word, " ".join(values)))
            return
        self.f[field], self.f[field + "_neg"] = values[0], neg

    _w_iifname = _w_oifname = _w_iif = _w_oif = _interface

    def _ip(self, word):
        field = self.take()
        if field in ("saddr", "daddr"):
            neg, values = self.value()
            values = self.flat(values)
            if any(v.startswith("@") for v in values):
                self.f["unknown"].append("%s %s %s" % (word, field, " ".join(values)))
            else:
                self.f[field], self.f[field + "_neg"] = tuple(values), neg
            self.f["family"] = 4 if word == "ip" else 6
        elif field in ("protocol", "nexthdr"):
            neg, values = self.value()
            self._proto(neg, self.flat(values), word + " " + field)
        elif field == "version" and self.peek() in ("4", "6"):
            self.f["family"] = int(self.take())
        else:
            self.skip_unknown("%s %s" % (word, field))

    _w_ip = _w_ip6 = _ip

    def _proto(self, neg, values, what):
        if len(values) != 1:
            self.f["unknown"].append("%s %s" % (what, " ".join(values)))
            return
        value = values[0]
        self.f["proto"] = {"ipv6-icmp": "icmpv6", "icmp6": "icmpv6"}.get(value, value)
        self.f["proto_neg"] = neg

    def _w_meta(self, word):
        key = self.take()
        if key in ("iifname", "oifname", "iif", "oif"):
            return self._interface(key)
        if key in ("l4proto", "protocol"):
            neg, values = self.value()
            return self._proto(neg, self.flat(values), "meta " + key)
        if key == "nfproto":
            neg, values = self.value()
            values = self.flat(values)
            if not neg and values in (["ipv4"], ["ipv6"]):
                self.f["family"] = 4 if values == ["ipv4"] else 6
                return None
            self.f["unknown"].append("meta nfproto %s" % " ".join(values))
            return None
        return self.skip_unknown("meta " + key)

    def _l4(self, word):
        key = self.take()
        if key != "dport":
            return self.skip_unknown("%s %s" % (word, key))
        neg, values = self.value()
        self.f["dports"], self.f["dports_neg"] = tuple(self.flat(values)), neg
        if word != "th":
            self.f["proto"] = word
        return None

    _w_tcp = _w_udp = _w_th = _w_sctp = _w_udplite = _w_dccp = _l4

    def _w_ct(self, word):
        key = self.take()
        if key == "state":
            if self.peek() == "vmap":
                self.take()
                return self.skip_unknown("ct state vmap")
            neg, values = self.value()
            states = set()
            for value in self.flat(values):
                states.update(s for s in value.split(",") if s)
            self.f["ct_state"], self.f["ct_state_neg"] = frozenset(states), neg
        elif key == "status":
            neg, values = self.value()
            if not neg and self.flat(values) == ["dnat"]:
                self.f["ct_dnat"] = True
            else:
                self.f["unknown"].append("ct status %s" % " ".join(self.flat(values)))
        elif key == "helper" and self.peek() == "set":
            self.take()
            self.f["verdict"] = "helper"
            self.f["args"].append(("helper", _unquote(self.take())))
        else:
            self.skip_unknown("ct " + key)
        return None

    def _w_counter(self, word):
        if self.peek() == "packets":
            self.i = min(self.i + 4, len(self.tokens))  # packets N bytes M
        elif self.peek() == "name":
            self.take()
            self.take()

    def _w_comment(self, word):
        self.f["comment"] = _unquote(self.take())

    def _w_log(self, word):
        while self.peek() in ("prefix", "level", "group", "snaplen", "queue-threshold",
                              "flags"):
            self.take()
            self.take()
        self.f["unknown"].append("log")

    # -- verdicts
    def _verdict(self, word):
        self.f["verdict"] = word

    _w_accept = _w_drop = _w_return = _verdict

    def _w_reject(self, word):
        self.f["verdict"] = "reject"
        if self.peek() == "with":
            self.take()
            kind = self.take()
            if kind == "tcp":
                self.take()  # reset
            else:
                while self.peek() is not None and self.peek() not in _NFT_STARTS:
                    self.take()

    def _jump(self, word):
        self.f["verdict"], self.f["target"] = word, _unquote(self.take())

    _w_jump = _w_goto = _jump

    def _nat_options(self):
        while self.peek() in ("random", "fully-random", "persistent", ","):
            option = self.take()
            if option != ",":
                self.f["args"].append(({"fully-random": "random_fully"}.get(option, option),
                                       True))

    def _w_masquerade(self, word):
        self.f["verdict"] = "masquerade"
        if self.peek() == "to":
            self.take()
            self.f["args"].append(("ports", self.take().lstrip(":")))
        self._nat_options()

    def _nat(self, word):
        self.f["verdict"] = word
        if self.peek() in ("ip", "ip6"):
            self.f["family"] = 4 if self.take() == "ip" else 6
        if self.peek() == "to":
            self.take()
        target = self.take()
        if target in ("iifname", "ip", "ip6", "meta", "tcp", "udp", "th"):
            self.f["unknown"].append("%s to a map" % word)
            while self.peek() is not None and self.peek() not in ("comment", "counter"):
                self.take()
            return
        self.f["args"].append(("to", self._expand(target)))
        self._nat_options()

    _w_snat = _w_dnat = _nat

    def _w_redirect(self, word):
        self.f["verdict"] = "redirect"
        if self.peek() == "to":
            self.take()
            self.f["args"].append(("ports", self.take().lstrip(":")))
        self._nat_options()

    def _w_vmap(self, word):
        self.skip_unknown("vmap")


def parse_nft(tokens, defines=None, family=None):
    """The words of one nft rule -> FRule. ``family`` is the table's (4, 6 or None);
    ``defines`` the values of ``define NAME = VALUE`` seen so far (a list for a set)."""
    return _NftReader(tokens, defines, family).read()


# ---------------------------------------------------------------- nft -j

def _json_value(value):
    if isinstance(value, dict):
        if "prefix" in value:
            return ["%s/%s" % (value["prefix"]["addr"], value["prefix"]["len"])]
        if "range" in value:
            return ["%s-%s" % tuple(value["range"])]
        if "set" in value:
            out = []
            for item in value["set"]:
                out.extend(_json_value(item))
            return out
        raise ValueError(value)
    if isinstance(value, list):
        return [",".join(str(v) for v in value)]
    return [str(value)]


def parse_nft_json(expr, family=None):
    """One rule's ``expr`` list from ``nft -j`` -> FRule."""
    f = {"unknown": [], "args": [], "family": family}
    for stmt in expr if isinstance(expr, list) else ():
        if not isinstance(stmt, dict) or len(stmt) != 1:
            f["unknown"].append(str(stmt)[:80])
            continue
        (key, body), = stmt.items()
        try:
            if key == "match":
                _json_match(f, body)
            elif key in ("accept", "drop", "return"):
                f["verdict"] = key
            elif key == "reject":
                f["verdict"] = "reject"
            elif key in ("jump", "goto"):
                f["verdict"], f["target"] = key, body["target"]
            elif key in ("masquerade", "snat", "dnat", "redirect"):
                f["verdict"] = key
            elif key == "xt" and isinstance(body, dict) and body.get("type") == "target" \
                    and body.get("name") in ("DROP", "REJECT", "ACCEPT"):
                f["verdict"] = body["name"].lower()
            elif key in ("counter", "log"):
                continue
            else:
                f["unknown"].append(_json_word(key, body))
        except (KeyError, TypeError, ValueError, AttributeError):
            f["unknown"].append(_json_word(key, body))
    f["unknown"], f["args"] = tuple(f["unknown"]), tuple(f["args"])
    return FRule(**f)


def _json_word(key, body):
    if key == "xt" and isinstance(body, dict):
        return "xt %s %s" % (body.get("type"), body.get("name"))
    return key


def _json_match(f, body):
    left, neg = body["left"], body["op"] == "!="
    if body["op"] not in ("==", "!=", "in"):
        raise ValueError(body["op"])
    values = _json_value(body["right"])
    if "meta" in left:
        key = left["meta"]["key"]
        if key in ("iifname", "oifname", "iif", "oif") and len(values) == 1:
            field = "iif" if key.startswith("i") else "oif"
            f[field], f[field + "_neg"] = values[0], neg
        elif key == "l4proto" and len(values) == 1:
            f["proto"], f["proto_neg"] = {"ipv6-icmp": "icmpv6"}.get(values[0], values[0]), neg
        elif key == "nfproto" and not neg and values in (["ipv4"], ["ipv6"]):
            f["family"] = 4 if values == ["ipv4"] else 6
        else:
            raise ValueError(key)
    elif "payload" in left:
        protocol, field = left["payload"].get("protocol"), left["payload"]["field"]
        if protocol in ("ip", "ip6") and field in ("saddr", "daddr"):
            if any(v.startswith("@") for v in values):
                raise ValueError(values)
            f[field], f[field + "_neg"] = tuple(values), neg
            f["family"] = 4 if protocol == "ip" else 6
        elif field == "dport" and protocol in ("tcp", "udp", "th", "sctp"):
            f["dports"], f["dports_neg"] = tuple(values), neg
            if protocol != "th":
                f["proto"] = protocol
        elif protocol in ("ip", "ip6") and field in ("protocol", "nexthdr") and len(values) == 1:
            f["proto"], f["proto_neg"] = values[0], neg
        else:
            raise ValueError(field)
    elif "ct" in left and left["ct"]["key"] == "state":
        states = set()
        for value in values:
            states.update(value.split(","))
        f["ct_state"], f["ct_state_neg"] = frozenset(states), neg
    elif "ct" in left and left["ct"]["key"] == "status" and values == ["dnat"] and not neg:
        f["ct_dnat"] = True
    else:
        raise ValueError(left)


def arg(rule, key, default=None):
    """A NAT target argument of an FRule."""
    for name, value in rule.args:
        if name == key:
            return value
    return default
