"""Turn the measured samples into results.json, a printed summary, docs/benchmarks.md and
the plot. Pure formatting: nothing here measures or touches a host."""
import json
import os
import re
import statistics

# (figure, comparison, limit as a function of the results, limit text)
TARGETS = (
    ("speedup_vs_builtin_200", ">=", lambda r: 30, "30"),
    ("nat_rules_200_s_nft", "<=", lambda r: r["floor_s"] + 0.5, "floor_s + 0.5"),
    ("nat_rules_200_s_iptables", "<=", lambda r: r["floor_s"] + 0.5, "floor_s + 0.5"),
    ("nat_rules_200_rerun_s_nft", "<=", lambda r: r["floor_s"] + 0.3, "floor_s + 0.3"),
    ("nat_rules_200_rerun_s_iptables", "<=", lambda r: r["floor_s"] + 0.3, "floor_s + 0.3"),
    ("nat_rules_10k_s", "<=", lambda r: 3, "3"),
    ("nat_rules_10k_rerun_s", "<=", lambda r: 2, "2"),
    ("nat_rules_10k_s_iptables", "<=", lambda r: 3, "3"),
    ("nat_rules_10k_rerun_s_iptables", "<=", lambda r: 2, "2"),
    ("diff_100k_s", "<=", lambda r: 1, "1"),
    ("conn_rate_10k_fwd_nft", ">=", lambda r: 0.9 * r["conn_rate_10_fwd_nft"],
     "0.9 x conn_rate_10_fwd_nft"),
    ("counter_cost_10k_nft", ">=", lambda r: 0.9, "0.9"),
    ("status_10k_s_nft", "<=", lambda r: 2 * r["floor_s"], "2 x floor_s"),
    ("status_10k_s_iptables", "<=", lambda r: 2 * r["floor_s"], "2 x floor_s"),
    ("fleet_1_s", "<=", lambda r: 4 * r["fleet_floor_1_s"] if r.get("fleet_floor_1_s") else None,
     "4 x fleet_floor_1_s"),
    ("fleet_20_s", "<=", lambda r: 3 * r["fleet_1_s"] if r.get("fleet_1_s") else None,
     "3 x fleet_1_s"),
)

DESCRIPTIONS = {
    "floor_s": "ansible-playbook with one trivial task (ping), same invocation",
    "floor_10k_vars_s": ("the floor playbook plus reading the 10,000 forwards' JSON file "
                         "as nat_rules.yml does (lookup), no module"),
    "builtin_loop_200_s": "ansible.builtin.iptables in a loop, 200 DNAT forwards",
    "builtin_loop_200_rerun_s": "the same loop again, nothing to change",
    "builtin_loop_50_s": "ansible.builtin.iptables in a loop, 50 DNAT forwards (measured)",
    "builtin_loop_50_rerun_s": "the same 50 again, nothing to change (measured)",
    "nat_rules_200_s_nft": "nat_rules, 200 forwards in one task, nftables",
    "nat_rules_200_rerun_s_nft": "the same task again, no change, nftables",
    "nat_rules_200_s_iptables": "nat_rules, 200 forwards in one task, iptables",
    "nat_rules_200_rerun_s_iptables": "the same task again, no change, iptables",
    "nat_rules_1k_s_nft": "nat_rules, 1,000 forwards, nftables",
    "nat_rules_1k_rerun_s_nft": "re-run, 1,000 forwards, nftables",
    "nat_rules_1k_s_iptables": "nat_rules, 1,000 forwards, iptables",
    "nat_rules_1k_rerun_s_iptables": "re-run, 1,000 forwards, iptables",
    "nat_rules_10k_s": "nat_rules, 10,000 forwards, nftables",
    "nat_rules_10k_rerun_s": "re-run, 10,000 forwards, nftables",
    "nat_rules_10k_s_iptables": "nat_rules, 10,000 forwards, iptables",
    "nat_rules_10k_rerun_s_iptables": "re-run, 10,000 forwards, iptables",
    "raw_200_s": "nft -f of the rendered 200-forward script (= raw_200_s_nft)",
    "raw_200_s_nft": "nft -f of the rendered 200-forward script",
    "raw_200_s_iptables": "iptables-restore + ip6tables-restore of the rendered 200 forwards",
    "raw_10k_s_nft": "nft -f of the rendered 10,000-forward script",
    "raw_10k_s_iptables": "iptables-restore + ip6tables-restore of 10,000 forwards",
    "speedup_vs_builtin_200": "builtin_loop_200_s / nat_rules_200_s_nft",
    "speedup_vs_builtin_200_rerun": "builtin_loop_200_rerun_s / nat_rules_200_rerun_s_nft",
    "diff_100k_s": "plan.plan_change, 100,000 forwards against 100,000 with 1% changed",
    "conn_rate_10_fwd_nft": "new TCP connections/s through a forward, 10 forwards, nftables",
    "conn_rate_10k_fwd_nft": "the same with 10,000 forwards (one map lookup)",
    "conn_rate_10k_fwd_nft_nocounters": ("the same 10,000 forwards without counters (the "
                                         "rendered script with its counter statements taken out)"),
    "counter_cost_10k_nft": ("conn_rate_10k_fwd_nft / conn_rate_10k_fwd_nft_nocounters, median "
                             "of the rounds: 1 means the counters cost nothing measurable"),
    "status_10k_s_nft": "nat_status on a gateway with 10,000 forwards (with counters), nftables",
    "status_10k_s_iptables": "nat_status on a gateway with 10,000 forwards, iptables",
    "conn_rate_10_fwd_iptables": "new TCP connections/s, 10 forwards, iptables",
    "conn_rate_10k_fwd_iptables": "the same with 10,000 forwards, target rule last",
    "fleet_1_s": "site.yml --forks 20, first converge of 1 fresh gateway container",
    "fleet_5_s": "the same with 5 gateway containers",
    "fleet_20_s": "the same with 20 gateway containers",
    "fleet_floor_1_s": "a play of one ping against 1 of those gateways, right after its converge",
    "fleet_floor_20_s": "the same ping play against 20 gateways",
}

