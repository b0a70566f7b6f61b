"""Fleet figures: ``ansible-playbook playbooks/site.yml --forks 20`` converging 1, 5 and 20
gateway containers, and the floor: a play of one ping against the same gateways.

    python benchmarks/fleet.py                      # 1, 5 and 20 gateways, median of 3
    python benchmarks/fleet.py --counts 1,5 --repeats 1
    python benchmarks/fleet.py --counts 20 --repeats 1 --profile   # + per-task timings

``make bench`` (benchmarks/run.py) calls ``measure()``. Each sample is the first converge of
fresh containers: for every repeat and count, N gateways are started from the test image
(``podman run --replace``), the script waits until systemd has finished booting in all of
them, and only the ``ansible-playbook`` process is timed. A sample counts only if the
recap shows every gateway converged without failure and every gateway then holds its
rules: its nftables table or iptables chains with the masquerade and each forward, and
IPv4 forwarding on.

The fleet: gateway ``ipmbench-fleet-gwNN`` has its own LAN network (172.30.(199+NN).0/24,
interface lan0, address .1) and all share one WAN (198.51.100.192/27, interface wan0);
odd gateways use nftables, even ones iptables; each has three port forwards. Every
network is ``--internal``. Containers and networks carry the label
``org.ipmasq.benchmark=fleet`` and are removed in ``finally``; nothing else is touched,
and rules and sysctls change only inside these containers.
"""
import argparse
import concurrent.futures
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / ".work" / "fleet"

COUNTS = (1, 5, 20)
REPEATS = 3
FORKS = 20
MAX_GATEWAYS = 20
PREFIX = "ipmbench-fleet"
LABEL = "org.ipmasq.benchmark=fleet"
WAN_NET = PREFIX + "-wan"
WAN_SUBNET = "198.51.100.192/27"
WAN_BRIDGE = "198.51.100.222"
PLAYBOOK = REPO / "playbooks" / "site.yml"
# The floor: the least a play against the same gateways costs (one ping module run each).
FLOOR_PLAYBOOK = HERE / "fleet_floor.yml"
PLAYBOOK_TIMEOUT = 1800
BOOT_TIMEOUT = 180
PODMAN_TIMEOUT = 120
START_WORKERS = 4

RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)",
                   re.M)


class FleetError(RuntimeError):
    """The fleet could not be started, converged or verified: no figure."""


def _run(argv, timeout=PODMAN_TIMEOUT, check=True, env=None):
    try:
        proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                              timeout=timeout, check=False, env=env)
    except subprocess.TimeoutExpired as exc:
        raise FleetError("%s: no answer in %d s" % (" ".join(map(str, argv)), timeout)) from exc
    except OSError as exc:
        raise FleetError("%s: %s" % (argv[0], exc)) from exc
    if check and proc.returncode != 0:
        raise FleetError("%s -> rc=%d\nstdout: %s\nstderr: %s" % (
            " ".join(str(a) for a in argv), proc.returncode, proc.stdout[-3000:],
            proc.stderr[-3000:]))
    return proc


# ---------------------------------------------------------------- the fleet's shape

def gateway(index):
    """Name, addresses and variables of gateway ``index`` (1-based)."""
    name = "%s-gw%02d" % (PREFIX, index)
    lan = "172.30.%d" % (199 + index)
    return {
        "name": name,
        "lan_net": "%s-lan%02d" % (PREFIX, index),
        "lan_subnet": lan + ".0/24",
        "lan_address": lan + ".1",
        "lan_bridge": lan + ".254",
        "wan_address": "198.51.100.%d" % (192 + index),
        "vars": {
            "ipmasq_backend": "nftables" if index % 2 else "iptables",
            "ipmasq_lan_networks": [lan + ".0/24"],
            "ipmasq_port_forwards": [
                {"protocol": "tcp", "port": 8080, "to_address": lan + ".20", "to_port": 80,
                 "comment": "web"},
                {"protocol": "udp", "port": 5353, "to_address": lan + ".53", "to_port": 53,
                 "comment": "dns"},
                {"protocol": "tcp", "port": 2222, "to_address": lan + ".22", "to_port": 22,
                 "comment": "ssh"},
            ],
        },
    }


