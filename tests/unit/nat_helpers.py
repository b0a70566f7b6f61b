"""Helpers and hypothesis strategies shared by the unit tests of the nat_rules logic."""
import contextlib
import ipaddress
import json
import shlex
import string
from pathlib import Path

from hypothesis import strategies as st

from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import (
    iptables, model, nft, plan, rules)

CODECS = {"nftables": nft, "iptables": iptables}
FIXTURES = Path(__file__).resolve().parent / "fixtures"
# Debian releases whose nft/iptables output was captured: bookworm's captures lie in FIXTURES,
# each other release's in FIXTURES/<release> (capture.sh --release).
CAPTURE_RELEASES = ("bookworm", "trixie")


# ---------------------------------------------------------------- the pure pipeline

def ruleset_of(config):
    """A whole ruleset (every kind present) from a config dict, validated."""
    ruleset = model.empty_ruleset()
    ruleset.update(model.build_config(config))
    return ruleset


def state_of(codec, config, addresses=None):
    """The backend State that ``render_full`` writes for a config dict (hairpin sets holding
    ``addresses``, {interface: [address]})."""
    return plan.want_state(codec, ruleset_of(config), addresses)


def reparse(codec, state):
    """What a host holds after loading ``render_full(state)``, read back as a State."""
    return codec.parse(codec.render_full(state))


def kinds_differ(got, want):
    """{kind: (only in got, only in want)} for a readable assertion message."""
    return dict((k, (set(got.get(k, ())) - set(want.get(k, ())),
                     set(want.get(k, ())) - set(got.get(k, ()))))
                for k in model.KINDS if tuple(got.get(k, ())) != tuple(want.get(k, ())))


# ---------------------------------------------------------------- module arguments, per ansible-core line

try:
    from ansible.module_utils.testing import patch_module_args as _patch_module_args
except ImportError:  # ansible-core 2.18: the module reads basic._ANSIBLE_ARGS
    _patch_module_args = None


@contextlib.contextmanager
def patch_module_args(args):
    """Module arguments for AnsibleModule on every ansible-core line the collection supports.

    Since 2.22 a module echoes its arguments (``invocation``) only when asked, as the
    controller does with INJECT_INVOCATION; older lines always do, and reject the option.
    """
    from ansible.module_utils.common.parameters import PASS_VARS
    if "inject_invocation" in PASS_VARS:
        args = dict(args, _ansible_inject_invocation=True)
    if _patch_module_args is not None:
        with _patch_module_args(args):
            yield
        return
    from ansible.module_utils import basic
    saved = basic._ANSIBLE_ARGS
    basic._ANSIBLE_ARGS = json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode("utf-8")
    try:
        yield
    finally:
        basic._ANSIBLE_ARGS = saved


# ---------------------------------------------------------------- fixtures on disk

# The captures tests/unit/fixtures/capture.sh makes: <name>.<kind> for each <name>.config.json.
CAPTURE_KINDS = ("nft.json", "nft.txt", "ruleset.json", "ruleset.txt", "iptables-save",
                 "ip6tables-save")
CAPTURED = sorted(p.name[:-len(".config.json")] for p in FIXTURES.glob("*.config.json"))


def fixture_text(name, release="bookworm"):
    folder = FIXTURES if release == "bookworm" else FIXTURES / release
    return (folder / name).read_text(encoding="utf-8")


def fixture_config(name):
    return json.loads(fixture_text("%s.config.json" % name))


def fixture_addresses(name):
    """{interface: [address]} the capture put in the hairpin sets ({} without that file)."""
    path = FIXTURES / ("%s.addresses.json" % name)
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


# ---------------------------------------------------------------- strategies
#
# Strategies are built once, at import: building them inside a composite on every draw
# costs more than the tests themselves.

IFNAMES = ("eth0", "eth1", "ppp0", "wan0", "eth0.10", "br-lan", "wg_0", "veth1-2")
_IF_FIRST = string.ascii_letters + string.digits + "_"
_ifnames = st.one_of(
    st.sampled_from(IFNAMES),
    st.builds(lambda first, rest: first + rest, st.sampled_from(_IF_FIRST),
              st.text(_IF_FIRST + ".-", max_size=model.IFNAME_MAX - 1)))
