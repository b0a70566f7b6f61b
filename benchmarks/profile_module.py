"""Run nat_rules once in-process (no ansible-playbook) and say where its time goes.

    ip netns exec NS python benchmarks/profile_module.py ARGS.json [--top 20]

ARGS.json holds ``{"ANSIBLE_MODULE_ARGS": {...}}``, the file AnsibleModule reads when a
module runs by hand. Run it only inside a namespace the benchmark made: the module
applies its rules there. Prints one JSON object: the module's wall time, its result's
``changed``, the time per phase (argument validation, host reads, plan, apply) and the
hottest functions by own time.
"""
import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import sys
import time

# Phases: a function of the module code and the name its cumulative time is reported under.
PHASES = (
    ("basic.py", "__init__", "AnsibleModule() (argument spec validation)"),
    ("model.py", "build_config", "model.build_config (validation)"),
    ("host.py", "read", "host.read (nft -j list / iptables-save + parse)"),
    ("plan.py", "plan_change", "plan.plan_change"),
    ("host.py", "apply", "host.apply (nft -c + nft -f / restore --test + restore)"),
    ("basic.py", "exit_json", "exit_json (result to JSON)"),
)


def _short(path):
    for marker in (os.sep + "plugins" + os.sep, os.sep + "ansible" + os.sep):
        if marker in path:
            return marker.strip(os.sep) + os.sep + path.split(marker, 1)[1]
    return os.path.basename(path) if path.startswith(os.sep) else path


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("args_file")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--plain", action="store_true", help="time only, no profiler")
    opts = ap.parse_args()

    from ansible_collections.ipmasq.gateway.plugins.modules import nat_rules

    sys.argv = [nat_rules.__file__, opts.args_file]
    profile = cProfile.Profile()
    captured = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(captured):
        try:
            if opts.plain:
                nat_rules.main()
            else:
                profile.runcall(nat_rules.main)
        except SystemExit:
            pass
    seconds = time.perf_counter() - start
    try:
        result = json.loads(captured.getvalue())
    except ValueError:
        result = {"failed": True, "msg": captured.getvalue()[-2000:]}

    if opts.plain:
        print(json.dumps({"seconds": round(seconds, 4), "changed": result.get("changed"),
                          "failed": bool(result.get("failed")), "msg": result.get("msg"),
                          "result_bytes": len(captured.getvalue()),
                          "result_key_bytes": dict((k, len(json.dumps(v))) for k, v in
                                                   sorted(result.items()))}))
        return
    stats = pstats.Stats(profile).stats
    phases = {}
    for (path, _line, func), (_cc, _nc, _tt, cumtime, _callers) in stats.items():
        for file_name, func_name, label in PHASES:
            if func == func_name and os.path.basename(path) == file_name \
                    and (file_name != "basic.py" or "module_utils" in path):
                phases[label] = round(max(phases.get(label, 0), cumtime), 4)
    rows = sorted(((tt, nc, ct, "%s:%s" % (_short(path), func))
                   for (path, _line, func), (_cc, nc, tt, ct, _callers) in stats.items()),
                  reverse=True)[:opts.top]
    print(json.dumps({
        "seconds": round(seconds, 4), "changed": result.get("changed"),
        "failed": bool(result.get("failed")), "msg": result.get("msg"), "phases_s": phases,
        "top": [{"function": name, "calls": nc, "tottime": round(tt, 4), "cumtime": round(ct, 4)}
                for tt, nc, ct, name in rows],
    }))


if __name__ == "__main__":
    main()