def inventory(count):
    """The inventory site.yml runs against: one group ``gateways``, per-host variables."""
    hosts = {}
    for index in range(1, count + 1):
        gw = gateway(index)
        hosts[gw["name"]] = gw["vars"]
    return {"all": {
        "vars": {"ansible_connection": "containers.podman.podman",
                 "ansible_python_interpreter": "/usr/bin/python3"},
        "children": {"gateways": {
            "vars": {"ipmasq_wan_interface": "wan0",
                     "ipmasq_inbound_policy": "drop",
                     "ipmasq_conntrack_timeouts": {"tcp_established": 7200, "udp": 60}},
            "hosts": hosts}}}}


# ---------------------------------------------------------------- podman

def image_ref():
    ref = os.environ.get("IPMASQ_IMAGE")
    if not ref:
        ref = _run([REPO / "scripts" / "build-image.sh", "--print-ref"]).stdout.strip()
    return ref


def ensure_image(say):
    if not shutil.which("podman"):
        raise FleetError("podman is not installed (make deps installs it)")
    ref = image_ref()
    if _run(["podman", "image", "exists", ref], check=False).returncode != 0:
        say("fleet: image %s is missing, building it (scripts/build-image.sh)" % ref)
        _run([REPO / "scripts" / "build-image.sh"], timeout=1200)
        _run(["podman", "image", "exists", ref])
    return ref


def cleanup():
    """Remove every container, then every network, with the benchmark's label."""
    errors = []
    ids = _run(["podman", "ps", "-aq", "--filter", "label=" + LABEL], check=False).stdout.split()
    if ids:
        proc = _run(["podman", "rm", "--force", "--time", "0"] + ids, check=False, timeout=300)
        if proc.returncode != 0:
            errors.append(proc.stderr.strip())
    nets = _run(["podman", "network", "ls", "-q", "--filter", "label=" + LABEL],
                check=False).stdout.split()
    if nets:
        proc = _run(["podman", "network", "rm", "--force"] + nets, check=False)
        if proc.returncode != 0:
            errors.append(proc.stderr.strip())
    if errors:
        raise FleetError("cleanup left something behind: %s" % "; ".join(errors))


def remove_containers():
    ids = _run(["podman", "ps", "-aq", "--filter", "label=" + LABEL], check=False).stdout.split()
    if ids:
        _run(["podman", "rm", "--force", "--time", "0"] + ids, timeout=300)


def create_networks(count):
    _run(["podman", "network", "create", "--internal", "--label", LABEL,
          "--subnet", WAN_SUBNET, "--gateway", WAN_BRIDGE, WAN_NET])
    for index in range(1, count + 1):
        gw = gateway(index)
        _run(["podman", "network", "create", "--internal", "--label", LABEL,
              "--subnet", gw["lan_subnet"], "--gateway", gw["lan_bridge"], gw["lan_net"]])


def start_container(image, index):
    gw = gateway(index)
    _run(["podman", "run", "--detach", "--replace", "--name", gw["name"],
          "--hostname", gw["name"], "--label", LABEL, "--privileged", "--systemd=always",
          "--network=%s:ip=%s,interface_name=lan0" % (gw["lan_net"], gw["lan_address"]),
          "--network=%s:ip=%s,interface_name=wan0" % (WAN_NET, gw["wan_address"]),
          image, "/sbin/init"], timeout=300)
    return gw["name"]


def wait_booted(name, deadline):
    """Until systemd in ``name`` has finished starting up (running or degraded)."""
    state = "?"
    while time.monotonic() < deadline:
        left = max(1, int(deadline - time.monotonic()))
        proc = _run(["podman", "exec", name, "timeout", str(left), "systemctl",
                     "is-system-running", "--wait"], check=False, timeout=left + 30)
        state = proc.stdout.strip()
        if state in ("running", "degraded"):
            return state
        # "offline": PID 1 does not answer on its bus yet, right after the container starts.
        if state not in ("initializing", "starting", "offline", ""):
            raise FleetError("%s: systemd is %s" % (name, state))
        time.sleep(0.5)
    raise FleetError("%s: systemd did not finish booting in %d s (last state %s)"
                     % (name, BOOT_TIMEOUT, state))