ORDER = (
    "floor_s", "floor_10k_vars_s", "builtin_loop_200_s", "builtin_loop_200_rerun_s", "builtin_loop_50_s",
    "builtin_loop_50_rerun_s", "nat_rules_200_s_nft", "nat_rules_200_rerun_s_nft",
    "nat_rules_200_s_iptables", "nat_rules_200_rerun_s_iptables", "speedup_vs_builtin_200",
    "speedup_vs_builtin_200_rerun", "nat_rules_1k_s_nft", "nat_rules_1k_rerun_s_nft",
    "nat_rules_1k_s_iptables", "nat_rules_1k_rerun_s_iptables", "nat_rules_10k_s",
    "nat_rules_10k_rerun_s", "nat_rules_10k_s_iptables", "nat_rules_10k_rerun_s_iptables",
    "raw_200_s", "raw_200_s_nft", "raw_200_s_iptables", "raw_10k_s_nft", "raw_10k_s_iptables",
    "status_10k_s_nft", "status_10k_s_iptables",
    "diff_100k_s", "conn_rate_10_fwd_nft", "conn_rate_10k_fwd_nft",
    "conn_rate_10k_fwd_nft_nocounters", "counter_cost_10k_nft", "conn_rate_10_fwd_iptables",
    "conn_rate_10k_fwd_iptables", "fleet_1_s", "fleet_5_s", "fleet_20_s", "fleet_floor_1_s",
    "fleet_floor_20_s",
)


# Figures that repeat another under the name the targets use.
ALIASES = {"raw_200_s": "raw_200_s_nft", "nat_rules_10k_s": "nat_rules_10k_s_nft",
           "nat_rules_10k_rerun_s": "nat_rules_10k_rerun_s_nft"}


def fmt(key, value):
    if value is None:
        return "not measured"
    if key.startswith("conn_rate"):
        return "%.0f conn/s" % value
    if key.startswith("speedup"):
        return "%.1fx" % value
    if key.startswith("counter_cost"):
        return "%.3f" % value
    if value < 0.1:
        return "%.4f s" % value
    return "%.2f s" % value


def evaluate_targets(res):
    rows = []
    for key, op, limit_fn, limit_text in TARGETS:
        measured = res.get(key)
        try:
            limit = limit_fn(res)
        except (KeyError, TypeError):
            limit = None
        ok = None
        if measured is not None and limit is not None:
            ok = measured >= limit if op == ">=" else measured <= limit
        rows.append({"figure": key, "target": "%s %s" % (op, limit_text), "limit": limit,
                     "measured": measured, "pass": ok})
    return rows


def assemble(res, samples, extra, env, cfg):
    out = {}
    for key in ORDER:
        if key in res:
            out[key] = round(res[key], 4) if isinstance(res[key], float) else res[key]
    for key in sorted(res):
        if key not in out:
            out[key] = round(res[key], 4) if isinstance(res[key], float) else res[key]
    out["targets"] = evaluate_targets(res)
    out["samples"] = dict((k, [round(v, 4) for v in vs]) for k, vs in sorted(samples.items()))
    out["environment"] = env
    out["settings"] = dict((k, list(v) if isinstance(v, tuple) else v) for k, v in cfg.items())
    out["details"] = extra
    return out