# and patterns: every interface whose name starts so ("ppp+", nft "ppp*")
ifnames = st.one_of(_ifnames, st.sampled_from(("ppp+", "wg+", "eth0.+")),
                    _ifnames.filter(lambda n: len(n) < model.IFNAME_MAX).map(lambda n: n + "+"))

# Every character the model takes: no double quote or backslash, no control or line
# separator characters (the model refuses those).
COMMENT_ALPHABET = st.characters(
    min_codepoint=32, max_codepoint=0x2FF, blacklist_characters="\"\\",
    blacklist_categories=("Cc", "Cs", "Zl", "Zp"))
comments = st.one_of(
    st.none(),
    st.sampled_from(["web", "office LAN", "büro", "a-b_c.d", "x:y/z", "#1", "$HOME;(x)",
                     "Bob's", "{a} }", "it's {x}"]),
    st.text(COMMENT_ALPHABET, min_size=1, max_size=40).filter(
        lambda s: len(s.encode("utf-8")) <= model.COMMENT_MAX))


def _unicast(addr):
    return not (addr.is_multicast or addr.is_unspecified or addr.is_loopback
                or addr.is_link_local or addr == ipaddress.IPv4Address("255.255.255.255"))


hosts4 = st.integers(1, 2 ** 32 - 2).map(ipaddress.IPv4Address).filter(_unicast).map(str)
hosts6 = st.integers(1, 2 ** 128 - 1).map(ipaddress.IPv6Address).filter(_unicast).map(str)
HOSTS = {4: hosts4, 6: hosts6}
# Prefix lengths: any, and often the ones a renderer may treat specially: the host routes
# (/32, /128), IPv6 /32 (once rendered as an IPv4 host route) and the byte boundaries.
_PREFIXES = dict((bits, st.one_of(st.integers(1, bits), st.sampled_from(
    [n for n in (8, 16, 24, 32, 48, 56, 64, 96, 112, 127, 128) if n <= bits])))
    for bits in (32, 128))
NETS = dict((version, st.tuples(st.integers(0, 2 ** bits - 1), _PREFIXES[bits]).map(
    lambda t, version=version: ipaddress.ip_network(
        (ipaddress.ip_address(t[0]) if version == 4 else ipaddress.IPv6Address(t[0]), t[1]),
        strict=False).with_prefixlen))
    for version, bits in ((4, 32), (6, 128)))
families = st.sampled_from((4, 6))

_lo_ports = st.integers(1, 65535)
_range_lengths = st.integers(0, 300)
_maybe_to_port = st.one_of(st.none(), st.just("same"), st.integers(1, 65535))


@st.composite
def port_specs(draw):
    """(port, to_port) as a user writes them: ints or strings; a range keeps its ports."""
    lo = draw(_lo_ports)
    if draw(st.booleans()):
        hi = min(65535, lo + draw(_range_lengths))
        text = "%d-%d" % (lo, hi) if hi != lo else str(lo)
        return text, (text if draw(st.booleans()) else None)
    to_port = draw(_maybe_to_port)
    port = str(lo) if draw(st.booleans()) else lo
    return port, (lo if to_port == "same" else to_port)


_snat_pools = families.flatmap(lambda fam: st.tuples(HOSTS[fam], HOSTS[fam]))


_timeout_dicts = st.dictionaries(st.sampled_from(sorted(model.TIMEOUT_KEYS)),
                                 st.integers(1, model.TIMEOUT_MAX), min_size=1, max_size=4)


@st.composite
def nat_entries(draw, kind, timeouts=True):
    fam = draw(families)
    entry = {"out_interface": draw(ifnames)}
    if draw(st.booleans()):
        entry["source"] = draw(NETS[fam])
    comment = draw(comments)
    if comment:
        entry["comment"] = comment
    if kind == "snat":
        lo = draw(HOSTS[fam])
        if draw(st.booleans()):
            entry["to_address"] = lo
        else:
            a, b = sorted((ipaddress.ip_address(lo), ipaddress.ip_address(draw(HOSTS[fam]))))
            entry["to_address"] = "%s-%s" % (a, b)
        if draw(st.booleans()):
            entry["persistent"] = True
    if draw(st.booleans()):
        entry["ports"] = draw(port_specs())[0]
    if draw(st.booleans()):
        entry["random_fully"] = True
    if timeouts and "source" in entry and draw(st.integers(0, 3)) == 0:
        entry["timeouts"] = draw(_timeout_dicts)
    return entry