def start_fleet(image, count):
    """Start gateways 1..count (fresh containers) and wait until all have booted."""
    remove_containers()
    with concurrent.futures.ThreadPoolExecutor(START_WORKERS) as pool:
        names = list(pool.map(lambda i: start_container(image, i), range(1, count + 1)))
        deadline = time.monotonic() + BOOT_TIMEOUT
        states = list(pool.map(lambda n: wait_booted(n, deadline), names))
    degraded = [n for n, s in zip(names, states) if s != "running"]
    return names, degraded


# ---------------------------------------------------------------- verification

def verify_gateway(index):
    """The rules site.yml must have left in gateway ``index``; raise if any is missing."""
    gw = gateway(index)
    name, wanted = gw["name"], gw["vars"]
    problems = []
    forwarding = _run(["podman", "exec", name, "cat", "/proc/sys/net/ipv4/ip_forward"],
                      check=False).stdout.strip()
    if forwarding != "1":
        problems.append("net.ipv4.ip_forward is %r" % forwarding)
    forwards = wanted["ipmasq_port_forwards"]
    if wanted["ipmasq_backend"] == "nftables":
        proc = _run(["podman", "exec", name, "nft", "-j", "list", "table", "inet", "ipmasq"],
                    check=False)
        if proc.returncode != 0:
            problems.append("no table inet ipmasq: %s" % proc.stderr.strip())
        else:
            text = proc.stdout
            items = json.loads(text)["nftables"]
            chains = {x["chain"]["name"] for x in items if "chain" in x}
            for chain in ("prerouting", "postrouting", "forward"):
                if chain not in chains:
                    problems.append("chain %s missing" % chain)
            if '"masquerade"' not in text:
                problems.append("no masquerade rule")
            for fwd in forwards:
                if fwd["to_address"] not in text or str(fwd["port"]) not in text:
                    problems.append("forward %s/%s missing" % (fwd["protocol"], fwd["port"]))
    else:
        nat = _run(["podman", "exec", name, "iptables-save", "-t", "nat"]).stdout
        filt = _run(["podman", "exec", name, "iptables-save", "-t", "filter"]).stdout
        dnat = [x for x in nat.splitlines()
                if x.startswith("-A IPMASQ-PREROUTING") and "-j DNAT" in x]
        if len(dnat) != len(forwards):
            problems.append("%d DNAT rules in IPMASQ-PREROUTING, want %d"
                            % (len(dnat), len(forwards)))
        if not any(x.startswith("-A IPMASQ-POSTROUTING") and "-j MASQUERADE" in x
                   and wanted["ipmasq_lan_networks"][0] in x for x in nat.splitlines()):
            problems.append("no MASQUERADE for %s" % wanted["ipmasq_lan_networks"][0])
        for table, text, chain in (("nat", nat, "PREROUTING"), ("nat", nat, "POSTROUTING"),
                                   ("filter", filt, "FORWARD")):
            if "-A %s -j IPMASQ-%s" % (chain, chain) not in text:
                problems.append("no jump %s -> IPMASQ-%s (%s)" % (chain, chain, table))
        if not any(x.startswith("-A IPMASQ-FORWARD") for x in filt.splitlines()):
            problems.append("IPMASQ-FORWARD is empty")
    if problems:
        raise FleetError("%s (%s): %s" % (name, wanted["ipmasq_backend"], "; ".join(problems)))


def verify_fleet(count):
    with concurrent.futures.ThreadPoolExecutor(START_WORKERS) as pool:
        list(pool.map(verify_gateway, range(1, count + 1)))


# ---------------------------------------------------------------- timing

def ansible_playbook_path():
    """The ansible-playbook next to this Python (the venv's), else the one on PATH."""
    path = Path(sys.executable).parent / "ansible-playbook"
    if path.exists():
        return str(path)
    return shutil.which("ansible-playbook") or "ansible-playbook"


def ansible_env(base=None):
    env = dict(base or os.environ)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = "%s:%s" % (venv_bin, env.get("PATH", ""))
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(REPO / ".build" / "collections"))
    env.setdefault("CONTAINERS_CONF", str(REPO / "containers.conf"))
    env.update(ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_RETRY_FILES_ENABLED="0")
    return env