def write_json(out, path):
    with open(path, "w") as handle:
        json.dump(out, handle, indent=2, sort_keys=False)
        handle.write("\n")


# ---------------------------------------------------------------- printed summaries

def print_ansible_summary(res, extra):
    floor = res["floor_s"]
    print("medians so far:")
    print("  floor_s                          %7.3f s" % floor)
    for key in sorted(k for k in res if k.startswith("nat_rules_")):
        print("  %-32s %7.3f s   floor + %.3f s" % (key, res[key], res[key] - floor))
    for key in sorted(k for k in res if k.startswith("builtin_loop_")):
        print("  %-32s %7.3f s" % (key, res[key]))
    if "builtin_extrapolated" in extra:
        print("  (builtin_loop_200: %s)" % extra["builtin_extrapolated"])
    for key in sorted(k for k in res if k.startswith("raw_")):
        print("  %-32s %7.4f s" % (key, res[key]))
    print("  speedup_vs_builtin_200           %7.1fx  (builtin %.2f s / nat_rules nft %.2f s)"
          % (res["speedup_vs_builtin_200"], res["builtin_loop_200_s"],
             res["nat_rules_200_s_nft"]))
    print("  re-run speedup                   %7.1fx" % res["speedup_vs_builtin_200_rerun"])
    for short in ("nft", "iptables"):
        key = "nat_rules_200_s_%s" % short
        if key in res and "raw_200_s_%s" % short in res:
            print("  nat_rules 200 %s / kernel tool alone: %.0fx" % (
                short, res[key] / res["raw_200_s_%s" % short]))


def print_summary(out):
    print("\nresults (medians):")
    for key in ORDER:
        if key in out:
            print("  %-32s %s" % (key, fmt(key, out[key])))
    if out.get("conn_rate_10_fwd_nft") and out.get("conn_rate_10k_fwd_nft"):
        print("  nft 10k/10 connection rate: %.2f"
              % (out["conn_rate_10k_fwd_nft"] / out["conn_rate_10_fwd_nft"]))
    if out.get("counter_cost_10k_nft"):
        print("  nft 10k with/without counters: %.3f (median of the rounds' ratios %s)"
              % (out["counter_cost_10k_nft"], out["samples"].get("counter_cost_10k_nft")))
    if out.get("status_10k_s_nft"):
        print("  nat_status 10k nft / floor: %.2f" % (out["status_10k_s_nft"] / out["floor_s"]))
    if out.get("conn_rate_10_fwd_iptables") and out.get("conn_rate_10k_fwd_iptables"):
        print("  iptables 10k/10 connection rate: %.3f"
              % (out["conn_rate_10k_fwd_iptables"] / out["conn_rate_10_fwd_iptables"]))
    print("\ntargets (a benchmark, not a test: a miss is reported, not failed):")
    for row in out["targets"]:
        print("  %-4s %-32s %-14s target %s%s" % (
            _verdict(row), row["figure"], fmt(row["figure"], row["measured"]), row["target"],
            "" if row["limit"] is None else " = %s" % fmt(row["figure"], row["limit"])))
    if out.get("fleet_note"):
        print("  fleet: %s" % out["fleet_note"])


def _verdict(row):
    return {True: "PASS", False: "MISS", None: "n/a"}[row["pass"]]


# ---------------------------------------------------------------- plot