def _same_timeouts_per_source(config):
    """Drop the timeouts of NAT entries whose source already got other ones (the model
    refuses them: timeouts apply per source)."""
    seen = {}
    for kind in ("masquerade", "snat"):
        for entry in config.get(kind, ()):
            if "source" not in entry:
                continue
            net = model.build_config({"forward": [{"source": entry["source"]}]})[
                "forward"][0].source
            first = seen.setdefault(net, entry.get("timeouts"))
            if first != entry.get("timeouts"):
                if first is None:
                    entry.pop("timeouts")
                else:
                    entry["timeouts"] = first
    return config


@st.composite
def _mapping(draw, fam, max_prefix):
    """(external, internal) of one prefix length: addresses or networks."""
    bits = 32 if fam == 4 else 128
    length = draw(st.one_of(st.just(bits), st.integers(max(1, bits - 16), bits)))
    length = min(length, max_prefix)
    nets = []
    for _end in range(2):
        host = draw(HOSTS[fam])
        net = ipaddress.ip_network("%s/%d" % (host, length), strict=False)
        nets.append(str(net.network_address) if length == bits else net.with_prefixlen)
    return nets


@st.composite
def static_nat_entries(draw):
    fam = draw(families)
    external, internal = draw(_mapping(fam, 128))
    entry = {"interface": draw(ifnames), "external": external, "internal": internal}
    if draw(st.booleans()):
        entry["source"] = draw(NETS[fam])
    if draw(st.booleans()):
        entry["hairpin"] = True
    comment = draw(comments)
    if comment:
        entry["comment"] = comment
    return entry


@st.composite
def npt_entries(draw):
    length = draw(st.integers(1, model.NPT_MAX_PREFIX))
    nets = [ipaddress.ip_network("%s/%d" % (draw(hosts6), length), strict=False).with_prefixlen
            for _end in range(2)]
    entry = {"interface": draw(ifnames), "internal": nets[0], "external": nets[1]}
    comment = draw(comments)
    if comment:
        entry["comment"] = comment
    return entry


connection_limit_entries = st.fixed_dictionaries(
    {"source": families.flatmap(lambda fam: NETS[fam]),
     "per_address": st.integers(1, 1000000)},
    optional={"protocol": st.sampled_from(model.LIMIT_PROTOCOLS),
              "action": st.sampled_from(model.LIMIT_ACTIONS)})


def _without_network_overlaps(entries, fields):
    """The entries whose ``fields`` networks overlap no earlier entry's (the model refuses
    two static NATs or NPTs for one host)."""
    out = []
    for entry in entries:
        nets = [ipaddress.ip_network(entry[f]) for f in fields]
        if any(ipaddress.ip_network(other[f]).overlaps(net) for other in out
               for f, net in zip(fields, nets)):
            continue
        out.append(entry)
    return out


_pf_ifnames = st.one_of(st.sampled_from(IFNAMES[:4]), ifnames)
_pf_protocols = st.sampled_from(model.PF_PROTOCOLS)


@st.composite
def port_forward_entries(draw):
    fam = draw(families)
    port, to_port = draw(port_specs())
    entry = {"in_interface": draw(_pf_ifnames), "port": port, "to_address": draw(HOSTS[fam])}
    proto = draw(_pf_protocols)
    if proto != "tcp" or draw(st.booleans()):
        entry["protocol"] = proto
    if to_port is not None:
        entry["to_port"] = to_port
    if draw(st.booleans()):
        entry["source"] = draw(NETS[fam])
    if draw(st.booleans()) and not model.is_pattern(entry["in_interface"]):
        entry["hairpin"] = True
    comment = draw(comments)
    if comment:
        entry["comment"] = comment
    return entry


def _without_overlaps(entries):
    """Drop the forwards whose ports overlap an earlier one (same interface and protocol)."""
    taken, out = {}, []
    for entry in entries:
        proto = entry.get("protocol", "tcp")
        lo, hi = model.parse_ports(entry["port"])
        spans = [taken.setdefault((entry["in_interface"], p), []) for p in
                 (("tcp", "udp") if proto == "tcp_udp" else (proto,))]
        if any(not (hi < a or lo > b) for span in spans for a, b in span):
            continue
        for span in spans:
            span.append((lo, hi))
        out.append(entry)
    return out


port_forward_lists = st.lists(port_forward_entries(), max_size=6).map(_without_overlaps)

