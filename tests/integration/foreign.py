"""Rules that belong to someone else, and a byte-exact capture of them.

A gateway rarely runs alone: Docker, fail2ban and a hand-written nft table share
the kernel with us. ``install()`` puts such neighbours into the gateway namespace;
``capture_not_ours()`` returns everything that is not ours as plain strings, so
a test can demand that they are equal before and after a module run.
"""
import difflib
import re

FOREIGN_NFT = """\
table inet foreign {
\tset blocklist {
\t\ttype ipv4_addr
\t\tflags interval
\t\telements = { 203.0.113.0/28 }
\t}

\tchain input {
\t\ttype filter hook input priority filter + 10; policy accept;
\t\tip saddr @blocklist counter packets 0 bytes 0 drop
\t\ttcp dport 2222 accept comment "mgmt"
\t}

\tchain forward {
\t\ttype filter hook forward priority filter + 10; policy accept;
\t\tct state invalid counter packets 0 bytes 0 drop
\t}

\tchain postrouting {
\t\ttype nat hook postrouting priority srcnat + 10; policy accept;
\t\tip saddr 10.250.0.0/24 oifname "vpn0" masquerade
\t}
}
"""

# Docker's and fail2ban's usual shape, typed the way they type it.
FOREIGN_IPTABLES = [
    ["-t", "nat", "-N", "DOCKER"],
    ["-t", "nat", "-A", "PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "DOCKER"],
    ["-t", "nat", "-A", "POSTROUTING", "-s", "172.17.0.0/16", "!", "-o", "docker0", "-j", "MASQUERADE"],
    ["-t", "nat", "-A", "DOCKER", "!", "-i", "docker0", "-p", "tcp", "--dport", "8443",
     "-j", "DNAT", "--to-destination", "172.17.0.2:443"],
    ["-t", "filter", "-N", "DOCKER"],
    ["-t", "filter", "-N", "DOCKER-USER"],
    ["-t", "filter", "-A", "DOCKER-USER", "-j", "RETURN"],
    ["-t", "filter", "-A", "FORWARD", "-j", "DOCKER-USER"],
    ["-t", "filter", "-N", "f2b-sshd"],
    ["-t", "filter", "-A", "f2b-sshd", "-s", "203.0.113.99/32", "-j", "REJECT",
     "--reject-with", "icmp-port-unreachable"],
    ["-t", "filter", "-A", "f2b-sshd", "-j", "RETURN"],
    ["-t", "filter", "-I", "INPUT", "-p", "tcp", "-m", "multiport", "--dports", "22", "-j", "f2b-sshd"],
]

FOREIGN_IP6TABLES = [
    ["-t", "filter", "-N", "f2b-sshd"],
    ["-t", "filter", "-A", "f2b-sshd", "-s", "2001:db8:dead::/48", "-j", "REJECT"],
    ["-t", "filter", "-A", "f2b-sshd", "-j", "RETURN"],
    ["-t", "filter", "-I", "INPUT", "-p", "tcp", "-m", "multiport", "--dports", "22", "-j", "f2b-sshd"],
]

OUR_CHAIN = re.compile(r"IPMASQ-[A-Z]+")
_COUNTER_NFT = re.compile(r"counter packets \d+ bytes \d+")
_COUNTER_IPT = re.compile(r"\[\d+:\d+\]")


def install(ns):
    ns.run("nft", "-f", "-", input_text=FOREIGN_NFT)
    for rule in FOREIGN_IPTABLES:
        ns.run("iptables", "-w", "5", *rule)
    for rule in FOREIGN_IP6TABLES:
        ns.run("ip6tables", "-w", "5", *rule)


def normalise_nft(text):
    """Traffic moves counters; nothing else may change."""
    return _COUNTER_NFT.sub("counter", text)


def normalise_save(text):
    """iptables-save output without dates and counters."""
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    return "\n".join(_COUNTER_IPT.sub("[0:0]", line) for line in lines) + "\n"


def strip_ours_save(text):
    """iptables-save text minus our IPMASQ-* chains and the jumps into them.

    A table section that is left with nothing but built-in chains on policy
    ACCEPT and no rules is the same ruleset as no section at all (iptables
    creates such tables on first use), so it is dropped.
    """
    kept = [line for line in normalise_save(text).splitlines() if not OUR_CHAIN.search(line)]
    return "\n".join(_drop_empty_tables(kept)) + "\n"


def _drop_empty_tables(lines):
    out, section = [], []
    for line in lines:
        if line.startswith("*"):
            section = [line]
        elif section:
            section.append(line)
            if line == "COMMIT":
                body = section[1:-1]
                trivial = all(re.match(r"^:[A-Z]+ ACCEPT \[0:0\]$", b) for b in body)
                if not trivial:
                    out.extend(section)
                section = []
        else:
            out.append(line)
    return out


def nft_tables(ruleset_text):
    """Split ``nft list ruleset`` text into {"family name": block text}."""
    tables, current, lines = {}, None, []
    for line in ruleset_text.splitlines():
        if line.startswith("table "):
            current, lines = line[len("table "):].rstrip(" {"), [line]
        elif current is not None:
            lines.append(line)
            if line == "}":
                tables[current] = "\n".join(lines) + "\n"
                current = None
    return tables


def strip_ours_nft(ruleset_text):
    """The nft ruleset without ``table inet ipmasq`` and without IPMASQ-* chains/jumps.

    iptables-nft keeps its tables in nft too, so our iptables chains show up as
    nft chains there; they are cut out chain by chain. Empty base chains on policy
    accept, and tables left with nothing else, count as absent (see ``strip_ours_save``).
    """
    out = []
    for name, block in sorted(nft_tables(normalise_nft(ruleset_text)).items()):
        if name == "inet ipmasq":
            continue
        block = _strip_nft_chains(block)
        if block is not None:
            out.append(block)
    return "\n".join(out)


def _strip_nft_chains(block):
    lines = block.splitlines()
    header, body = lines[0], lines[1:-1]
    chains, cur = [], None
    for line in body:
        if line.startswith("\tchain ") or line.startswith("\tset ") or line.startswith("\tmap "):
            cur = [line]
        elif cur is not None:
            cur.append(line)
            if line == "\t}":
                chains.append(cur)
                cur = None
    kept = []
    for chain in chains:
        if OUR_CHAIN.search(chain[0]):
            continue
        chain = [line for line in chain if not OUR_CHAIN.search(line)]
        # An empty base chain on policy accept filters nothing; iptables-nft creates
        # built-in chains on first use, so one left behind by our jump is no change.
        if chain[0].startswith("\tchain ") and len(chain) == 3 and "policy accept;" in chain[1]:
            continue
        kept.append(chain)
    if not kept:
        return None
    return "\n".join([header] + ["\n".join(c) for c in kept] + ["}"]) + "\n"


SEPARATOR = "----8<----"
# One shell command that dumps every rule in the namespace it runs in: lets a playbook
# take a snapshot between two module tasks without another ansible-playbook start.
SNAPSHOT_COMMAND = "nft list ruleset; echo '%s'; iptables-save; echo '%s'; ip6tables-save" % (
    SEPARATOR, SEPARATOR)


class Snapshot:
    """The raw text of ``nft list ruleset``, ``iptables-save`` and ``ip6tables-save``."""

    def __init__(self, nft, ipt4, ipt6):
        self.nft, self.ipt4, self.ipt6 = nft, ipt4, ipt6

    @classmethod
    def parse(cls, stdout):
        parts = stdout.split(SEPARATOR + "\n")
        assert len(parts) == 3, "not a snapshot: %r" % stdout[:300]
        return cls(*parts)

    @classmethod
    def of(cls, ns):
        return cls(ns.out("nft", "list", "ruleset"), ns.out("iptables-save"), ns.out("ip6tables-save"))


def _snap(source):
    return source if isinstance(source, Snapshot) else Snapshot.of(source)


def capture_not_ours(source):
    """Everything that is not ours (in a namespace or a Snapshot), as comparable strings."""
    snap = _snap(source)
    return {
        "nft table inet foreign": nft_tables(normalise_nft(snap.nft)).get("inet foreign", ""),
        "iptables-save": strip_ours_save(snap.ipt4),
        "ip6tables-save": strip_ours_save(snap.ipt6),
        "nft ruleset minus ours": strip_ours_nft(snap.nft),
    }


def owned_nft(source):
    """Our ``table inet ipmasq`` as nft lists it (counters masked), "" when absent."""
    return nft_tables(normalise_nft(_snap(source).nft)).get("inet ipmasq", "")


def nft_blocks(table_text):
    """The chains, sets and maps of one ``nft list table`` text, sorted: their listing
    order is creation order, which says nothing about the rules."""
    blocks, cur = [], None
    for line in normalise_nft(table_text).splitlines():
        if line.startswith("\t") and not line.startswith("\t\t") and line.rstrip().endswith("{"):
            cur = [line]
        elif cur is not None:
            cur.append(line)
            if line == "\t}":
                blocks.append("\n".join(cur))
                cur = None
    return sorted(blocks)


def owned_iptables(source):
    """Our IPMASQ-* chains and jump lines from iptables-save and ip6tables-save."""
    snap = _snap(source)
    parts = []
    for tool, text in (("iptables-save", snap.ipt4), ("ip6tables-save", snap.ipt6)):
        table = None
        for line in normalise_save(text).splitlines():
            if line.startswith("*"):
                table = line
            elif OUR_CHAIN.search(line):
                parts.append("%s %s %s" % (tool, table, line))
    return "\n".join(parts)


def owned(source):
    """All of ours, both backends' places: equal dicts mean nothing of ours changed."""
    snap = _snap(source)
    return {"nft": owned_nft(snap), "iptables": owned_iptables(snap)}


def whole(source):
    """Every rule in the namespace, ours included, with only packet counters masked."""
    snap = _snap(source)
    return {"nft list ruleset": normalise_nft(snap.nft), "iptables-save": normalise_save(snap.ipt4),
            "ip6tables-save": normalise_save(snap.ipt6)}


def changes(before, after):
    """Unified diffs of the captures that differ, "" when all are equal."""
    out = []
    for key in before:
        if before[key] != after.get(key):
            out.extend(difflib.unified_diff(before[key].splitlines(), after.get(key, "").splitlines(),
                                            key + " before", key + " after", lineterm=""))
    return "\n".join(out)


def assert_intact(lab, when="after the run", snapshot=None):
    """Everything that is not ours is byte-identical to what the lab started with."""
    diff = changes(lab.foreign_before, capture_not_ours(snapshot or lab.gw))
    assert not diff, "foreign rules changed %s:\n%s" % (when, diff)
