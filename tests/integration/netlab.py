"""A throw-away gateway lab made of network namespaces.

Topology (every name carries a per-lab prefix, e.g. ``imq4242a-gw``)::

    lan  192.168.77.10  fd00:77::10  --+
                                       +-- sw (bridge) -- lan0  gw  wan0 -- eth0  wan
    srv  192.168.77.20  fd00:77::20  --+     192.168.77.1        198.51.100.1    198.51.100.20
                                             fd00:77::1          2001:db8:100::1 2001:db8:100::20

LAN hosts route through gw. The WAN namespace has no route back to the LAN, like
the Internet; ``route_wan_to_lan()`` adds one for the tests that need it. Only gw
forwards. ``add_dmz()`` gives gw a third interface, ``dmz0`` (192.0.2.1), with a
client ``dmz`` (192.0.2.10) behind it: a DMZ, a VPN or a backup uplink. Rules and
sysctls are only ever applied through ``ip netns exec`` into these namespaces, never in
the namespace the tests run in.
"""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / "tests" / "tools"
ECHO = TOOLS / "ipmasq_echo.py"
PROBE = TOOLS / "ipmasq_probe.py"
ECHO6 = Path(__file__).resolve().parent / "echo6.py"

LAN_NET = "192.168.77.0/24"
GW_LAN = "192.168.77.1"
LAN_CLIENT = "192.168.77.10"
LAN_SERVER = "192.168.77.20"
GW_WAN = "198.51.100.1"
WAN_HOST = "198.51.100.20"
LAN_NET6 = "fd00:77::/64"
GW_LAN6 = "fd00:77::1"
LAN_CLIENT6 = "fd00:77::10"
GW_WAN6 = "2001:db8:100::1"
WAN_HOST6 = "2001:db8:100::20"
DMZ_NET = "192.0.2.0/24"
GW_DMZ = "192.0.2.1"
DMZ_HOST = "192.0.2.10"

# Ports the echo servers listen on.
WAN_PORT = 7000
WAN_PORT6 = 7006
LAN_TCP_PORTS = (80, 9000, 9001, 9002)
LAN_UDP_PORTS = (53,)
LAN_UDP_ALT_PORT = 54  # a second UDP service on the LAN server, answering as "lansrv54"

# Echo servers die on their own after this long, even if teardown never runs.
SERVER_LIFETIME = 900
CMD_TIMEOUT = 60


class CommandError(RuntimeError):
    pass