_forward_families = st.sampled_from((None, 4, 6))
_forward_addresses = {
    None: st.just({}),
    4: st.fixed_dictionaries({}, optional={"source": NETS[4], "destination": NETS[4]}),
    6: st.fixed_dictionaries({}, optional={"source": NETS[6], "destination": NETS[6]}),
}
_forward_protocols = {
    None: st.sampled_from([None, "tcp", "udp", "icmp", "icmpv6"]),
    4: st.sampled_from([None, "tcp", "udp", "icmp"]),
    6: st.sampled_from([None, "tcp", "udp", "icmpv6"]),
}
_forward_interfaces = st.fixed_dictionaries({}, optional={"in_interface": ifnames,
                                                          "out_interface": ifnames})
_ct_states = st.lists(st.sampled_from(model.CT_STATES), unique=True, max_size=3)
_forward_actions = st.sampled_from([None, "accept", "drop", "reject"])


@st.composite
def forward_entries(draw):
    fam = draw(_forward_families)
    entry = draw(_forward_interfaces)
    entry.update(draw(_forward_addresses[fam]))
    proto = draw(_forward_protocols[fam])
    if proto:
        entry["protocol"] = proto
    if proto in ("tcp", "udp") and draw(st.booleans()):
        entry["port"] = draw(port_specs())[0]
    states = draw(_ct_states)
    if states:
        entry["ct_state"] = states
    action = draw(_forward_actions)
    if action:
        entry["action"] = action
    comment = draw(comments)
    if comment:
        entry["comment"] = comment
    return entry


helper_entries = st.sampled_from(sorted(model.HELPER_PROTOCOLS)).flatmap(
    lambda name: st.fixed_dictionaries(
        {"helper": st.just(name),
         "port": st.one_of(st.integers(1, 65535).map(str), st.integers(1, 65535))},
        optional={"protocol": st.sampled_from(model.HELPER_PROTOCOLS[name])}))


_input_protocols = st.sampled_from(model.INPUT_PROTOCOLS)


@st.composite
def input_entries(draw):
    """Traffic to the gateway an interface lets in: ports of tcp/udp, or icmp (no port)."""
    entry = {"in_interface": draw(_pf_ifnames)}
    proto = draw(_input_protocols)
    if proto != "tcp" or draw(st.booleans()):
        entry["protocol"] = proto
    if proto != "icmp":
        entry["port"] = draw(port_specs())[0]
    if draw(st.booleans()):
        entry["source"] = draw(NETS[4 if proto == "icmp" else draw(families)])
    comment = draw(comments)
    if comment:
        entry["comment"] = comment
    return entry


def _unique_by_identity(kind, entries):
    """The entries whose model.identity no earlier entry has (a config refuses duplicates)."""
    seen, out = set(), []
    for entry in entries:
        keys = set(model.identity(kind, e) for e in model.build_config({kind: [entry]})[kind])
        if not keys & seen:  # tcp_udp: two entries, two identities
            seen |= keys
            out.append(entry)
    return out


_masquerade_lists = st.lists(nat_entries("masquerade"), max_size=4).map(
    lambda entries: _unique_by_identity("masquerade", entries))
_snat_lists = st.lists(nat_entries("snat"), max_size=4).map(
    lambda entries: _unique_by_identity("snat", entries))
_forward_lists = st.lists(forward_entries(), max_size=6).map(
    lambda entries: _unique_by_identity("forward", entries))
_input_lists = st.lists(input_entries(), max_size=5).map(
    lambda entries: _unique_by_identity("input", entries))


_static_nat_lists = st.lists(static_nat_entries(), max_size=3).map(
    lambda entries: _without_network_overlaps(entries, ("internal", "external")))
_npt_lists = st.lists(npt_entries(), max_size=2).map(
    lambda entries: _without_network_overlaps(entries, ("internal", "external")))
_limit_lists = st.lists(connection_limit_entries, max_size=3).map(
    lambda entries: _unique_by_identity("connection_limits", entries))


def configs(helpers=helper_entries):
    """A valid ``config`` dict with any subset of the kinds (per-rule timeouts too)."""
    nat = _masquerade_lists, _snat_lists
    return st.fixed_dictionaries({}, optional={
        "masquerade": nat[0],
        "snat": nat[1],
        "port_forwards": port_forward_lists,
        "forward": _forward_lists,
        "helpers": st.lists(helpers, max_size=3).map(
            lambda entries: _unique_by_identity("helpers", entries)),
        "input": _input_lists,
        "static_nat": _static_nat_lists,
        "npt": _npt_lists,
        "connection_limits": _limit_lists,
    }).map(_same_timeouts_per_source)


