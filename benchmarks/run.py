"""Benchmarks of ipmasq.gateway.nat_rules against a loop of ansible.builtin.iptables tasks
and against the kernel tools alone.

    make bench              # full run, about 13 minutes on 2 cores, the fleet included
    make bench QUICK=1      # under 3 minutes: fewer rules for the builtin loop, fewer repeats

A full run rewrites benchmarks/results.json, docs/benchmarks.md and docs/benchmarks.png; a
quick run writes the same three into benchmarks/.work/quick/ and leaves those alone.

Needs root, nft, iptables, conntrack and iproute2. Everything that touches rules runs in
network namespaces this script creates (``lab.py``) and deletes in ``finally``; traffic
flows only between them. Each figure is the median of several runs, and figures that
are compared are measured in the same run, round-robin, so a busy machine slows all of
them alike.
"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / ".work"
sys.path.insert(0, str(HERE))

# pylint: disable=wrong-import-position
import fleet as fleet_bench  # noqa: E402
import lab  # noqa: E402
import report  # noqa: E402

BACKENDS = {"nftables": "nft", "iptables": "iptables"}
TARGET_PORT = 7000  # the LAN server's port behind the measured forward
PLAYBOOK_TIMEOUT = 1200

MODES = {
    "full": {
        "repeats": 5, "builtin_rules": 200, "builtin_repeats": 3,
        "nat_counts": (200, 1000, 10000), "big_backends": ("nftables", "iptables"),
        "conn": [("nftables", 10), ("nftables", 10000), ("nftables", 10000, "nocounters"),
                 ("iptables", 10), ("iptables", 10000)],
        "conn_seconds": 3.0, "conn_count": 30000, "conn_repeats": 5,
        "diff_repeats": 3, "profile": True, "fleet": True,
    },
    "quick": {
        "repeats": 3, "builtin_rules": 50, "builtin_repeats": 2,
        "nat_counts": (200, 10000), "big_backends": ("nftables",),
        "conn": [("nftables", 10), ("nftables", 10000), ("nftables", 10000, "nocounters"),
                 ("iptables", 10)],
        "conn_seconds": 1.0, "conn_count": 10000, "conn_repeats": 3,
        "diff_repeats": 3, "profile": False, "fleet": False,
    },
}

PLAYBOOKS = {
    "floor.yml": """\
- name: Floor - one trivial task
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Ping
      ansible.builtin.ping:
""",
    # The floor plus reading the 10,000-forward config the way nat_rules.yml does (the
    # assert makes the lazy template run); no module gets the data.
    "floor_vars.yml": """\
- name: Floor - one trivial task, plus the forwards read as nat_rules.yml reads them
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Ping
      ansible.builtin.ping:
    - name: Read the forwards
      ansible.builtin.assert:
        that: lookup('ansible.builtin.file', bench_config_file) | length > 0
        quiet: true
""",
    # config is handed over as the JSON text (the module's dict option decodes it): at
    # 10,000 forwards `| from_json` here costs ansible-core about 0.7 s more CPU.
    "nat_rules.yml": """\
- name: Port forwards with ipmasq.gateway.nat_rules, one task
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Apply the forwards
      ipmasq.gateway.nat_rules:
        backend: "{{ bench_backend }}"
        state: replaced
        persist: false
        config: "{{ lookup('ansible.builtin.file', bench_config_file) }}"
""",
    # nat_status as an operator runs it, on a gateway holding 10,000 forwards with counters
    "nat_status.yml": """\
- name: Status of a gateway with ipmasq.gateway.nat_status, one task
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Read the status
      ipmasq.gateway.nat_status:
""",
    # the same, once per gateway and not timed: the status has every forward's counters
    "nat_status_check.yml": """\
- name: Check what nat_status reads
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Read the status
      ipmasq.gateway.nat_status:
      register: bench_status
    - name: Every forward has its counters
      ansible.builtin.assert:
        that:
          - bench_status.backend == bench_backend
          - bench_status.counters.port_forwards | length == bench_count | int
          - bench_status.counters.port_forwards | selectattr('packets', 'none') | list | length == 0
        quiet: true