def plot(out, path):
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 6.2), gridspec_kw={"width_ratios": [3, 2]})
    counts = {"200": 200, "1k": 1000, "10k": 10000}
    floor = out["floor_s"]

    def series(fmt_key):
        xs, ys = [], []
        for name, n in counts.items():
            value = out.get(fmt_key % name)
            if value is not None:
                xs.append(n)
                ys.append(value)
        return xs, ys

    styles = (
        ("nat_rules_%s_s_nft", "nat_rules, nftables", "C0", "-", "o"),
        ("nat_rules_%s_rerun_s_nft", "nat_rules re-run, nftables", "C0", "--", "o"),
        ("nat_rules_%s_s_iptables", "nat_rules, iptables", "C1", "-", "s"),
        ("nat_rules_%s_rerun_s_iptables", "nat_rules re-run, iptables", "C1", "--", "s"),
        ("raw_%s_s_nft", "nft -f alone", "C2", ":", "^"),
        ("raw_%s_s_iptables", "iptables-restore alone", "C4", ":", "v"),
    )
    for key, name, color, line, marker in styles:
        xs, ys = series(key)
        if xs:
            ax.plot(xs, ys, line, color=color, marker=marker, label=name)
    measured_n = out["settings"]["builtin_rules"]
    for key, name, line in (("builtin_loop_%d_s", "builtin iptables loop", ":"),
                            ("builtin_loop_%d_rerun_s", "builtin loop re-run", "-.")):
        t = out.get(key % measured_n)
        if t is None:
            continue
        # Each rule is one more module run: the loop grows linearly from the floor.
        per_rule = (t - floor) / measured_n
        xs = [measured_n, 10000]
        ax.plot(xs, [floor + per_rule * n for n in xs], line, color="C3", marker="D",
                markevery=[0], label="%s (measured at %d, then linear)" % (name, measured_n))
    ax.axhline(floor, color="grey", linewidth=1)
    ax.text(11000, floor * 1.08, "floor: one trivial task %.2f s" % floor, color="grey",
            fontsize=8, ha="right")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("port forwards")
    ax.set_ylabel("seconds (log)")
    ax.set_title("Time to apply N DNAT port forwards")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3)

    bars = [("nft\n10", "conn_rate_10_fwd_nft", "C0"), ("nft\n10,000", "conn_rate_10k_fwd_nft", "C0"),
            ("nft 10,000\nno counters", "conn_rate_10k_fwd_nft_nocounters", "C2"),
            ("iptables\n10", "conn_rate_10_fwd_iptables", "C1"),
            ("iptables\n10,000", "conn_rate_10k_fwd_iptables", "C1")]
    bars = [b for b in bars if out.get(b[1]) is not None]
    bx.bar(range(len(bars)), [out[b[1]] for b in bars], color=[b[2] for b in bars])
    for i, b in enumerate(bars):
        bx.text(i, out[b[1]], "%.0f" % out[b[1]], ha="center", va="bottom", fontsize=8)
    bx.set_xticks(range(len(bars)))
    bx.set_xticklabels([b[0] for b in bars])
    bx.set_ylabel("new TCP connections per second")
    bx.set_title("Connection rate through one forward\namong N forwards")
    env = out["environment"]
    fig.suptitle("ipmasq.gateway benchmarks (%s mode, %s, %s CPUs, kernel %s)" % (
        env["mode"], env["date"], env["cpus"], env["kernel"]), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------- docs/benchmarks.md

def _table(rows, header):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_doc(out, path, png):
    env, settings, extra = out["environment"], out["settings"], out["details"]
    floor = out["floor_s"]
    quick = env["mode"] == "quick"
    parts = []
    parts.append("# Benchmarks\n")
    parts.append(
        "How long `ipmasq.gateway.nat_rules` takes to apply DNAT port forwards, compared with "
        "the common alternative (a loop of `ansible.builtin.iptables` tasks, one module run "
        "and one `iptables -C` check per rule) and with the kernel tools alone; how the "
        "planning code scales; and what the rules cost per new connection.\n")
    parts.append(
        "This page is written by `make bench` (`benchmarks/run.py`) from the run recorded in "
        "`benchmarks/results.json`. Do not edit it by hand: change `benchmarks/report.py`.\n")
    parts.append("## Run\n")
    parts.append(
        "```\nmake bench            # full run: %s\nmake bench QUICK=1    # under 3 minutes\n```\n"
        % "about 13 minutes on 2 cores, the fleet included")
    parts.append(
        "A full run rewrites `benchmarks/results.json`, this page and `docs/benchmarks.png`. A "
        "quick run (the builtin loop with 50 rules, its 200-rule figures extrapolated x4, fewer "
        "repeats, no iptables 10,000-forward figures, no profile) writes the same three files "
        "into `benchmarks/.work/quick/` instead. `benchmarks/run.py --report-only` rewrites "
        "this page and the plot from `benchmarks/results.json`.\n")
    parts.append(
        "It needs root, `nft`, `iptables`, `conntrack` and `ip` (`make deps`). Every rule is "
        "applied inside network namespaces that the script creates and deletes (in `finally`), "
        "and traffic flows only between them; the machine's own rules are never touched. "
        "`nat_rules` runs with `persist: false`. The plot needs matplotlib, which "
        "run.py installs into the project venv from `benchmarks/requirements.txt` (pinned) the "
        "first time.\n")
    parts.append("## This run\n")
    rows = [("mode", env["mode"] + (" (the builtin loop ran with %d rules; its 200-rule "
                                    "figures are that time x4)" % settings["builtin_rules"]
                                    if quick else "")),
            ("date", env["date"]), ("commit", env["commit"]),
            ("machine", "%s CPUs, %s, kernel %s" % (env["cpus"], env["os"], env["kernel"])),
            ("tools", "Python %s, ansible-core %s, %s, %s" % (
                env["python"], env["ansible_core"], env["nft"], env["iptables"])),
            ("load average", "%.2f at start, %.2f at end (1 min)" % (
                env["loadavg_start"][0], env["loadavg_end"][0])),
            ("duration", "%.0f s" % env["duration_s"])]
    parts.append(_table(rows, ("", "")) + "\n")
    if png:
        parts.append("![time against rule count, and connection rate](%s)\n"
                     % os.path.basename(str(png)))
    parts.append("## Figures\n")
    parts.append(
        "Median of the runs listed (`samples` in results.json has each run). Times are wall "
        "clock of the whole `ansible-playbook` process unless the row says otherwise.\n")
    rows = []
    for key in ORDER:
        if key not in out:
            continue
        desc = DESCRIPTIONS.get(key, "")
        n = len(out["samples"].get(ALIASES.get(key, key), ()))
        if quick and key in ("builtin_loop_200_s", "builtin_loop_200_rerun_s"):
            desc += " (**extrapolated**: the 50-rule time x4)"
            n = len(out["samples"].get(key.replace("200", "50"), ()))
        if key.startswith("nat_rules_200") and out[key] is not None:
            desc += "; floor %s %.2f s" % ("+" if out[key] >= floor else "-", abs(out[key] - floor))
        values = out["samples"].get(ALIASES.get(key, key))
        spread = "%s - %s" % (fmt(key, min(values)), fmt(key, max(values))) \
            if values and len(values) > 1 else ""
        rows.append(("`%s`" % key, fmt(key, out[key]), n or "", spread, desc))
    parts.append(_table(rows, ("figure", "median", "runs", "range", "what")) + "\n")
    if out.get("fleet_note"):
        parts.append("Fleet figures: %s.\n" % out["fleet_note"])

    parts.append("## Targets\n")
    parts.append("Goals set for the collection. A benchmark is not a test: a miss is "
                 "reported here, and explained below, not failed.\n")
    rows = [("`%s`" % r["figure"], fmt(r["figure"], r["measured"]),
             r["target"] + ("" if r["limit"] is None else " (%s)" % fmt(r["figure"], r["limit"])),
             _verdict(r).lower()) for r in out["targets"]]
    parts.append(_table(rows, ("figure", "measured", "target", "result")) + "\n")

    parts.append(method_text(out))
    parts.append(fleet_text(out))
    parts.append(analysis_text(out))
    findings = os.path.join(os.path.dirname(os.path.abspath(__file__)), "findings.md")
    if os.path.exists(findings):
        with open(findings) as handle:
            parts.append(handle.read())
    with open(path, "w") as handle:
        handle.write("\n".join(parts))


def method_text(out):
    s = out["settings"]
    conn = ", ".join("%s %d%s" % (c[0], c[1], " (%s)" % c[2] if len(c) > 2 else "")
                     for c in s["conn"])
    return """## Method

- **Invocation.** Every Ansible figure is one `ansible-playbook -i localhost, -c local
  -e ansible_python_interpreter={{ ansible_playbook_python }} -e bench_config_file=F PLAYBOOK`
  process run with `ip netns exec` in a fresh namespace, timed from start to exit. The
  forwards (TCP ports 10000 and up on `wan0`, each to a LAN host and port) are read by the
  task itself from a JSON file. nat_rules gets the file's text,
  `config: "{{ lookup('ansible.builtin.file', f) }}"`, which its dict option decodes as
  JSON (see the module's examples); the builtin loop needs a list and loops over
  `lookup('ansible.builtin.file', f) | from_json`. `floor_s` is the same command with one
  `ansible.builtin.ping` task: what any playbook costs before a module does any work.
  `floor_10k_vars_s` adds a task that reads the 10,000 forwards' file exactly as the
  nat_rules task does, so that the nat_rules figures minus it are the cost of handing the
  list to the module and of the module itself. Other ways to hand over the same list cost
  ansible-core 2.19 more, as it tags every value it decodes with its origin (measured at
  10,000 forwards, see benchmarks/findings.md): `| from_json` in the task about 0.7 s of
  CPU, `-e @file` (as group_vars) about 1.8 s with JSON and 6 s with YAML.
- **Builtin loop.** `ansible.builtin.iptables` with `table: nat`, `chain: PREROUTING`,
  `jump: DNAT`, `to_destination`, looping over the same list; the re-run finds every rule
  present (`iptables -C`) and changes nothing.
- **nat_rules.** The same list in one task (`state: replaced`, `persist: false`). The first
  run starts from an empty namespace, so it really applies; the re-run must report
  `changed=0`. A new namespace is made for every repeat. Counts are checked after the
  first run (map elements or chain rules).
- **Kernel tools alone** (`raw_*`). The module's `state: rendered` output, loaded with
  `nft -f` or `iptables-restore --noflush` (+ `ip6tables-restore` for the part the module
  also gives IPv6) in a fresh namespace, timing only the tool process
  (`benchmarks/kernel_apply.py`).
- **Repeats.** %(repeats)d runs for each 200/1,000-forward figure and the floor, 3 for 10,000
  forwards, %(builtin_repeats)d for the builtin loop (it is slow). The jobs run round-robin
  (one of each per round) so that load from elsewhere on the machine hits all of them alike.
- **diff_100k_s.** In-process (`benchmarks/plan_bench.py`, `PYTHONPATH=.build/collections`):
  100,000 forwards (2 interfaces x 50,000 ports) are validated, laid out, rendered with
  `nft.render_full` and parsed back with `nft.parse`, which gives `have` as the module would
  read it. Then `plan.plan_change(nft, "replaced", have, config)` is timed with 1%% of the
  forwards pointed at new addresses (median of %(diff_repeats)d). It includes reading the
  model from `have`, the after-state, the layout and `render_changes`.
- **Connection rate.** Namespaces `cli` (198.51.100.20) - `gw` - `lan` (172.30.77.20). The
  rendered ruleset is loaded in `gw`, a one-byte accept server runs in `lan`, and a
  sequential client (`benchmarks/loadgen.py`: connect, read, close) in `cli` opens as many
  connections as it can in %(conn_seconds)g s (at most %(conn_count)d) to the forwarded
  port, after `conntrack -F`. The measured forward is the last one, so in the iptables
  chain every new connection first walks all the others. Configurations: %(conn)s forwards;
  %(conn_repeats)d rounds, round-robin. Only the first packet of a connection walks the nat
  chains, so this is the per-connection cost of the ruleset; a Python client bounds the
  absolute rate.
- **Counter cost.** The same connection rate through the 10,000-forward nftables gateway
  with and without counters: the rendered script as loaded, and the same script with its
  `counter` statements and the maps' `counter` flag taken out
  (`conn_rate_10k_fwd_nft_nocounters`). Both gateways run side by side and are measured in
  the same rounds; `counter_cost_10k_nft` is the median of the rounds' ratios. Only the first
  packet of a connection walks the nat chains (and updates a map element's counter); every
  packet passes the forward chain's counted accept. iptables has no such figure: its rules
  always count (x_tables keeps a counter per rule, and iptables-nft writes a counter into
  every rule it makes).
- **nat_status at 10,000 forwards** (`status_10k_s_*`). A fresh namespace gets the rendered
  10,000-forward script (with counters) from the kernel tool; then `ansible-playbook` runs
  one `ipmasq.gateway.nat_status` task with its defaults (auto backend, top 10, every
  forward's counters in the result), timed like the other playbooks and compared with
  `floor_s`. Before the first timed run an untimed playbook checks that the result holds
  10,000 forward rows, each with its counters.
""" % dict(s, conn=conn)


def fleet_text(out):
    """How the fleet figures are measured, and the CPU each gateway costs."""
    fleet = out["details"].get("fleet")
    lines = ["## Fleet\n"]
    lines.append(
        "`fleet_N_s` is the wall time of `ansible-playbook -i INVENTORY playbooks/site.yml "
        "--forks 20` converging N gateways for the first time (`benchmarks/fleet.py`; "
        "`python benchmarks/fleet.py --counts 1,5 --repeats 1` runs it alone). Each gateway "
        "is a privileged systemd container from the test image (`make image`), reached with "
        "the `containers.podman.podman` connection. Gateway n has its own LAN network "
        "(172.30.(199+n).0/24 on `lan0`) and all share one WAN (198.51.100.192/27 on "
        "`wan0`), every network `--internal`; odd gateways use nftables, even ones "
        "iptables, and each has masquerade, the inbound drop, two conntrack timeouts and "
        "three port forwards from its host variables. For every sample the containers are "
        "new (`podman run --replace`) and the timer starts once systemd has finished booting "
        "in all of them: container start and boot are not timed. The counts run "
        "round-robin, one of each per round, and the figure is the median of the rounds. "
        "A sample counts only if the recap shows every gateway changed and none failed or "
        "unreachable, and every gateway then holds its rules (its `inet ipmasq` table or "
        "IPMASQ chains with the masquerade and each forward, and `net.ipv4.ip_forward=1`). "
        "The containers and networks carry the label `org.ipmasq.benchmark=fleet` and are "
        "removed at the end, also after a failure.\n")
    if not fleet:
        return "\n".join(lines)
    rows = []
    one = out.get("fleet_1_s")
    for count in fleet["counts"]:
        key = "fleet_%d_s" % count
        cpu = fleet.get("cpu_s", {}).get(str(count), [])
        ctl = [c["controller_s"] / count for c in cpu]
        cont = [c["containers_s"] / count for c in cpu if c.get("containers_s") is not None]
        busy = [c["machine_s"] for c in cpu]
        rows.append((count, fmt(key, out.get(key)),
                     "%.1fx" % (out[key] / one) if out.get(key) and one else "",
                     "%.1f s" % statistics.median(ctl) if ctl else "",
                     "%.1f s" % statistics.median(cont) if cont else "",
                     "%.0f%%" % (100 * statistics.median(busy) / (fleet["cpu_count"] * out[key]))
                     if busy and out.get(key) else ""))
    lines.append("CPU time during each converge (median of the rounds): *controller* is "
                 "`ansible-playbook` and the `podman` commands it runs, *containers* is what "
                 "ran inside the gateways (modules, `podman exec` processes), each per "
                 "gateway; *machine busy* is the share of all %d CPUs busy during the run, "
                 "anything else running on the machine included.\n" % fleet["cpu_count"])
    lines.append(_table(rows, ("gateways", "site.yml", "x fleet_1_s", "controller CPU / gw",
                               "container CPU / gw", "machine busy")) + "\n")
    return "\n".join(lines)


def analysis_text(out):
    floor = out["floor_s"]
    lines = ["## Reading the figures\n"]
    nft200, ipt200 = out.get("nat_rules_200_s_nft"), out.get("nat_rules_200_s_iptables")
    lines.append(
        "- **Against the builtin loop.** The loop pays a whole module run (AnsiballZ payload, "
        "a new Python, `iptables -C`, `iptables -I`) for every rule: %s for 200 forwards, "
        "%s again to find that nothing changed. nat_rules does one read, one diff and one "
        "transaction: %s (nftables) and %s (iptables), %.0fx faster, and its re-run is "
        "%.0fx faster than the loop's."
        % (fmt("s", out["builtin_loop_200_s"]), fmt("s", out["builtin_loop_200_rerun_s"]),
           fmt("s", nft200), fmt("s", ipt200), out["speedup_vs_builtin_200"],
           out["speedup_vs_builtin_200_rerun"]))
    rest = nft200 - floor - out.get("raw_200_s_nft", 0)
    lines.append(
        "- **Against the floor.** Of the %s a 200-forward nat_rules run takes, %s is the "
        "ansible-playbook floor; the kernel tool alone needs %s. What is left (%s) is the "
        "module: AnsiballZ transfer and start, argument validation, reading the ruleset, "
        "planning, `nft -c` before `nft -f`, and returning before/after."
        % (fmt("s", nft200), fmt("s", floor), fmt("s", out.get("raw_200_s_nft")),
           fmt("s", rest) if rest > 0 else "nothing measurable: less than the run-to-run "
           "noise of the floor"))
    if out.get("conn_rate_10_fwd_nft") and out.get("conn_rate_10k_fwd_nft"):
        text = ("- **Per-packet cost.** With nftables the forwards live in one map, so the "
                "connection rate with 10,000 forwards is %.0f%% of the rate with 10"
                % (100 * out["conn_rate_10k_fwd_nft"] / out["conn_rate_10_fwd_nft"]))
        if out.get("conn_rate_10k_fwd_iptables"):
            text += ("; with iptables each forward is a rule, walked in order for the first "
                     "packet of every connection, and the rate drops to %.1f%% (%s against %s)"
                     % (100 * out["conn_rate_10k_fwd_iptables"] / out["conn_rate_10_fwd_iptables"],
                        fmt("conn_rate", out["conn_rate_10k_fwd_iptables"]),
                        fmt("conn_rate", out["conn_rate_10_fwd_iptables"])))
        lines.append(text + ".")
    if out.get("counter_cost_10k_nft"):
        lines.append(
            "- **Counters.** With a counter on every rule and on every map element, the "
            "10,000-forward nftables gateway takes %s new connections per second against %s "
            "without counters, measured in the same rounds: a ratio of %.3f (the rounds' "
            "ratios range %s-%s, the noise of the measurement)." % (
                fmt("conn_rate", out["conn_rate_10k_fwd_nft"]),
                fmt("conn_rate", out["conn_rate_10k_fwd_nft_nocounters"]),
                out["counter_cost_10k_nft"],
                "%.3f" % min(out["samples"]["counter_cost_10k_nft"]),
                "%.3f" % max(out["samples"]["counter_cost_10k_nft"])))
    if out.get("status_10k_s_nft"):
        text = ("- **nat_status.** Reading a gateway with 10,000 forwards and their counters "
                "takes %s with nftables, %.2f x the floor"
                % (fmt("s", out["status_10k_s_nft"]), out["status_10k_s_nft"] / floor))
        if out.get("status_10k_s_iptables"):
            text += ", and %s with iptables (%.2f x)" % (
                fmt("s", out["status_10k_s_iptables"]), out["status_10k_s_iptables"] / floor)
        lines.append(text + ".")
    lines.append("")
    lines.append(where_time_goes(out))
    return "\n".join(lines) + "\n"


def _pretty(name):
    """cProfile's names for built-ins, readable: ``~:<built-in method x>`` -> ``x (built-in)``."""
    name = re.sub(r" of type object at 0x[0-9a-f]+", "", name)
    match = re.match(r"~:<(?:built-in method|method) '?([^'>]+)'?(?: of '([^']+)' objects)?>$", name)
    if match:
        return "%s%s (built-in)" % (match.group(2) + "." if match.group(2) else "", match.group(1))
    return name


def _mb(n):
    return "%.1f MB" % (n / 1e6)


def where_time_goes(out):
    extra = out["details"]
    floor = out["floor_s"]
    parts = ["## Where the time goes\n"]
    prof = extra.get("module_profile_10k")
    if prof:
        parts.append(
            "At 10,000 forwards. *module alone* is the module run in-process "
            "(`benchmarks/profile_module.py`: `main()` with the forwards as "
            "`ANSIBLE_MODULE_ARGS`, no ansible-playbook). *controller* is what remains of "
            "the playbook time after the floor: reading and templating the config into the "
            "module arguments, shipping them, and decoding, tagging and passing back the "
            "module's result. The phase "
            "split comes from a second run under cProfile, which inflates Python-heavy "
            "phases: read it as shares.\n")
        rows = []
        for name in sorted(prof):
            backend, step = name.split("_")
            playbook_key = "nat_rules_10k_%s_%s" % ("s" if step == "apply" else "rerun_s", backend)
            playbook_s = out.get(playbook_key)
            module_s = prof[name]["seconds"]
            rest = playbook_s - floor - module_s if playbook_s else None
            phases = prof[name]["profile"]["phases_s"]
            rows.append((backend, step, fmt("s", playbook_s), fmt("s", floor),
                         fmt("s", module_s), fmt("s", rest), _mb(prof[name]["result_bytes"]),
                         "; ".join("%s %.2f s" % (k, v) for k, v in phases.items() if v >= 0.01)))
        parts.append(_table(rows, ("backend", "run", "ansible-playbook", "floor",
                                   "module alone", "controller", "module result",
                                   "module phases, profiled (cumulative)")) + "\n")
        sizes = prof[sorted(prof)[-1]].get("result_key_bytes", {})
        if sizes:
            parts.append("The module's result on a no-change re-run (%s), by key: %s.\n" % (
                sorted(prof)[-1].replace("_", " "),
                ", ".join("`%s` %s" % (k, _mb(v)) for k, v in
                          sorted(sizes.items(), key=lambda kv: -kv[1]) if v > 10000)))
        parts.append("Hottest functions by own time (profiled, 10,000 forwards):\n")
        for name in sorted(prof):
            top = prof[name]["profile"]["top"][:8]
            parts.append("- %s: %s" % (name.replace("_", " "), "; ".join(
                "`%s` %.2f s (%d calls)" % (_pretty(t["function"]), t["tottime"], t["calls"])
                for t in top)))
        parts.append("")
    diff = extra.get("diff_100k")
    if diff:
        phases = diff.get("phases_s", {})
        parts.append(
            "`diff_100k_s` (%s) is `plan.plan_change` alone. Its steps, timed one by one: %s. "
            "Around it, not part of the figure but paid by a real run of that size: "
            "`model.build_config` %.2f s, `nft.parse` of the rendered text %.2f s, "
            "`nft.render_full` %.2f s.\n" % (
                fmt("s", diff["plan_change_s"]),
                ", ".join("`%s` %.2f s" % kv for kv in phases.items()
                          if isinstance(kv[1], float)),
                diff["build_config_s"], diff["parse_s"], diff["render_full_s"]))
        if diff.get("profile"):
            parts.append("Hottest functions of one plan_change (cProfile, own time): %s.\n" % "; ".join(
                "`%s` %.2f s (%d calls)" % (_pretty(t["function"]), t["tottime"], t["calls"])
                for t in diff["profile"][:10]))
    return "\n".join(parts)