def hairpin_interfaces(config):
    return sorted(set(pf["in_interface"] for pf in config.get("port_forwards", ())
                      if pf.get("hairpin")))


_interface_addresses = st.lists(st.one_of(hosts4, hosts6), max_size=3, unique=True)


@st.composite
def configs_and_addresses(draw, helpers=helper_entries):
    """(config, {interface: [address]}) with addresses for some of its hairpin interfaces:
    what the module reads from the host and puts in the hairpin sets."""
    config = draw(configs(helpers))
    addresses = {}
    for name in hairpin_interfaces(config):
        if draw(st.integers(0, 3)):
            addresses[name] = draw(_interface_addresses)
    return config, addresses


# ---------------------------------------------------------------- applying commands, simulated
#
# A small model of what ``nft -f`` and ``iptables-restore --noflush`` do with the commands
# that render_changes returns, on a parsed State. It refuses what the kernel refuses (rules
# in a chain that does not exist, deleting a missing element or jump, a map element added
# twice with other data, deleting a chain that is still jumped to or holds rules, or a
# helper still in use)
# so that a test can check that the commands take ``have`` to ``want``.

class Refused(Exception):
    """The kernel would refuse this command."""


def _nft_copy(state):
    return nft.State(state.present, set(state.objects),
                     dict((c, list(v)) for c, v in state.chains.items()),
                     dict((n, dict(v)) for n, v in state.elements.items()),
                     dict(state.sets), set(state.uncounted))


def _set_users(chains, name):
    """The rules of ``chains`` (nft: {chain: [Rule]}) that look up set ``name`` (a hairpin
    set, or a connection limit's)."""
    return [r for chain in chains.values() for r in chain
            if r.local_if and nft.set_name(rules.rule_family(r), r.local_if) == name
            or r.ct_count and nft.limit_set(r) == name]


def _nft_keys(text):
    toks = [t.rstrip(",") for t in shlex.split(text)]
    return [(toks[i], toks[i + 2], toks[i + 4]) for i in range(0, len(toks), 5)]


