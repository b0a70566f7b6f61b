"""Network namespaces for the benchmarks: created here, deleted here, nothing else touched.

Every name starts with ``ipmb<pid>``. Rules, sysctls and traffic only ever go through
``ip netns exec`` into a namespace from this module; the namespace the benchmark runs in
keeps its rules. ``Labs.close()`` (called from ``finally``) kills what runs inside and
deletes every namespace it made.

Port-forward lab (for the connection rate)::

    cli 198.51.100.20 -- wan0 198.51.100.1  gw  172.30.77.1 lan0 -- lan 172.30.77.20
"""
import contextlib
import itertools
import os
import signal
import subprocess
import time

PREFIX = "ipmb%d" % os.getpid()
CMD_TIMEOUT = 120

GW_WAN = "198.51.100.1"
CLIENT = "198.51.100.20"
GW_LAN = "172.30.77.1"
LAN_SERVER = "172.30.77.20"


class CommandError(RuntimeError):
    pass


def run(argv, check=True, timeout=CMD_TIMEOUT, input_text=None, env=None):
    proc = subprocess.run([str(a) for a in argv], input=input_text, capture_output=True,
                          text=True, timeout=timeout, env=env, check=False)
    if check and proc.returncode != 0:
        raise CommandError("%s -> rc=%d\nstdout: %s\nstderr: %s" % (
            " ".join(str(a) for a in argv), proc.returncode, proc.stdout[-4000:],
            proc.stderr[-4000:]))
    return proc


class Namespace:
    def __init__(self, name):
        self.name = name

    def __str__(self):
        return self.name

    def argv(self, *cmd):
        return ["ip", "netns", "exec", self.name] + [str(c) for c in cmd]

    def run(self, *cmd, **kw):
        return run(self.argv(*cmd), **kw)

    def ip(self, *args):
        return run(["ip", "-n", self.name] + list(args))

    def pids(self):
        out = run(["ip", "netns", "pids", self.name], check=False).stdout
        return [int(p) for p in out.split() if p.isdigit()]


class Labs:
    """Factory and owner of every namespace the benchmark creates."""

    def __init__(self):
        self._ids = itertools.count()
        self.created = []
        self.procs = []

    def namespace(self, role):
        ns = Namespace("%s-%d%s" % (PREFIX, next(self._ids), role))
        run(["ip", "netns", "add", ns.name])
        self.created.append(ns)
        ns.ip("link", "set", "lo", "up")
        return ns

    @contextlib.contextmanager
    def scratch(self, role):
        """A new namespace for the ``with`` block, deleted when the block ends."""
        ns = self.namespace(role)
        try:
            yield ns
        finally:
            self.delete(ns)

    def delete(self, ns):
        _kill_pids(ns)
        run(["ip", "netns", "del", ns.name], check=False)
        if ns in self.created:
            self.created.remove(ns)

    def forwarding_lab(self):
        """(cli, gw, lan): a WAN client, the gateway, a LAN server host."""
        cli, gw, lan = self.namespace("cli"), self.namespace("gw"), self.namespace("lan")
        run(["ip", "link", "add", "wan0", "netns", gw.name, "type", "veth",
             "peer", "name", "eth0", "netns", cli.name])
        run(["ip", "link", "add", "lan0", "netns", gw.name, "type", "veth",
             "peer", "name", "eth0", "netns", lan.name])
        for ns, ifname, addr in ((gw, "wan0", GW_WAN + "/24"), (gw, "lan0", GW_LAN + "/24"),
                                 (cli, "eth0", CLIENT + "/24"), (lan, "eth0", LAN_SERVER + "/24")):
            ns.ip("addr", "add", addr, "dev", ifname)
            ns.ip("link", "set", ifname, "up")
        lan.ip("route", "add", "default", "via", GW_LAN)
        gw.run("sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        return cli, gw, lan

    def spawn(self, ns, argv, lifetime):
        """A background process in ``ns`` that dies on its own after ``lifetime`` seconds."""
        proc = subprocess.Popen(ns.argv("timeout", str(lifetime), *argv),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def close(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self.procs = []
        for ns in list(self.created):
            self.delete(ns)


def _kill_pids(ns):
    for sig, pause in ((signal.SIGTERM, 0.2), (signal.SIGKILL, 0.1)):
        pids = ns.pids()
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        time.sleep(pause)
