"""The pure planning step of nat_rules at scale, in-process, with no host.

    PYTHONPATH=.build/collections python benchmarks/plan_bench.py --rules 100000 --changed 0.01

Builds ``have`` the way the module sees it on a host that carries the old ruleset: the
old config is validated, laid out, rendered with ``render_full`` and parsed back
(``nft.parse`` / ``iptables.parse``). Then it times ``plan.plan_change`` (read the model,
compute the after-state, lay it out, render the changes) for a config with a share of the
forwards pointed elsewhere, ``state: replaced`` as the roles call it. Prints one JSON
object; ``--profile`` adds the hottest functions of one more plan_change under cProfile.
"""
import argparse
import cProfile
import json
import os
import pstats
import statistics
import time

from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import diff
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import iptables
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import model as m
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import nft
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import plan

CODECS = {"nftables": nft, "iptables": iptables}
PORTS_PER_INTERFACE = 50000


def forwards(count, changed_share=0.0):
    """``count`` single-port TCP forwards; every 1/changed_share-th one points elsewhere."""
    step = int(round(1 / changed_share)) if changed_share else 0
    out = []
    for i in range(count):
        addr = "172.30.%d.%d" % (1 + (i // 250) % 200, 1 + i % 250)
        if step and i % step == 0:
            addr = "172.31.%d.%d" % (1 + (i // 250) % 200, 1 + i % 250)
        out.append({"in_interface": "wan%d" % (i // PORTS_PER_INTERFACE), "protocol": "tcp",
                    "port": 10000 + i % PORTS_PER_INTERFACE, "to_address": addr,
                    "to_port": 80})
    return {"port_forwards": out}


def timed(fn, *args):
    start = time.perf_counter()
    value = fn(*args)
    return time.perf_counter() - start, value


def phases(codec, have, config):
    """plan_change's own steps, timed one by one (same calls, same order)."""
    out = {}
    out["read_model"], (before, _foreign) = timed(plan.read_model, codec, have)
    out["after_state"], after = timed(diff.after_state, "replaced", before, config)
    out["want_state"], want = timed(plan.want_state, codec, after)
    out["render_changes"], _commands = timed(codec.render_changes, have, want)
    return dict((k, round(v, 4)) for k, v in out.items())


def top_functions(profile, limit):
    stats = pstats.Stats(profile)
    rows = []
    for (path, line, func), (_cc, ncalls, tottime, cumtime, _callers) in stats.stats.items():
        rows.append({"function": "%s:%s" % (_short(path), func), "line": line, "calls": ncalls,
                     "tottime": round(tottime, 4), "cumtime": round(cumtime, 4)})
    rows.sort(key=lambda row: row["tottime"], reverse=True)
    return rows[:limit]


def _short(path):
    marker = os.sep + "plugins" + os.sep
    if marker in path:
        return "plugins" + os.sep + path.split(marker, 1)[1]
    return os.path.basename(path) if path.startswith(os.sep) else path


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rules", type=int, default=100000)
    ap.add_argument("--changed", type=float, default=0.01)
    ap.add_argument("--backend", choices=sorted(CODECS), default="nftables")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="also profile one plan_change and list the N hottest functions")
    args = ap.parse_args()
    codec = CODECS[args.backend]

    out = {"backend": args.backend, "rules": args.rules, "changed_share": args.changed}
    out["build_config_s"], old = timed(m.build_config, forwards(args.rules))
    new = m.build_config(forwards(args.rules, args.changed))
    ruleset = m.empty_ruleset()
    ruleset.update(old)
    out["layout_s"], state = timed(plan.want_state, codec, ruleset)
    out["render_full_s"], text = timed(codec.render_full, state)
    out["parse_s"], have = timed(codec.parse, text)
    samples = []
    for _repeat in range(args.repeats):
        seconds, (before, after, _want, commands) = timed(
            plan.plan_change, codec, "replaced", have, new)
        samples.append(seconds)
    out["plan_change_samples"] = [round(s, 4) for s in samples]
    out["plan_change_s"] = statistics.median(samples)
    out["commands"] = len(commands)
    out["command_bytes"] = sum(len(c) for c in commands)
    out["changed_forwards"] = sum(
        1 for a, b in zip(before["port_forwards"], after["port_forwards"]) if a != b)
    try:
        out["phases_s"] = phases(codec, have, new)
    except (AttributeError, TypeError) as exc:  # plan's helpers were renamed: skip the split
        out["phases_s"] = {"error": repr(exc)}
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(plan.plan_change, codec, "replaced", have, new)
        out["profile"] = top_functions(profile, args.profile)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
