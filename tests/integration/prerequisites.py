"""What the integration tests need from the machine, checked before any of them runs.

The tests run the tools below by name, so each must be on PATH as the tests see it.
``conftest.py`` fails the run when something is missing, unless the variable ``OPT_OUT``
is set: then every integration test is skipped, with the reason printed. ``make test``
runs this file as a script (after ``make deps``) to fail at once, naming what is missing.
"""
import os
import shutil
import sys

OPT_OUT = "IPMASQ_ALLOW_SKIP"

# tool -> the Debian package that has it (make deps installs them all)
TOOLS = {
    "ip": "iproute2",
    "ss": "iproute2",
    "sysctl": "procps",
    "nft": "nftables",
    "iptables": "iptables",
    "ip6tables": "iptables",
    "iptables-save": "iptables",
    "ip6tables-save": "iptables",
    "iptables-restore": "iptables",
    "ip6tables-restore": "iptables",
    "iptables-legacy": "iptables",  # test_neighbours: a legacy FORWARD chain beside nftables
    "conntrack": "conntrack",
    "ipset": "ipset",
    "nfct": "nfct",  # test_nat_features: per-rule timeouts on iptables
}


def missing():
    """Why the integration tests cannot run on this machine, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, rules inside them); running as uid %d" % os.geteuid()
    absent = ["%s (Debian package %s)" % (tool, package) for tool, package in TOOLS.items()
              if not shutil.which(tool)]
    if absent:
        return "needs on PATH: %s; make deps installs them" % ", ".join(absent)
    return None


def opted_out():
    return bool(os.environ.get(OPT_OUT))


if __name__ == "__main__":
    REASON = missing()
    if REASON:
        print("integration tests cannot run: %s" % REASON, file=sys.stderr)
        sys.exit(1)