def run(argv, check=True, timeout=CMD_TIMEOUT, input_text=None, env=None):
    """Run argv, return CompletedProcess with text output."""
    proc = subprocess.run(
        [str(a) for a in argv],
        input=input_text,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    if check and proc.returncode != 0:
        raise CommandError(
            "%s -> rc=%d\nstdout: %s\nstderr: %s"
            % (" ".join(str(a) for a in argv), proc.returncode, proc.stdout, proc.stderr)
        )
    return proc


class Namespace:
    def __init__(self, name):
        self.name = name

    def __str__(self):
        return self.name

    def argv(self, *cmd):
        return ["ip", "netns", "exec", self.name] + [str(c) for c in cmd]

    def run(self, *cmd, check=True, timeout=CMD_TIMEOUT, input_text=None, env=None):
        return run(self.argv(*cmd), check=check, timeout=timeout, input_text=input_text, env=env)

    def out(self, *cmd, **kw):
        return self.run(*cmd, **kw).stdout

    def ip(self, *args):
        return run(["ip", "-n", self.name] + list(args))

    def sysctl(self, key, value):
        self.run("sysctl", "-q", "-w", "%s=%s" % (key, value))

    def pids(self):
        proc = run(["ip", "netns", "pids", self.name], check=False)
        return [int(p) for p in proc.stdout.split() if p.isdigit()]


class Probe:
    """Outcome of one ipmasq_probe run."""

    def __init__(self, proc):
        self.ok = proc.returncode == 0
        self.stdout = proc.stdout.strip()
        self.stderr = proc.stderr.strip()
        parts = self.stdout.split()
        self.server, self.peer_ip, self.peer_port = (parts + [None] * 3)[:3] if self.ok else (None,) * 3

    def __repr__(self):
        return "Probe(ok=%s, out=%r, err=%r)" % (self.ok, self.stdout, self.stderr)


class Lab:
    """Build with ``Lab(prefix).build()``; always call ``destroy()`` (fixtures do)."""

    ROLES = ("sw", "gw", "lan", "srv", "wan")

    def __init__(self, prefix):
        self.prefix = prefix
        self.ns = {role: Namespace("%s-%s" % (prefix, role)) for role in self.ROLES}
        self.servers = []
        self.created = []
        self.serving = False

    @property
    def gw(self):
        return self.ns["gw"]

    @property
    def lan(self):
        return self.ns["lan"]

    @property
    def srv(self):
        return self.ns["srv"]

    @property
    def wan(self):
        return self.ns["wan"]

    @property
    def sw(self):
        return self.ns["sw"]

    # -- construction -------------------------------------------------
    def build(self, servers=False):
        """Create the namespaces; echo servers start now or on the first probe."""
        for ns in self.ns.values():
            run(["ip", "netns", "add", ns.name])
            self.created.append(ns.name)
            ns.ip("link", "set", "lo", "up")
        sw, gw, lan, srv, wan = (self.ns[r] for r in self.ROLES)
        sw.ip("link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0")
        sw.ip("link", "set", "br0", "up")
        for host, ifname, port in ((gw, "lan0", "p-gw"), (lan, "eth0", "p-lan"), (srv, "eth0", "p-srv")):
            run(["ip", "link", "add", ifname, "netns", host.name, "type", "veth",
                 "peer", "name", port, "netns", sw.name])
            sw.ip("link", "set", port, "master", "br0")
            sw.ip("link", "set", port, "up")
        run(["ip", "link", "add", "wan0", "netns", gw.name, "type", "veth",
             "peer", "name", "eth0", "netns", wan.name])
        for host in (gw, lan, srv, wan):
            # No duplicate address detection: addresses are usable at once.
            host.sysctl("net.ipv6.conf.all.accept_dad", 0)
            host.sysctl("net.ipv6.conf.default.accept_dad", 0)
        self._addr(gw, "lan0", GW_LAN + "/24", GW_LAN6 + "/64")
        self._addr(gw, "wan0", GW_WAN + "/24", GW_WAN6 + "/64")
        self._addr(lan, "eth0", LAN_CLIENT + "/24", LAN_CLIENT6 + "/64")
        self._addr(srv, "eth0", LAN_SERVER + "/24", "fd00:77::20/64")
        self._addr(wan, "eth0", WAN_HOST + "/24", WAN_HOST6 + "/64")
        for host in (lan, srv):
            host.ip("route", "add", "default", "via", GW_LAN)
            host.ip("-6", "route", "add", "default", "via", GW_LAN6)
        gw.sysctl("net.ipv4.ip_forward", 1)
        gw.sysctl("net.ipv6.conf.all.forwarding", 1)
        if servers:
            self.start_servers()
        return self

    @staticmethod
    def _addr(ns, ifname, v4, v6):
        ns.ip("addr", "add", v4, "dev", ifname)
        ns.ip("-6", "addr", "add", v6, "dev", ifname, "nodad")
        ns.ip("link", "set", ifname, "up")

    def add_dmz(self):
        """A third interface on gw, ``dmz0``, and a client ``self.dmz`` behind it."""
        dmz = Namespace("%s-dmz" % self.prefix)
        run(["ip", "netns", "add", dmz.name])
        self.created.append(dmz.name)
        self.ns["dmz"] = dmz
        dmz.ip("link", "set", "lo", "up")
        run(["ip", "link", "add", "dmz0", "netns", self.gw.name, "type", "veth",
             "peer", "name", "eth0", "netns", dmz.name])
        self.gw.ip("addr", "add", GW_DMZ + "/24", "dev", "dmz0")
        self.gw.ip("link", "set", "dmz0", "up")
        dmz.ip("addr", "add", DMZ_HOST + "/24", "dev", "eth0")
        dmz.ip("link", "set", "eth0", "up")
        dmz.ip("route", "add", "default", "via", GW_DMZ)
        return dmz

    @property
    def dmz(self):
        return self.ns["dmz"]

    def route_wan_to_lan(self):
        """Give the WAN host a route into the LAN (to prove the drop rule works)."""
        self.wan.ip("route", "add", LAN_NET, "via", GW_WAN)
        self.wan.ip("-6", "route", "add", LAN_NET6, "via", GW_WAN6)

    # -- servers and probes -------------------------------------------
    def start_servers(self):
        self.serving = True
        self.start_echo(self.wan, "wan", tcp=[WAN_PORT], udp=[WAN_PORT])
        self.start_echo(self.wan, "wan6", tcp=[WAN_PORT6], udp=[WAN_PORT6], script=ECHO6)
        self.start_echo(self.srv, "lansrv", tcp=LAN_TCP_PORTS, udp=LAN_UDP_PORTS)
        self.start_echo(self.srv, "lansrv54", udp=[LAN_UDP_ALT_PORT])
        for ns, tcp, udp in ((self.wan, [WAN_PORT, WAN_PORT6], [WAN_PORT, WAN_PORT6]),
                             (self.srv, LAN_TCP_PORTS, LAN_UDP_PORTS + (LAN_UDP_ALT_PORT,))):
            self._wait_listening(ns, tcp, udp)

    def listen(self, ns, name, tcp=(), udp=()):
        """One more echo server in ``ns``, answering as ``name``; returns once it listens."""
        self.start_echo(ns, name, tcp=tcp, udp=udp)
        self._wait_listening(ns, tcp, udp)

    def start_echo(self, ns, name, tcp=(), udp=(), script=ECHO):
        argv = ["timeout", str(SERVER_LIFETIME), sys.executable, str(script), "--name", name]
        for p in tcp:
            argv += ["--tcp", str(p)]
        for p in udp:
            argv += ["--udp", str(p)]
        proc = subprocess.Popen(ns.argv(*argv), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.servers.append(proc)
        return proc

    @staticmethod
    def _wait_listening(ns, tcp, udp, attempts=100, pause=0.05):
        want_tcp = {int(p) for p in tcp}
        want_udp = {int(p) for p in udp}
        for _attempt in range(attempts):
            got_tcp = _ports(ns.out("ss", "-Hltn"))
            got_udp = _ports(ns.out("ss", "-Hlun"))
            if want_tcp <= got_tcp and want_udp <= got_udp:
                return
            time.sleep(pause)
        raise CommandError("echo servers in %s did not start (tcp %s udp %s)" % (ns, want_tcp, want_udp))

    def probe(self, ns, proto, host, port, timeout=2.0, source_port=None):
        if not self.serving:
            self.start_servers()
        extra = ["--source-port", source_port] if source_port else []
        proc = ns.run(sys.executable, PROBE, proto, host, port, "--timeout", timeout, *extra,
                      check=False, timeout=timeout + 15)
        return Probe(proc)

    @staticmethod
    def ping(ns, host, timeout=1.0):
        """One ICMP echo request from ``ns`` (IPv4, a raw socket: the machine has no ping
        command); True when the reply came within ``timeout`` seconds."""
        proc = ns.run(sys.executable, "-c", _PING, host, timeout, check=False, timeout=timeout + 15)
        return proc.returncode == 0

    # -- teardown -----------------------------------------------------
    def destroy(self):
        for proc in self.servers:
            if proc.poll() is None:
                proc.terminate()
        for name in self.created:
            _kill_pids(Namespace(name))
        for proc in self.servers:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        for name in reversed(self.created):
            forget_rollbacks(name)
            run(["ip", "netns", "del", name], check=False)
        self.created = []
        self.servers = []


_PING = """
import os, select, socket, struct, sys, time
host, timeout = sys.argv[1], float(sys.argv[2])
ident = os.getpid() & 0xFFFF
def checksum(data):
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF
header = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"ipmasq-ping!"
packet = header[:2] + struct.pack("!H", checksum(header)) + header[4:]
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
sock.sendto(packet, (host, 0))
deadline = time.monotonic() + timeout
while time.monotonic() < deadline:
    if not select.select([sock], [], [], max(0.0, deadline - time.monotonic()))[0]:
        break
    data, peer = sock.recvfrom(2048)
    icmp = data[(data[0] & 0x0F) * 4:]
    if peer[0] == host and icmp[0] == 0 and struct.unpack("!H", icmp[4:6])[0] == ident:
        sys.exit(0)
sys.exit(1)
"""


def _ports(ss_output):
    ports = set()
    for line in ss_output.splitlines():
        fields = line.split()
        if len(fields) >= 4:
            local = fields[3]
            port = local.rsplit(":", 1)[-1]
            if port.isdigit():
                ports.add(int(port))
    return ports


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


def make_empty_namespace(prefix):
    """A namespace with nothing but loopback, for tests that must not touch any rules."""
    ns = Namespace("%s-empty" % prefix)
    run(["ip", "netns", "add", ns.name])
    ns.ip("link", "set", "lo", "up")
    return ns


def delete_namespace(ns):
    _kill_pids(ns)
    forget_rollbacks(ns.name)
    run(["ip", "netns", "del", ns.name], check=False)


# Where the module keeps pending commit-confirm rollbacks: a folder per network namespace,
# named by the namespace's inode. A later namespace may get the same inode.
PENDING_DIR = "/run/ipmasq"


def forget_rollbacks(name):
    """Remove the module's rollback records of a namespace about to be deleted."""
    try:
        inode = os.stat("/run/netns/%s" % name).st_ino
    except OSError:
        return
    shutil.rmtree(os.path.join(PENDING_DIR, "net-%d" % inode), ignore_errors=True)