def nft_apply(state, commands):
    """The State after ``nft -f`` of ``commands`` (one transaction: all or nothing)."""
    s = _nft_copy(state)
    prefix = "inet ipmasq "
    # the policies of the ct timeout objects, by name: those the State's rules use, and
    # those the commands add
    timeouts = dict((rules.timeout_name(r), r.ct_timeout)
                    for r in s.chains.get("helpers", ()) if r.ct_timeout)
    for cmd in commands:
        if cmd.startswith("add ct timeout "):
            name = cmd.split()[5]
            text = cmd.split('comment "')[1].split('"')[0]
            timeouts[name] = tuple((k, int(v)) for k, v in
                                   (pair.split("=") for pair in text.split(",")))
    for cmd in commands:
        verb, _sep, rest = cmd.partition(" " + prefix)
        if cmd == "delete table inet ipmasq":
            if not s.present:
                raise Refused(cmd)
            s = _nft_copy(nft.empty_state())
            continue
        if cmd == "add table inet ipmasq":
            s = s._replace(present=True)
            continue
        if not s.present:
            raise Refused("no table: %s" % cmd)
        name, _sep, body = rest.partition(" ")
        if verb in ("add chain", "add map", "add ct helper", "add ct timeout"):
            if verb == "add ct timeout" and ("ct timeout", name) in s.objects:
                raise Refused("exists: %s" % cmd)
            if (verb[4:], name) not in s.objects and verb == "add map" and \
                    "counter;" not in body:
                s.uncounted.add(name)
            s.objects.add((verb[4:], name))
        elif verb == "add set":
            s.objects.add(("set", name))
            if not nft._LIMIT_SET.match(name):
                s.sets.setdefault(name, frozenset())
        elif verb == "delete chain":
            if ("chain", name) not in s.objects or s.chains.get(name):
                raise Refused(cmd)  # the kernel refuses to delete a chain with rules
            s.objects.discard(("chain", name))
            s.chains[name] = []
        elif verb == "flush chain":
            if ("chain", name) not in s.objects:
                raise Refused(cmd)
            s.chains[name] = []
            s.uncounted.discard(name)
        elif verb == "add rule":
            if ("chain", name) not in s.objects:
                raise Refused(cmd)
            rule = nft._text_rule(name, shlex.split(body))
            if rule.verdict == "map" and ("map", rule.helper) not in s.objects:
                raise Refused(cmd)
            if rule.verdict == "helper" and ("ct helper", nft._helper_name(rule)) not in s.objects:
                raise Refused(cmd)
            if rule.local_if and ("set", nft.set_name(
                    rules.rule_family(rule), rule.local_if)) not in s.objects:
                raise Refused("no such set: %s" % cmd)
            if rule.ct_count and ("set", nft.limit_set(rule)) not in s.objects:
                raise Refused("no such set: %s" % cmd)
            if rule.verdict == "timeout" and ("ct timeout", rule.ct_timeout) not in s.objects:
                raise Refused("no such ct timeout: %s" % cmd)
            if rule.verdict == "timeout":  # the object's policy, as a host read gives it
                rule = rule._replace(ct_timeout=timeouts[rule.ct_timeout])
            s.chains.setdefault(name, []).append(rule)
            if rule.verdict != "map" and not nft._has_counter(shlex.split(body)):
                s.uncounted.add(name)
        elif verb == "add element" and ("set", name) in s.objects:
            s.sets[name] = s.sets[name] | _set_words(body)
        elif verb == "delete element" and ("set", name) in s.objects:
            gone = _set_words(body)
            if gone - s.sets[name]:
                raise Refused(cmd)
            s.sets[name] = s.sets[name] - gone
        elif verb == "delete set":
            if ("set", name) not in s.objects or _set_users(s.chains, name):
                raise Refused(cmd)
            s.objects.discard(("set", name))
            s.sets.pop(name, None)
        elif verb == "delete ct timeout":
            users = [r for r in s.chains.get("helpers", ()) if r.ct_timeout and
                     rules.timeout_name(r) == name]
            if ("ct timeout", name) not in s.objects or users:
                raise Refused(cmd)
            s.objects.discard(("ct timeout", name))
        elif verb == "add element":
            if ("map", name) not in s.objects:
                raise Refused(cmd)
            for key, value in nft._text_elements(body.strip("{} ")).items():
                if s.elements[name].get(key, value) != value:
                    raise Refused("element exists with other data: %s" % cmd)
                s.elements[name][key] = value
        elif verb == "delete element":
            for key in _nft_keys(body.strip("{} ")):
                if key not in s.elements.get(name, {}):
                    raise Refused(cmd)
                del s.elements[name][key]
        elif verb == "delete ct helper":
            users = [r for r in s.chains.get("helpers", ()) if nft._helper_name(r) == name]
            if ("ct helper", name) not in s.objects or users:
                raise Refused(cmd)
            s.objects.discard(("ct helper", name))
        else:
            raise AssertionError("command the simulation does not know: %s" % cmd)
    return s._replace(objects=frozenset(s.objects), uncounted=frozenset(s.uncounted))


def _set_words(body):
    return frozenset(w.rstrip(",") for w in body.strip("{} ").split())


def _ipt_copy(state):
    return iptables.State(
        dict((f, dict((c, list(v)) for c, v in chains.items()))
             for f, chains in state.chains.items()),
        dict((f, dict(j)) for f, j in state.jumps.items()),
        dict((f, set(p)) for f, p in state.present.items()),
        dict((f, list(o)) for f, o in state.forward_order.items()),
        dict((f, dict(sets)) for f, sets in state.sets.items()),
        dict(state.timeouts))


def _nfct_line(s, line):
    """One nfct command line (as Host.apply runs it) on State ``s``: the kernel refuses to
    make an object whose name is taken, or to delete one that is missing or in use."""
    words = line.split()
    name = words[2]
    if words[:2] == ["add", "timeout"]:
        if name in s.timeouts:
            raise Refused("%s (exists)" % line)
        s.timeouts.update(iptables.parse_nfct(line))
    elif words[:2] == ["delete", "timeout"]:
        users = [r for chains in s.chains.values() for r in chains["helpers"]
                 if r.verdict == "timeout" and iptables.object_name(r) == name]
        if name not in s.timeouts or users:
            raise Refused("%s (in use: %s)" % (line, users))
        del s.timeouts[name]
    else:
        raise AssertionError("nfct line the simulation does not know: %s" % line)