def container_cpu_s(names):
    """CPU seconds used so far by the containers (cgroup v1 cpuacct or v2 cpu.stat)."""
    total = 0.0
    for name in names:
        path = _run(["podman", "inspect", "--format", "{{.State.CgroupPath}}", name]).stdout.strip()
        v1 = Path("/sys/fs/cgroup/cpuacct") / path.lstrip("/") / "cpuacct.usage"
        v2 = Path("/sys/fs/cgroup") / path.lstrip("/") / "cpu.stat"
        if v1.exists():
            total += int(v1.read_text()) / 1e9
        elif v2.exists():
            usage = dict(x.split() for x in v2.read_text().splitlines())
            total += int(usage["usage_usec"]) / 1e6
        else:
            return None
    return total


def machine_busy_s():
    """CPU seconds the whole machine spent busy so far (/proc/stat, all CPUs)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    ticks = os.sysconf("SC_CLK_TCK")
    return (sum(fields[:8]) - fields[3] - fields[4]) / ticks


def converge(ansible_playbook, env, count, tag, profile=False, playbook=PLAYBOOK):
    """Time site.yml (or ``playbook``) against gateways 1..count; check the recap.

    Returns (seconds, cpu): cpu holds the CPU seconds of the controller (ansible-playbook
    and the podman clients it runs), of the containers (modules, podman exec inside them)
    and of the whole machine (anything else running included) during the run."""
    WORK.mkdir(parents=True, exist_ok=True)
    inv = WORK / ("inventory_%d.json" % count)
    inv.write_text(json.dumps(inventory(count), indent=1))
    run_env = dict(env)
    if profile:
        run_env["ANSIBLE_CALLBACKS_ENABLED"] = "ansible.posix.profile_tasks"
        run_env["PROFILE_TASKS_TASK_OUTPUT_LIMIT"] = "100"
    argv = [ansible_playbook, "-i", str(inv), str(playbook), "--forks", str(FORKS)]
    names = [gateway(i)["name"] for i in range(1, count + 1)]
    containers_before = container_cpu_s(names)
    machine_before = machine_busy_s()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    controller_before = children.ru_utime + children.ru_stime
    start = time.perf_counter()
    try:
        proc = subprocess.run(argv, cwd=WORK, env=run_env, capture_output=True, text=True,
                              timeout=PLAYBOOK_TIMEOUT, check=False)
    except subprocess.TimeoutExpired as exc:
        raise FleetError("site.yml against %d gateways: no end in %d s"
                         % (count, PLAYBOOK_TIMEOUT)) from exc
    seconds = time.perf_counter() - start
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    containers_after = container_cpu_s(names)
    cpu = {"controller_s": children.ru_utime + children.ru_stime - controller_before,
           "containers_s": (containers_after - containers_before
                            if containers_before is not None and containers_after is not None
                            else None),
           "machine_s": machine_busy_s() - machine_before,
           "loadavg_1min_end": os.getloadavg()[0]}
    log = WORK / ("converge_%d_%s.log" % (count, tag))
    log.write_text(proc.stdout + "\n--- stderr\n" + proc.stderr)
    recap = {m.group(1): [int(x) for x in m.groups()[1:]] for m in RECAP.finditer(proc.stdout)}
    # a first converge changes every gateway; the floor (a ping) changes none
    bad = [n for n in names if n not in recap or recap[n][2] or recap[n][3]
           or bool(recap[n][1]) != (playbook == PLAYBOOK)]
    if proc.returncode != 0 or bad or len(recap) != count:
        raise FleetError("site.yml against %d gateways failed (rc=%d; hosts not converged: "
                         "%s; log %s):\n%s\n%s" % (count, proc.returncode, bad or "-", log,
                                                   proc.stdout[-3000:], proc.stderr[-2000:]))
    return seconds, cpu


def measure(ansible_playbook=None, env=None, counts=COUNTS, repeats=REPEATS, say=print,
            profile=False):
    """Samples of the fleet converge time for each count, round-robin over the counts.

    Returns ``{"samples": {count: [seconds, ...]}, "details": {...}}``. Raises FleetError
    (after cleaning up) when containers cannot be started or a converge is not complete.
    """
    if max(counts) > MAX_GATEWAYS:
        raise FleetError("at most %d gateways (the WAN /27 and the LAN subnets)" % MAX_GATEWAYS)
    if ansible_playbook is None:
        ansible_playbook = ansible_playbook_path()
    env = ansible_env(env)
    os.environ.setdefault("CONTAINERS_CONF", env["CONTAINERS_CONF"])
    image = ensure_image(say)
    samples = {n: [] for n in counts}
    floor = {n: [] for n in counts}
    boot = {n: [] for n in counts}
    cpu = {n: [] for n in counts}
    degraded = set()
    try:
        cleanup()  # left over from an interrupted run
        create_networks(max(counts))
        for rep in range(repeats):
            for count in counts:
                started = time.perf_counter()
                names, bad_boot = start_fleet(image, count)
                boot[count].append(time.perf_counter() - started)
                degraded.update(bad_boot)
                seconds, used = converge(ansible_playbook, env, count, "r%d" % (rep + 1),
                                         profile)
                verify_fleet(count)
                samples[count].append(seconds)
                cpu[count].append(used)
                floor_s, _used = converge(ansible_playbook, env, count, "floor-r%d" % (rep + 1),
                                          playbook=FLOOR_PLAYBOOK)
                floor[count].append(floor_s)
                in_containers = "?" if used["containers_s"] is None \
                    else "%.1f s" % used["containers_s"]
                say("  [round %d/%d] fleet %2d gateways: site.yml %.2f s, floor %.2f s; CPU: "
                    "controller %.1f s, containers %s, machine %.1f s, load %.1f (start and boot "
                    "%.1f s, not timed)" % (rep + 1, repeats, len(names), seconds, floor_s,
                                            used["controller_s"], in_containers, used["machine_s"],
                                            used["loadavg_1min_end"], boot[count][-1]))
        remove_containers()
    finally:
        cleanup()
    details = {"image": image, "forks": FORKS, "counts": list(counts), "repeats": repeats,
               "start_and_boot_s": {str(n): [round(x, 2) for x in v] for n, v in boot.items()},
               "degraded_at_boot": sorted(degraded), "cpu_count": os.cpu_count(),
               "cpu_s": {str(n): [{k: round(x, 2) if x is not None else None
                                   for k, x in c.items()} for c in v]
                         for n, v in cpu.items()}}
    return {"samples": samples, "floor": floor, "details": details}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", default=",".join(map(str, COUNTS)),
                    help="gateway counts, comma-separated (default %(default)s)")
    ap.add_argument("--repeats", type=int, default=REPEATS)
    ap.add_argument("--profile", action="store_true",
                    help="per-task timings (ansible.posix.profile_tasks) in the logs under "
                         "benchmarks/.work/fleet/")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("fleet.py needs root: it starts privileged containers")
    counts = tuple(int(x) for x in args.counts.split(",") if x)
    started = time.perf_counter()
    try:
        out = measure(counts=counts, repeats=args.repeats, profile=args.profile)
    except FleetError as exc:
        sys.exit("fleet: FAILED: %s" % exc)
    figures = {"fleet_%d_s" % n: round(statistics.median(v), 3)
               for n, v in out["samples"].items()}
    figures.update(("fleet_floor_%d_s" % n, round(statistics.median(v), 3))
                   for n, v in out["floor"].items())
    print(json.dumps({"figures": figures,
                      "samples": {"fleet_%d_s" % n: [round(x, 3) for x in v]
                                  for n, v in out["samples"].items()},
                      "details": out["details"]}, indent=1))
    if "fleet_1_s" in figures:
        ratio = figures["fleet_1_s"] / figures["fleet_floor_1_s"]
        print("fleet_1_s / fleet_floor_1_s = %.2f (target <= 4): %s"
              % (ratio, "PASS" if ratio <= 4 else "MISS"))
    if "fleet_1_s" in figures and "fleet_20_s" in figures:
        ratio = figures["fleet_20_s"] / figures["fleet_1_s"]
        print("fleet_20_s / fleet_1_s = %.2f (target <= 3): %s"
              % (ratio, "PASS" if ratio <= 3 else "MISS"))
    print("fleet part took %.0f s" % (time.perf_counter() - started))


if __name__ == "__main__":
    main()