""",
    "builtin.yml": """\
- name: Port forwards with ansible.builtin.iptables, one task run per rule
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Apply the forwards
      ansible.builtin.iptables:
        table: nat
        chain: PREROUTING
        in_interface: "{{ item.in_interface }}"
        protocol: "{{ item.protocol }}"
        destination_port: "{{ item.port }}"
        jump: DNAT
        to_destination: "{{ item.to_address }}:{{ item.to_port }}"
      loop: "{{ (lookup('ansible.builtin.file', bench_config_file) | from_json).port_forwards }}"
""",
    "render.yml": """\
- name: Render the benchmark rulesets with nat_rules state=rendered
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Render each ruleset
      ipmasq.gateway.nat_rules:
        state: rendered
        backend: "{{ item.backend }}"
        config: "{{ lookup('ansible.builtin.file', item.config) | from_json }}"
      loop: "{{ bench_renders }}"
      loop_control:
        label: "{{ item.dest }}"
      register: bench_rendered
    - name: Write each script
      ansible.builtin.copy:
        content: "{{ item.rendered | join('\\n') }}\\n"
        dest: "{{ item.item.dest }}"
        mode: "0644"
      loop: "{{ bench_rendered.results }}"
      loop_control:
        label: "{{ item.item.dest }}"
""",
}


def label(count):
    return "%dk" % (count // 1000) if count >= 1000 and count % 1000 == 0 else str(count)


def forwards(count):
    """``count`` TCP forwards on wan0; the last (highest port, so last in an iptables
    chain) leads to the LAN server, the others to other LAN hosts."""
    out = [{"in_interface": "wan0", "protocol": "tcp", "port": 10000 + i,
            "to_address": "172.30.77.%d" % (100 + i % 100), "to_port": 8000 + i % 1000}
           for i in range(count - 1)]
    out.append({"in_interface": "wan0", "protocol": "tcp", "port": 10000 + count - 1,
                "to_address": lab.LAN_SERVER, "to_port": TARGET_PORT})
    return out


def target_port(count):
    return 10000 + count - 1


class Bench:
    def __init__(self, mode):
        self.mode = mode
        self.cfg = MODES[mode]
        self.labs = lab.Labs()
        self.samples = {}
        self.results = {}
        self.extra = {}
        self.python = sys.executable
        self.ansible_playbook = fleet_bench.ansible_playbook_path()
        collections_path()  # the link behind ansible_env()'s default ANSIBLE_COLLECTIONS_PATH
        self.env = fleet_bench.ansible_env()
        self.module_env = dict(self.env, PYTHONPATH=self.env["ANSIBLE_COLLECTIONS_PATH"])

    # ------------------------------------------------------------ plumbing
    def config_file(self, count):
        """The ``config`` of nat_rules with ``count`` forwards, as JSON."""
        return WORK / ("config_%d.json" % count)

    def rendered(self, backend, count, variant=None):
        """The script nat_rules renders; variant "nocounters": the same without counter
        statements (nftables only: iptables rules always count)."""
        return WORK / ("rendered_%s_%d%s.txt" % (backend, count, "_" + variant if variant else ""))

    def playbook(self, ns, name, config=None, extra=None, expect_changed=None, vars_file=None):
        argv = [self.ansible_playbook, "-i", "localhost,", "-c", "local",
                "-e", "ansible_python_interpreter={{ ansible_playbook_python }}"]
        if config:
            argv += ["-e", "bench_config_file=%s" % self.config_file(config)]
        for key, value in (extra or {}).items():
            argv += ["-e", "%s=%s" % (key, value)]
        if vars_file:
            argv += ["-e", "@%s" % vars_file]
        argv.append(str(WORK / name))
        start = time.perf_counter()
        proc = subprocess.run(ns.argv(*argv), cwd=WORK, env=self.env, capture_output=True,
                              text=True, timeout=PLAYBOOK_TIMEOUT, check=False)
        seconds = time.perf_counter() - start
        recap = re.search(r"ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)",
                          proc.stdout)
        if proc.returncode != 0 or not recap or recap.group(4) != "0":
            raise lab.CommandError("%s failed (rc=%s):\n%s\n%s" % (
                name, proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:]))
        changed = int(recap.group(2)) > 0
        if expect_changed is not None and changed != expect_changed:
            raise lab.CommandError("%s: expected changed=%s, got %s:\n%s" % (
                name, expect_changed, changed, proc.stdout[-3000:]))
        return seconds

    def add(self, key, value):
        self.samples.setdefault(key, []).append(value)

    @staticmethod
    def say(text):
        print(text, flush=True)

    # ------------------------------------------------------------ preparation
    def prepare(self):
        WORK.mkdir(exist_ok=True)
        for name, text in PLAYBOOKS.items():
            (WORK / name).write_text(text)
        counts = {10, 200, self.cfg["builtin_rules"]} | set(self.cfg["nat_counts"])
        for count in sorted(counts):
            self.config_file(count).write_text(json.dumps({"port_forwards": forwards(count)}))
        renders = [{"backend": b, "config": str(self.config_file(n)),
                    "dest": str(self.rendered(b, n))}
                   for b in BACKENDS for n in (10, 200, 10000)
                   if n < 10000 or b in self.cfg["big_backends"]]
        for old in WORK.glob("rendered_*"):
            old.unlink()
        (WORK / "renders.json").write_text(json.dumps({"bench_renders": renders}))
        with self.labs.scratch("render") as ns:
            # Also the warm-up: the first run compiles and caches what later runs reuse.
            seconds = self.playbook(ns, "render.yml", vars_file=WORK / "renders.json")
        self.say("rendered %d scripts with state=rendered in %.2f s (not a figure)"
                 % (len(renders), seconds))
        for backend, count, *variant in self.cfg["conn"]:
            if variant == ["nocounters"]:
                self.rendered(backend, count, "nocounters").write_text(
                    without_counters(self.rendered(backend, count).read_text()))
        for count in (10, 10000):
            path = self.rendered("iptables", count)
            if path.exists():
                last = [x for x in path.read_text().splitlines()
                        if x.startswith("-A IPMASQ-PREROUTING")][-1]
                if "--dport %d " % target_port(count) not in last:
                    raise lab.CommandError("the measured forward is not last in %s" % path)

    # ------------------------------------------------------------ counting rules
    @staticmethod
    def count_nft_elements(ns):
        data = json.loads(ns.run("nft", "-j", "list", "map", "inet", "ipmasq", "fwd4").stdout)
        return sum(len(x["map"].get("elem", ())) for x in data["nftables"] if "map" in x)

    @staticmethod
    def count_iptables(ns, chain):
        out = ns.run("iptables-save", "-t", "nat").stdout
        return sum(1 for line in out.splitlines() if line.startswith("-A %s " % chain))

    def check_count(self, ns, backend, count, chain="IPMASQ-PREROUTING"):
        got = self.count_nft_elements(ns) if backend == "nftables" \
            else self.count_iptables(ns, chain)
        if got != count:
            raise lab.CommandError("expected %d forwards in %s, found %d" % (count, ns, got))

    # ------------------------------------------------------------ jobs (one sample each)
    def job_floor(self, first):
        with self.labs.scratch("gw") as ns:
            seconds = self.playbook(ns, "floor.yml")
        self.add("floor_s", seconds)
        return "floor %.3f s" % seconds

    def job_floor_vars(self, first):
        """The floor plus reading the 10,000-forward config the way nat_rules.yml does
        (``lookup('file')`` in the task); nothing else uses it."""
        with self.labs.scratch("gw") as ns:
            seconds = self.playbook(ns, "floor_vars.yml", 10000)
        self.add("floor_10k_vars_s", seconds)
        return "floor with the 10k config read %.3f s" % seconds

    def job_nat_rules(self, backend, count, first):
        extra = {"bench_backend": backend}
        with self.labs.scratch("gw") as ns:
            apply_s = self.playbook(ns, "nat_rules.yml", count, extra, True)
            if first:
                self.check_count(ns, backend, count)
            rerun_s = self.playbook(ns, "nat_rules.yml", count, extra, False)
        short = BACKENDS[backend]
        self.add("nat_rules_%s_s_%s" % (label(count), short), apply_s)
        self.add("nat_rules_%s_rerun_s_%s" % (label(count), short), rerun_s)
        return "nat_rules %s %s: apply %.3f s, re-run %.3f s" % (label(count), short, apply_s,
                                                                 rerun_s)

    def job_status(self, backend, count, first):
        """nat_status on a gateway that holds ``count`` forwards (loaded with the kernel tool,
        as rendered: with counters)."""
        extra = {"bench_backend": backend, "bench_count": count}
        with self.labs.scratch("st") as ns:
            lab.run(ns.argv(self.python, HERE / "kernel_apply.py", backend,
                            self.rendered(backend, count)))
            if first:
                self.check_count(ns, backend, count)
                self.playbook(ns, "nat_status_check.yml", None, extra, False)
            seconds = self.playbook(ns, "nat_status.yml", None, extra, False)
        self.add("status_%s_s_%s" % (label(count), BACKENDS[backend]), seconds)
        return "nat_status %s %s: %.3f s" % (label(count), BACKENDS[backend], seconds)

    def job_builtin(self, count, first):
        with self.labs.scratch("gw") as ns:
            apply_s = self.playbook(ns, "builtin.yml", count, None, True)
            if first:
                self.check_count(ns, "iptables", count, chain="PREROUTING")
            rerun_s = self.playbook(ns, "builtin.yml", count, None, False)
        self.add("builtin_loop_%d_s" % count, apply_s)
        self.add("builtin_loop_%d_rerun_s" % count, rerun_s)
        return "builtin loop %d: apply %.2f s, re-run %.2f s" % (count, apply_s, rerun_s)

    def job_raw(self, backend, count, first):
        with self.labs.scratch("gw") as ns:
            out = ns.run(self.python, HERE / "kernel_apply.py", backend,
                         self.rendered(backend, count)).stdout
            if first:
                self.check_count(ns, backend, count)
        seconds = float(out.strip())
        short = BACKENDS[backend]
        self.add("raw_%s_s_%s" % (label(count), short), seconds)
        return "raw %s %s: %.4f s" % (short, label(count), seconds)

    def ansible_jobs(self):
        """(name, repeats, callable(first)) in the order each round runs them."""
        cfg, reps = self.cfg, self.cfg["repeats"]
        jobs = [("floor", reps, self.job_floor)]
        for count in cfg["nat_counts"]:
            for backend in BACKENDS:
                if count > 1000 and backend not in cfg["big_backends"]:
                    continue
                jobs.append(("nat_rules", reps if count <= 1000 else 3,
                             lambda first, b=backend, n=count: self.job_nat_rules(b, n, first)))
        for backend in cfg["big_backends"]:
            jobs.append(("status", 3, lambda first, b=backend: self.job_status(b, 10000, first)))
        if cfg["profile"]:
            jobs.append(("floor_vars", 3, self.job_floor_vars))
        jobs.append(("builtin", cfg["builtin_repeats"],
                     lambda first: self.job_builtin(cfg["builtin_rules"], first)))
        for backend in BACKENDS:
            for count in (200, 10000):
                if self.rendered(backend, count).exists():
                    jobs.append(("raw", reps, lambda first, b=backend, n=count:
                                 self.job_raw(b, n, first)))
        return jobs

    def run_rounds(self, jobs):
        rounds = max(r for _name, r, _fn in jobs)
        for index in range(rounds):
            for _name, repeats, fn in jobs:
                if index < repeats:
                    self.say("  [round %d/%d] %s" % (index + 1, rounds, fn(index == 0)))

    # ------------------------------------------------------------ pure planning
    def diff_100k(self):
        argv = [self.python, HERE / "plan_bench.py", "--rules", "100000", "--changed", "0.01",
                "--repeats", str(self.cfg["diff_repeats"])]
        if self.cfg["profile"]:
            argv += ["--profile", "15"]
        out = lab.run(argv, env=self.module_env, timeout=600).stdout
        data = json.loads(out)
        self.samples["diff_100k_s"] = data["plan_change_samples"]
        self.extra["diff_100k"] = data
        self.say("diff_100k_s %.3f s (plan_change of 100,000 forwards, 1%% changed; samples %s)"
                 % (data["plan_change_s"], data["plan_change_samples"]))
        self.say("  around it, not timed as the figure: build_config %.2f s, layout %.2f s, "
                 "render_full %.2f s, parse %.2f s; phases %s" % (
                     data["build_config_s"], data["layout_s"], data["render_full_s"],
                     data["parse_s"], data.get("phases_s")))

    # ------------------------------------------------------------ connection rate
    def conn_lab(self, backend, count, variant=None):
        cli, gw, lan = self.labs.forwarding_lab()
        self.labs.spawn(lan, [self.python, HERE / "loadgen.py", "server", "--port",
                              TARGET_PORT], lifetime=900)
        lab.run(gw.argv(self.python, HERE / "kernel_apply.py", backend,
                        self.rendered(backend, count, variant)))
        self.check_count(gw, backend, count)
        for _attempt in range(50):  # wait for the server; the probe also proves the forward works
            probe = self.client(cli, count, 5, 2.0)
            if probe["connections"] == 5:
                break
            time.sleep(0.1)
        else:
            raise lab.CommandError("no connection through the %s forward (%d forwards): %s"
                                   % (backend, count, probe))
        return cli, gw, lan

    def client(self, cli, count, connections, seconds):
        out = cli.run(self.python, HERE / "loadgen.py", "client", lab.GW_WAN, target_port(count),
                      "--count", connections, "--seconds", seconds, "--timeout", 1,
                      timeout=seconds + 60).stdout
        return json.loads(out)

    def conn_rates(self):
        cfg = self.cfg
        labs = {}
        try:
            for backend, count, *variant in cfg["conn"]:
                labs[(backend, count) + tuple(variant)] = self.conn_lab(
                    backend, count, variant[0] if variant else None)
            for index in range(cfg["conn_repeats"]):
                for (backend, count, *variant), (cli, gw, _lan) in labs.items():
                    gw.run("conntrack", "-F", check=False)
                    got = self.client(cli, count, cfg["conn_count"], cfg["conn_seconds"])
                    key = "conn_rate_%s_fwd_%s%s" % (label(count), BACKENDS[backend],
                                                     "".join("_" + v for v in variant))
                    self.add(key, got["rate"])
                    self.say("  [round %d/%d] %s: %.0f conn/s (%d in %.2f s, %d errors)" % (
                        index + 1, cfg["conn_repeats"], key, got["rate"], got["connections"],
                        got["seconds"], got["errors"]))
        finally:
            self.labs.close()  # stops the servers and deletes the labs' namespaces

    # ------------------------------------------------------------ module profile
    def module_profile(self, plain_repeats=3):
        """nat_rules main() in-process at 10k forwards: plain time (median of
        ``plain_repeats``, apply in a fresh namespace then re-run), then one profiled pair."""
        out = {}
        config = json.loads(self.config_file(10000).read_text())
        for backend in self.cfg["big_backends"]:
            args = WORK / ("module_args_%s.json" % backend)
            args.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {
                "backend": backend, "state": "replaced", "persist": False, "config": config}}))
            plain, sizes = {}, {}
            for index in range(plain_repeats + 1):
                profiled = index == plain_repeats
                with self.labs.scratch("prof") as ns:
                    for step in ("apply", "rerun"):
                        argv = [self.python, HERE / "profile_module.py", args, "--top", "12"]
                        if not profiled:
                            argv.append("--plain")
                        data = json.loads(lab.run(ns.argv(*argv), env=self.module_env,
                                                  timeout=600).stdout)
                        if data["failed"] or data["changed"] != (step == "apply"):
                            raise lab.CommandError("module run %s %s: %s" % (backend, step, data))
                        name = "%s_%s" % (BACKENDS[backend], step)
                        if profiled:
                            out[name] = {"seconds": statistics.median(plain[name]),
                                         "samples": plain[name], "profile": data,
                                         "result_bytes": sizes[name]["result_bytes"],
                                         "result_key_bytes": sizes[name]["result_key_bytes"]}
                        else:
                            plain.setdefault(name, []).append(data["seconds"])
                            sizes[name] = data
            for step in ("apply", "rerun"):
                name = "%s_%s" % (BACKENDS[backend], step)
                prof = out[name]["profile"]
                self.say("module alone, 10k %s %s: %.2f s (runs %s; profiled %.2f s: %s)" % (
                    BACKENDS[backend], step, out[name]["seconds"], out[name]["samples"],
                    prof["seconds"], ", ".join("%s %.2f" % kv for kv in prof["phases_s"].items())))
        self.extra["module_profile_10k"] = out

    # ------------------------------------------------------------ fleet
    def fleet(self):
        """site.yml converging 1, 5 and 20 fresh gateway containers (benchmarks/fleet.py),
        round-robin. Returns a note when the fleet is not measured, else None. A fleet that
        cannot be started, converged or verified records no figure, only why (the note);
        the other figures of the run are still written."""
        if not self.cfg["fleet"]:
            return "not measured in --quick mode"
        self.say("fleet: site.yml --forks %d converging %s gateway containers, %d rounds:" % (
            fleet_bench.FORKS, ", ".join(map(str, fleet_bench.COUNTS)), fleet_bench.REPEATS))
        try:
            data = fleet_bench.measure(ansible_playbook=self.ansible_playbook, env=self.env,
                                       say=self.say)
        except fleet_bench.FleetError as exc:
            self.say("fleet benchmark FAILED, no fleet figures: %s" % exc)
            return "not measured: the fleet run failed (%s)" % exc
        for count, values in data["samples"].items():
            for value in values:
                self.add("fleet_%d_s" % count, value)
        for count, values in data["floor"].items():
            for value in values:
                self.add("fleet_floor_%d_s" % count, value)
        self.extra["fleet"] = data["details"]
        return None

    # ------------------------------------------------------------ summary
    def finish(self):
        res = self.results
        for key, values in self.samples.items():
            res[key] = statistics.median(values)
        builtin_n = self.cfg["builtin_rules"]
        if builtin_n != 200:
            factor = 200 / builtin_n
            res["builtin_loop_200_s"] = res["builtin_loop_%d_s" % builtin_n] * factor
            res["builtin_loop_200_rerun_s"] = res["builtin_loop_%d_rerun_s" % builtin_n] * factor
            self.extra["builtin_extrapolated"] = "measured with %d rules, times %g" % (
                builtin_n, factor)
        for alias, key in report.ALIASES.items():
            if key in res:
                res[alias] = res[key]
        pairs = zip(self.samples.get("conn_rate_10k_fwd_nft", ()),
                    self.samples.get("conn_rate_10k_fwd_nft_nocounters", ()))
        ratios = [with_c / without for with_c, without in pairs if without]
        if ratios:  # rates measured in the same rounds: a busy moment hits both of a pair
            res["counter_cost_10k_nft"] = statistics.median(ratios)
            self.samples["counter_cost_10k_nft"] = ratios
        res["speedup_vs_builtin_200"] = res["builtin_loop_200_s"] / res["nat_rules_200_s_nft"]
        res["speedup_vs_builtin_200_rerun"] = (res["builtin_loop_200_rerun_s"]
                                               / res["nat_rules_200_rerun_s_nft"])


def without_counters(script):
    """An nft script nat_rules rendered, without its counters: the maps' counter flag and the
    counter statement of each rule (the benchmark's rules carry no comment that says it)."""
    lines = [line for line in script.splitlines() if line.strip() != "counter"]
    return "\n".join(re.sub(r" counter(?= )", "", line) for line in lines) + "\n"


def collections_path():
    root = REPO / ".build" / "collections"
    link = root / "ansible_collections" / "ipmasq" / "gateway"
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(Path("../../../.."))
    return root


def ensure_matplotlib():
    """The plot needs matplotlib, which the collection and its tests do not: rather than
    add it to requirements.txt for everyone, install the pinned set from
    benchmarks/requirements.txt into this venv the first time the benchmark needs it."""
    try:
        import matplotlib  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
        return True
    except ImportError:
        pass
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet",
                           "--disable-pip-version-check", "-r", str(HERE / "requirements.txt")],
                          check=False)
    return proc.returncode == 0


