"""Run ipmasq.gateway.nat_rules the way users do: a playbook, ansible-playbook, -c local.

The playbook runs inside the gateway namespace (``ip netns exec``), so the module
reads and writes that namespace's rules only. ``ip netns exec`` also gives it a
private mount namespace; there /etc is overlaid with a directory of the test, so
whatever the module writes under /etc (persistence) lands in ``etc_upper(workdir)``
and never on the machine. Results come back through the ansible.posix.json stdout
callback: one dict per task, exactly what ``register`` would hold.
"""
import json
import os
import shlex
import shutil
import stat
import sys
from pathlib import Path

import yaml

from foreign import SNAPSHOT_COMMAND
from netlab import REPO, CommandError

MODULE = "ipmasq.gateway.nat_rules"
PLAYBOOK_TIMEOUT = 180


def collections_path():
    """ANSIBLE_COLLECTIONS_PATH from the environment, else the checkout's link farm."""
    configured = os.environ.get("ANSIBLE_COLLECTIONS_PATH")
    if configured:
        return configured
    root = REPO / ".build" / "collections"
    link = root / "ansible_collections" / "ipmasq" / "gateway"
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(Path("../../../.."))
    return str(root)


def ansible_playbook_bin():
    found = shutil.which("ansible-playbook")
    if found:
        return found
    venv = REPO / ".venv" / "bin" / "ansible-playbook"
    if venv.exists():
        return str(venv)
    raise CommandError("ansible-playbook not found: put the project venv's bin first on PATH")


def module_python():
    """The interpreter modules run under: the distribution's python3, as on a managed host."""
    for candidate in ("/usr/bin/python3", sys.executable):
        if os.path.exists(candidate):
            return candidate
    return "auto_silent"


