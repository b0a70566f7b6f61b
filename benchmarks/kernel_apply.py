"""Load a script that nat_rules rendered with the kernel tool alone, and time only the tool.

    ip netns exec NS python benchmarks/kernel_apply.py nftables FILE
    ip netns exec NS python benchmarks/kernel_apply.py iptables FILE

nftables: ``nft -f FILE``. iptables: the text holds one part per tool, each starting
with a ``# iptables-restore`` or ``# ip6tables-restore`` line; each part goes to
``<tool> --noflush`` on stdin, as the module does. Prints the seconds the tool(s) took.
Run it only inside a namespace the benchmark made.
"""
import subprocess
import sys
import time

TOOLS = ("iptables-restore", "ip6tables-restore")


def parts(text):
    out, tool = {}, TOOLS[0]
    for line in text.splitlines():
        for name in TOOLS:
            if line.startswith("# %s" % name):
                tool = name
        out.setdefault(tool, []).append(line)
    return [(tool, "\n".join(lines) + "\n") for tool, lines in out.items()]


def main():
    backend, path = sys.argv[1], sys.argv[2]
    if backend == "nftables":
        jobs = [(["nft", "-f", path], None)]
    else:
        with open(path) as handle:
            jobs = [([tool, "-w", "--noflush"], text) for tool, text in parts(handle.read())]
    start = time.perf_counter()
    for argv, data in jobs:
        subprocess.run(argv, input=data, text=True, check=True)
    print("%.6f" % (time.perf_counter() - start))


if __name__ == "__main__":
    main()