def tool_version(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False,
                              timeout=30).stdout.strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return None


def environment(mode):
    import ansible.release  # pylint: disable=import-outside-toplevel
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True, check=False).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "plugins"],
                           capture_output=True, text=True, check=False).stdout.strip()
    return {
        "mode": mode, "date": datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%d %H:%M UTC"),
        "commit": commit + ("+dirty plugins/" if dirty else ""),
        "cpus": os.cpu_count(), "kernel": platform.release(),
        "os": tool_version(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "python": platform.python_version(), "ansible_core": ansible.release.__version__,
        "nft": tool_version(["nft", "--version"]), "iptables": tool_version(["iptables", "-V"]),
        "loadavg_start": os.getloadavg(),
    }


def write_docs(out, doc_dir):
    png = doc_dir / "benchmarks.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    if ensure_matplotlib():
        report.plot(out, png)
    else:
        png = None
        print("matplotlib could not be installed: no plot", file=sys.stderr)
    report.write_doc(out, doc_dir / "benchmarks.md", png)
    print("wrote %s" % (doc_dir / "benchmarks.md"))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the short run (under 3 minutes)")
    ap.add_argument("--no-docs", action="store_true",
                    help="print and write results.json only; leave docs/ alone")
    ap.add_argument("--report-only", action="store_true",
                    help="measure nothing: rewrite docs/ from benchmarks/results.json")
    args = ap.parse_args()
    if args.report_only:
        with open(HERE / "results.json") as handle:
            write_docs(json.load(handle), REPO / "docs")
        return
    if os.geteuid() != 0:
        sys.exit("run.py needs root: it creates network namespaces")
    for tool in ("ip", "nft", "iptables-restore", "iptables-save", "conntrack"):
        if not shutil.which(tool):
            sys.exit("run.py needs %s (make deps installs it)" % tool)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    mode = "quick" if args.quick else "full"
    bench = Bench(mode)
    started = time.perf_counter()
    env = environment(mode)
    bench.say("ipmasq.gateway benchmarks, %s mode (load average at start %.2f)"
              % (mode, env["loadavg_start"][0]))
    try:
        bench.prepare()
        bench.say("ansible-playbook runs, round-robin:")
        bench.run_rounds(bench.ansible_jobs())
        bench.finish()
        report.print_ansible_summary(bench.results, bench.extra)
        bench.diff_100k()
        bench.say("connection rate through the forward:")
        bench.conn_rates()
        if bench.cfg["profile"]:
            bench.module_profile()
        fleet_note = bench.fleet()
    finally:
        bench.labs.close()
    bench.finish()
    res = bench.results
    if fleet_note:
        res.update(fleet_1_s=None, fleet_5_s=None, fleet_20_s=None, fleet_floor_1_s=None,
                   fleet_note=fleet_note)
    env["loadavg_end"] = os.getloadavg()
    env["duration_s"] = round(time.perf_counter() - started, 1)
    out = report.assemble(res, bench.samples, bench.extra, env, bench.cfg)
    report.print_summary(out)
    # The committed results and docs come from full runs; a quick run writes beside them.
    out_dir = WORK / "quick" if args.quick else HERE
    out_dir.mkdir(parents=True, exist_ok=True)
    report.write_json(out, out_dir / "results.json")
    print("wrote %s" % (out_dir / "results.json"))
    if not args.no_docs:
        write_docs(out, WORK / "quick" if args.quick else REPO / "docs")
    bench.say("done in %.0f s" % env["duration_s"])


if __name__ == "__main__":
    main()
