"""Rules that belong to someone else, and a byte-exact capture of them.

A gateway rarely runs alone: Docker, fail2ban and a hand-written nft table share
the kernel with us. ``install()`` puts such neighbours into the gateway namespace;
``capture_not_ours()`` returns everything that is not ours as plain strings, so
a test can demand that they are equal before and after a module run.
"""
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
    nft chains there; they are cut out chain by chain. Tables left with only
    empty accept base chains count as absent (see ``strip_ours_save``).
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
        kept.append(chain)
    nontrivial = [
        c for c in kept
        if not (c[0].startswith("\tchain ") and len(c) == 3 and "policy accept;" in c[1])
    ]
    if not nontrivial:
        return None
    return "\n".join([header] + ["\n".join(c) for c in kept] + ["}"]) + "\n"


def capture_not_ours(ns):
    """Everything in ns that is not ours, as a dict of comparable strings."""
    return {
        "nft table inet foreign": normalise_nft(ns.out("nft", "list", "table", "inet", "foreign")),
        "iptables-save": strip_ours_save(ns.out("iptables-save")),
        "ip6tables-save": strip_ours_save(ns.out("ip6tables-save")),
        "nft ruleset minus ours": strip_ours_nft(ns.out("nft", "list", "ruleset")),
    }


def owned_nft(ns):
    """``nft list table inet ipmasq`` (counters zeroed), or "" when the table is absent."""
    proc = ns.run("nft", "list", "table", "inet", "ipmasq", check=False)
    if proc.returncode != 0:
        return ""
    return normalise_nft(proc.stdout)


def owned_iptables(ns):
    """Our IPMASQ-* chains and jump lines from iptables-save and ip6tables-save."""
    parts = []
    for tool in ("iptables-save", "ip6tables-save"):
        table = None
        for line in normalise_save(ns.out(tool)).splitlines():
            if line.startswith("*"):
                table = line
            elif OUR_CHAIN.search(line):
                parts.append("%s %s %s" % (tool, table, line))
    return "\n".join(parts)


def owned_state(ns, backend):
    return owned_nft(ns) if backend == "nftables" else owned_iptables(ns)


def assert_intact(lab):
    """Everything that is not ours is byte-identical to what the lab started with."""
    now = capture_not_ours(lab.gw)
    for key, before in lab.foreign_before.items():
        assert now[key] == before, "%s changed:\n--- before\n%s\n--- after\n%s" % (key, before, now[key])