def _ipset_line(s, line):
    """One line of ``ipset -exist restore`` (as Host.apply runs it) on State ``s``."""
    words = line.split()
    verb, name = words[0], words[1]
    family = int(name[len(iptables.IPSET_PREFIX)])
    sets = s.sets[family]
    if verb == "create":
        assert words[2:] == ["hash:ip", "family", {4: "inet", 6: "inet6"}[family]], line
        sets.setdefault(name, frozenset())  # -exist: an equal set may be there
    elif verb in ("add", "del"):
        if name not in sets:
            raise Refused(line)
        change = frozenset([words[2]])
        sets[name] = sets[name] | change if verb == "add" else sets[name] - change
    elif verb == "destroy":
        users = [r for chains in s.chains.values() for chain in chains.values() for r in chain
                 if r.local_if and iptables.set_name(rules.rule_family(r), r.local_if) == name]
        if name not in sets or users:
            raise Refused("%s (in use: %s)" % (line, users))
        del sets[name]
    else:
        raise AssertionError("ipset line the simulation does not know: %s" % line)


def iptables_apply(state, commands):
    """The State after each family's part of ``commands`` went through ``*-restore --noflush``."""
    s = _ipt_copy(state)
    by_name = dict((v[1], k) for k, v in iptables.CHAINS.items())
    family, table, ipset, nfct = 4, None, False, False
    for line in commands:
        if line in iptables.IPSET_PARTS.values() or line in iptables.NFCT_PARTS.values():
            ipset, nfct = line in iptables.IPSET_PARTS.values(), line in iptables.NFCT_PARTS.values()
            continue
        if line.startswith("# ip6tables-restore"):
            family, ipset, nfct = 6, False, False
            continue
        if line.startswith("# iptables-restore"):
            family, ipset, nfct = 4, False, False
            continue
        if ipset:
            _ipset_line(s, line)
            continue
        if nfct:
            _nfct_line(s, line)
            continue
        if line.startswith("*"):
            table = line[1:]
            continue
        if line == "COMMIT":
            table = None
            continue
        assert table is not None, "rule outside a table: %s" % line
        args = shlex.split(line)
        if args[0].startswith(":"):  # declaring a chain under --noflush creates or empties it
            chain = by_name[args[0][1:]]
            assert iptables.CHAINS[chain][0] == table, line
            s.present[family].add(chain)
            s.chains[family][chain] = []
        elif args[0] == "-A":
            chain = by_name[args[1]]
            if chain not in s.present[family]:
                raise Refused(line)
            if "--timeout" in args and args[args.index("--timeout") + 1] not in s.timeouts:
                raise Refused("timeout object does not exist: %s" % line)
            rule = iptables.parse_rule(chain, args[2:], s.timeouts)
            if rule.local_if and iptables.set_name(family, rule.local_if) not in s.sets[family]:
                raise Refused("set does not exist: %s" % line)
            s.chains[family][chain].append(rule)
        elif args[0] in ("-I", "-D"):  # jumps from built-in chains only
            chain = by_name[args[-1]]
            assert args[-2] == "-j" and iptables.CHAINS[chain][:3:2] == (table, args[1]), line
            order = s.forward_order[family] if (table, args[1]) == ("filter", "FORWARD") else None
            if args[0] == "-I":
                if chain not in s.present[family]:
                    raise Refused(line)
                s.jumps[family][chain] += 1
                if order is not None:
                    position = int(args[2])
                    if not 1 <= position <= len(order) + 1:
                        raise Refused(line)
                    order.insert(position - 1, args[-1])
            else:
                if not s.jumps[family][chain]:
                    raise Refused(line)
                s.jumps[family][chain] -= 1
                if order is not None:
                    order.remove(args[-1])
        elif args[0] == "-F":
            chain = by_name[args[1]]
            if chain not in s.present[family]:
                raise Refused(line)
            s.chains[family][chain] = []
        elif args[0] == "-X":
            chain = by_name[args[1]]
            if chain not in s.present[family] or s.jumps[family][chain] \
                    or s.chains[family][chain]:
                raise Refused(line)
            s.present[family].discard(chain)
        else:
            raise AssertionError("line the simulation does not know: %s" % line)
    return s


APPLY = {nft: nft_apply, iptables: iptables_apply}


def apply_commands(codec, state, commands):
    return APPLY[codec](state, commands)