def path_with(prefix):
    """PATH with directory ``prefix`` first, so that shims there shadow the real tools."""
    return "%s:%s" % (prefix, os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"))


def nat_rules_task(args, name=None):
    """One task calling the module. Safe defaults for tests: never persist to the host."""
    args = dict(args)
    args.setdefault("persist", False)
    return {
        "name": name or "nat_rules %s" % args.get("state", "merged"),
        MODULE: args,
        "ignore_errors": True,
    }


def role_task(name, role, variables):
    """One task including a role of the collection with these task variables."""
    return {"name": name, "ansible.builtin.include_role": {"name": role}, "vars": variables}


class PlaybookRun:
    def __init__(self, proc, results):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.results = results

    def __getitem__(self, index):
        return self.results[index]

    def __len__(self):
        return len(self.results)

    def __repr__(self):
        return "PlaybookRun(rc=%s, results=%s, stderr=%s)" % (
            self.rc, json.dumps(self.results, indent=1, default=str)[:4000], self.stderr[-2000:])


# Mount an overlay on /etc (private to this process tree), then run the command.
# On a sandbox's first use, the module's own directory is hidden too (a whiteout in
# the upper layer): the lab is a fresh host, whatever the machine holds there.
# /run/sysctl.d (runtime sysctl files) gets an empty tmpfs, and so does /run/systemd, with
# the directory that says "systemd runs": nothing a run writes there, and no systemctl
# call, can reach the machine's own boot or its systemd (tests use a systemctl stand-in).
_SANDBOX_ETC = ('mount -t overlay overlay -o "lowerdir=/etc,upperdir=$1,workdir=$2" /etc'
                ' && { [ "$3" != fresh ] || rm -rf /etc/ipmasq; }'
                ' && mkdir -p /run/sysctl.d /run/systemd'
                ' && mount -t tmpfs -o mode=0755 tmpfs /run/sysctl.d'
                ' && mount -t tmpfs -o mode=0755 tmpfs /run/systemd && mkdir /run/systemd/system'
                ' && shift 3 && exec "$@"')


def systemctl_stand_in(directory):
    """A systemctl that answers "enabled" and records its calls in ``calls.log``: the boot
    unit is written under the /etc overlay but never reaches the machine's systemd."""
    directory.mkdir(exist_ok=True)
    script = directory / "systemctl"
    script.write_text("#!/bin/sh\n"
                      "echo \"$*\" >> %s\n"
                      "case \"$1\" in\n"
                      "  show) printf 'LoadState=loaded\\nActiveState=inactive\\nUnitFileState=enabled\\n' ;;\n"
                      "  is-enabled) echo enabled ;;\n"
                      "esac\n"
                      "exit 0\n" % shlex.quote(str(directory / "calls.log")))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return directory


def etc_upper(workdir):
    """Where files written to /etc by the module show up (the overlay's upper layer)."""
    return Path(workdir) / "etc-overlay" / "upper"


def run_playbook(ns, workdir, tasks, check=False, diff=False):
    """Write tasks into a playbook under workdir and run it inside namespace ns.

    Returns a PlaybookRun whose ``results`` are the per-task module results, in order.
    """
    play = [{"name": "nat_rules under test", "hosts": "all", "gather_facts": False, "tasks": tasks}]
    proc, report = run_plays(ns, workdir, play, check=check, diff=diff)
    results = [result for _name, result in task_results(report)]
    if len(results) != len(tasks):
        raise CommandError("expected %d task results, got %d (rc=%d)\nstdout: %s\nstderr: %s"
                           % (len(tasks), len(results), proc.returncode,
                              proc.stdout[-3000:], proc.stderr[-3000:]))
    return PlaybookRun(proc, results)


def run_plays(ns, workdir, plays, check=False, diff=False, path_prefix=None, timeout=PLAYBOOK_TIMEOUT):
    """Write plays into a playbook under workdir and run it inside namespace ns.

    Returns the finished process and the ansible.posix.json report. Tasks of included
    roles show up in the report as tasks of their own (see ``task_results``).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    index = len(list(workdir.glob("play-*.yml")))
    book = workdir / ("play-%03d.yml" % index)
    book.write_text(yaml.safe_dump(plays, sort_keys=False))
    home = workdir / "ansible-home"

    env = dict(os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": collections_path(),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_HOME": str(home),
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_REMOTE_TEMP": str(home / "tmp"),
        "ANSIBLE_PYTHON_INTERPRETER": module_python(),
        "ANSIBLE_RETRY_FILES_ENABLED": "false",
        "ANSIBLE_PIPELINING": "true",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
    })
    if path_prefix:
        env["PATH"] = path_with(path_prefix)

    upper = etc_upper(workdir)
    work = upper.parent / "work"
    fresh = not upper.exists()
    upper.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    argv = ["sh", "-c", _SANDBOX_ETC, "sh", upper, work, "fresh" if fresh else "reused",
            ansible_playbook_bin(), "-i", "localhost,", "-c", "local", str(book)]
    if check:
        argv.append("--check")
    if diff:
        argv.append("--diff")
    proc = ns.run(*argv, check=False, timeout=timeout, env=env)
    try:
        report = json.loads(proc.stdout)
    except ValueError as exc:
        raise CommandError("ansible-playbook gave no JSON (rc=%d): %s\nstdout: %s\nstderr: %s"
                           % (proc.returncode, exc, proc.stdout[-3000:], proc.stderr[-3000:]))
    return proc, report


def task_results(report):
    """(task name, localhost's result) for every task the report holds, in order."""
    return [(task["task"]["name"], task["hosts"].get("localhost", {}))
            for play_report in report.get("plays", []) for task in play_report.get("tasks", [])]


class NatRules:
    """Calls the module in the lab's gateway namespace and keeps the playbooks in tmp_path."""

    def __init__(self, ns, workdir, backend):
        self.ns = ns
        self.workdir = workdir
        self.backend = backend

    def task(self, state="merged", config=None, check=None, diff=None, env=None, register=None,
             **options):
        """A module task; check/diff/env/register become task keywords, the rest module options."""
        args = {"backend": self.backend, "state": state}
        if config is not None:
            args["config"] = config
        args.update(options)
        task = nat_rules_task(args)
        for keyword, value in (("check_mode", check), ("diff", diff), ("environment", env),
                               ("register", register)):
            if value is not None:
                task[keyword] = value
        return task

    @staticmethod
    def snapshot(register=None):
        """A task that dumps every rule of the namespace; read it with ``Snapshot.parse``."""
        task = {"name": "snapshot of all rules", "ansible.builtin.shell": SNAPSHOT_COMMAND,
                "changed_when": False}
        if register:
            task["register"] = register
        return task

    def play(self, *tasks, **kw):
        return run_playbook(self.ns, self.workdir, list(tasks), **kw)

    def __call__(self, state="merged", config=None, check=False, diff=False, **options):
        """One module call; returns its result dict."""
        run = self.play(self.task(state, config, **options), check=check, diff=diff)
        return run[0]

    @property
    def etc(self):
        """The module's view of /etc, as far as it wrote to it."""
        return etc_upper(self.workdir)

    def gathered(self):
        result = self("gathered")
        assert not result.get("failed"), result
        return result["gathered"]


def brief(result):
    """The parts of a module result worth reading in a failure message."""
    keys = ("failed", "changed", "msg", "backend", "commands", "before", "after", "gathered",
            "rendered", "parsed", "exception", "module_stderr")
    return json.dumps(dict((k, result[k]) for k in keys if k in result), indent=1, default=str)


def ok(result):
    """Assert a module call succeeded; return the result."""
    assert not result.get("failed"), "module failed:\n" + brief(result)
    return result
