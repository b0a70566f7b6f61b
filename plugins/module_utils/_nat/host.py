# -*- coding: utf-8 -*-
# Copyright: contributors to the ipmasq.gateway collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE to the ipmasq.gateway collection. Not a public API: it may change at any time.
"""The only code that runs commands on the host: read, check, apply, restore, persist.

Commands run as argument lists; rule text goes in on stdin, never through a shell.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import binascii
import errno
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import time

from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import iptables
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import kernel
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import model
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import nft
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import rules

LOCK_PATH = "/run/ipmasq.lock"
PERSIST_DIR = "/etc/ipmasq"
# Commit-confirm: one folder per armed rollback, under a folder per network namespace (the
# rules belong to the namespace, and namespaces on one machine share /run).
PENDING_DIR = "/run/ipmasq"
TOKEN_RE = re.compile(r"^[0-9]{1,10}-[0-9a-f]{12}\Z")
PERSIST_FILES = {
    "nftables": {"nft": "ipmasq.nft"},
    "iptables": {4: "ipmasq.v4", 6: "ipmasq.v6"},
}
# iptables hairpin sets, for ``ipset -exist restore`` before ipmasq.v4/.v6 at boot; written
# only while there are such sets (and emptied, not left stale, when they go)
PERSIST_IPSET = "ipmasq.ipset"
# iptables timeout objects: ``nfct`` arguments, one command a line, run by the boot unit
# before ipmasq.v4/.v6 (written only while there are such objects, emptied when they go)
PERSIST_NFCT = "ipmasq.nfct"


class HostError(Exception):
    """A command on the host failed; the message carries its output."""


# The tools each backend runs; a detached rollback timer finds them before it detaches.
TOOLS = {"nftables": ("nft",),
         "iptables": ("iptables-save", "ip6tables-save", "iptables-restore", "ip6tables-restore",
                      "ipset", "nfct")}


class Host:
    def __init__(self, module):
        self.module = module
        self._paths = {}
        self._detached = False  # True in the rollback timer, which AnsibleModule left behind

    # -- plumbing
    def _bin(self, name, required=True):
        if self._paths.get(name) is None:
            self._paths[name] = self.module.get_bin_path(name, required=required)
        return self._paths[name]

    def _run(self, args, data=None):
        if self._detached:
            # AnsibleModule's run_command answers some errors with fail_json, which the
            # timer cannot use: its module payload is gone by then.
            proc = subprocess.run(  # pylint: disable=ansible-bad-function
                args, input=(data or "").encode(), stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, check=False)
            return (proc.returncode, proc.stdout.decode("utf-8", "replace"),
                    proc.stderr.decode("utf-8", "replace"))
        rc, out, err = self.module.run_command(args, data=data, binary_data=True)
        return rc, out, err

    def _must(self, args, data=None, what=None):
        rc, out, err = self._run(args, data)
        if rc != 0:
            detail = (err or out).strip()
            raise HostError("%s failed (rc=%d): %s" % (what or " ".join(args), rc, detail))
        return out

    def lock(self, timeout=60):
        """Serialise read-diff-apply between concurrent runs on one host.

        The file is created 0600: any user who can open it could hold the lock.
        """
        fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT, 0o600)
        os.fchmod(fd, 0o600)  # also a file an older version created 0644
        handle = os.fdopen(fd, "r+")
        deadline = time.time() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return handle
            except (IOError, OSError) as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES) or time.time() > deadline:
                    handle.close()
                    raise HostError("another ipmasq run holds %s (waited %ds)"
                                    % (LOCK_PATH, timeout))
                time.sleep(0.2)

    # -- backend choice
    def resolve_backend(self, requested):
        if requested != "auto":
            return requested
        nft_bin = self._bin("nft", required=False)
        if nft_bin and self._run([nft_bin, "list", "tables"])[0] == 0:
            return "nftables"
        return "iptables"

    def has_backend(self, backend):
        """Whether the host has the tool that reads ``backend``'s rules."""
        return bool(self._bin(TOOLS[backend][0], required=False))

    def codec(self, backend):
        return nft if backend == "nftables" else iptables

    # -- the neighbourhood: other tools' rules, read only (coexist.Site asks, lazily)
    def nft_list(self, *what):
        """``nft -j list <what>`` (``chains``, or ``table FAMILY NAME``), or None where nft is
        missing or does not work."""
        nft_bin = self._bin("nft", required=False)
        if not nft_bin:
            return None
        rc, out, _err = self._run([nft_bin, "-j", "list"] + list(what))
        return out if rc == 0 else None

    def has_iptables(self):
        return bool(self._bin("iptables-restore", required=False))

    def save_filter(self, family, variant=None):
        """``iptables-save -t filter`` of one family (``variant`` "nft" or "legacy" picks
        that tool where it exists), or None."""
        base = "ip6tables" if family == 6 else "iptables"
        names = {"nft": [base + "-nft-save", base + "-save"],
                 "legacy": [base + "-legacy-save"]}.get(variant, [base + "-save"])
        for name in names:
            path = self._bin(name, required=False)
            if path:
                rc, out, _err = self._run([path, "-t", "filter"])
                return out if rc == 0 else None
        return None

    @staticmethod
    def legacy_families():
        """The families whose legacy (x_tables) filter table exists in this namespace."""
        out = []
        for family, name in ((4, "ip_tables_names"), (6, "ip6_tables_names")):
            text = _read(os.path.join("/proc/net", name))
            if text and "filter" in text.split():
                out.append(family)
        return out

    def iptables_save(self, family):
        """The whole ``iptables-save`` (or ``ip6tables-save``) output, "" without the tool."""
        path = self._bin("ip6tables-save" if family == 6 else "iptables-save", required=False)
        return self._must([path]) if path else ""

    def iptables_origin(self):
        """"iptables-nft" or "iptables-legacy": where iptables-restore puts its rules."""
        path = self._bin("iptables", required=False)
        if not path:
            return None
        rc, out, err = self._run([path, "-V"])
        return "iptables-nft" if "nf_tables" in out + err else "iptables-legacy"

    def routes(self):
        """The main routing table of both families (``ip -j route``), for the interfaces
        behind our networks."""
        out = []
        for flag in ("-4", "-6"):
            rc, text, _err = self._run([self._bin("ip"), "-j", flag, "route", "show", "table",
                                        "main"])
            if rc == 0:
                try:
                    out.extend(json.loads(text or "[]"))
                except ValueError:
                    pass
        return out

    # -- interface addresses (hairpin sets)
    def addresses(self, interfaces):
        """{interface: addresses of global scope} for ``interfaces``; an interface that does
        not exist (a PPP link that is down) has none."""
        if not interfaces:
            return {}
        out = self._must([self._bin("ip"), "-j", "addr", "show"])
        try:
            return rules.global_addresses(out, interfaces)
        except rules.ParseError as exc:
            raise HostError("ip -j addr show: %s" % exc)

    @staticmethod
    def missing_interfaces(names):
        """The names of ``names`` that no network interface here has (yet)."""
        return [name for name in names
                if "/" in name or not os.path.exists(os.path.join("/sys/class/net", name))]

    def require_tools(self, backend, state):
        """Fail before any change when ``state`` needs a tool the host lacks."""
        if backend == "iptables" and iptables.address_sets(state) and \
                not self._bin("ipset", required=False):
            raise HostError(
                "hairpin port forwards on the iptables backend need the ipset command "
                "(Debian/Ubuntu package ipset) for the sets of interface addresses %s; "
                "install it, or use the nftables backend; nothing was changed"
                % ", ".join(sorted(iptables.address_sets(state))))
        if backend == "iptables" and state.timeouts and not self._bin("nfct", required=False):
            raise HostError(
                "per-rule timeouts (timeouts of masquerade and snat entries) on the iptables "
                "backend need the nfct command (Debian/Ubuntu package nfct) for the conntrack "
                "timeout objects %s; install it, or use the nftables backend; nothing was "
                "changed" % ", ".join(sorted(state.timeouts)))

    # -- read
    def read(self, backend):
        if backend == "nftables":
            nft_bin = self._bin("nft")
            rc, out, err = self._run([nft_bin, "-j", "list", "table", "inet", "ipmasq"])
            if rc != 0:
                if "No such file or directory" in err:
                    return nft.empty_state()
                raise HostError("nft -j list table inet ipmasq failed: %s" % err.strip())
            return nft.parse_json(out)
        texts = {}
        for family, tool in ((4, "iptables-save"), (6, "ip6tables-save")):
            path = self._bin(tool, required=family == 4)
            texts[family] = self._must([path]) if path else ""
        timeouts = iptables.parse_nfct(self._nfct_list(texts.values()))
        parts = dict((family, iptables.parse_save(text, family, timeouts=timeouts))
                     for family, text in texts.items())
        return iptables.combine(parts[4], parts[6])._replace(sets=self._read_ipsets())

    def _nfct_list(self, saved):
        """``nfct list timeout`` (the conntrack timeout objects), "" without nfct. A failing
        nfct counts only when a rule of the iptables-save texts ``saved`` uses an object
        (``--timeout``): a kernel without timeout objects must not stop runs that do not
        use them."""
        needed = any("--timeout" in text for text in saved)
        path = self._bin("nfct", required=False)
        if not path:
            return ""
        rc, out, err = self._run([path, "list", "timeout"])
        if rc != 0:
            if needed:
                raise HostError("nfct list timeout failed (rc=%d): %s" % (rc, (err or out).strip()))
            return ""
        return out

    def _read_ipsets(self):
        """Our hairpin ipsets; none when ipset is not installed. Only our sets are saved:
        a neighbour's blocklist may hold a million entries."""
        path = self._bin("ipset", required=False)
        if not path:
            return iptables.empty_state().sets
        names = [n for n in self._must([path, "list", "-n"]).split()
                 if n.startswith(iptables.IPSET_PREFIX) and iptables.set_interface(n)]
        return iptables.parse_ipset("".join(self._must([path, "save", n]) for n in names))

    # -- apply
    def apply(self, backend, commands):
        """Check, then apply in one transaction per tool. A failure restores what was."""
        if not commands:
            return
        if backend == "nftables":
            nft_bin = self._bin("nft")
            script = "\n".join(commands) + "\n"
            self._must([nft_bin, "-c", "-f", "-"], script, "nft -c (check)")
            self._must([nft_bin, "-f", "-"], script, "nft -f (apply)")
            return
        scripts = iptables.split_script(commands)
        families = [f for f in iptables.FAMILIES if f in scripts]
        tools = dict((f, self._bin(iptables.TOOLS[f])) for f in families)
        ipset = self._bin("ipset") if set(iptables.IPSET_PARTS) & set(scripts) else None
        nfct = self._bin("nfct") if set(iptables.NFCT_PARTS) & set(scripts) else None
        # The sets first: iptables-restore (--test too) refuses a rule naming a missing set.
        # A failure from here on is undone by restore(), which takes the sets back as well.
        if "ipset" in scripts:
            self._must([ipset, "-exist", "restore"], scripts["ipset"], "ipset restore")
        # Then the timeout objects (a rule naming a missing one fails to load). restore()
        # deletes only the objects rules of ours use: the ones made here go when what
        # follows fails (those a loaded rule uses then go with restore()).
        made = []
        try:
            for line in _nfct_lines(scripts.get("nfct")):
                self._must([nfct] + line.split(), what="nfct " + line)
                made.append(line.split()[2])
            for family in families:
                self._must([tools[family], "-w", "--noflush", "--test"], scripts[family],
                           "%s --test" % iptables.TOOLS[family])
            for family in families:
                self._must([tools[family], "-w", "--noflush"], scripts[family],
                           iptables.TOOLS[family])
        except HostError:
            for name in made:
                self._run([nfct, "delete", "timeout", name])
            raise
        if "ipset-after" in scripts:
            self._must([ipset, "-exist", "restore"], scripts["ipset-after"],
                       "ipset restore (destroying unused sets)")
        for line in _nfct_lines(scripts.get("nfct-after")):
            self._must([nfct] + line.split(), what="nfct " + line)

    def restore(self, backend, previous):
        """Bring our rules back to ``previous`` (a State read earlier) from whatever is there."""
        codec = self.codec(backend)
        self.apply(backend, codec.render_changes(self.read(backend), previous))

    # -- persist
    def persist_files(self, backend, state):
        """{key: (path, content)} of the files the boot unit restores ("nft", or "ipv4",
        "ipv6" and, while there are hairpin sets, "ipset"). Each ends with END_MARKER, so
        that the unit can tell a complete file from one cut short."""
        text = self.codec(backend).render_full(state)
        if backend == "nftables":
            parts = {"nft": (os.path.join(PERSIST_DIR, "ipmasq.nft"), text)}
        else:
            split = iptables.split_script(text.splitlines())
            parts = dict(("ipv%d" % family, (os.path.join(PERSIST_DIR, name),
                                             split.get(family, "")))
                         for family, name in PERSIST_FILES["iptables"].items())
            ipset_path = os.path.join(PERSIST_DIR, PERSIST_IPSET)
            if "ipset" in split or os.path.exists(ipset_path):
                parts["ipset"] = (ipset_path, split.get("ipset", ""))
            # without its header line: the boot unit stops reading at a line starting "#"
            nfct_path = os.path.join(PERSIST_DIR, PERSIST_NFCT)
            if "nfct" in split or os.path.exists(nfct_path):
                parts["nfct"] = (nfct_path, "".join(
                    line + "\n" for line in _nfct_lines(split.get("nfct"))))
        return dict((key, (path, content + kernel.END_MARKER + "\n"))
                    for key, (path, content) in parts.items())

    def persist_changes(self, files):
        """The paths whose content differs from ``files``."""
        changed = []
        for path, content in sorted(files.items()):
            if content is None:
                changed.append(path)  # stale_persist_files lists only files that exist
                continue
            try:
                with open(path) as handle:
                    if handle.read() == content:
                        continue
            except (IOError, OSError):
                pass
            changed.append(path)
        return changed

    def write_files(self, files, paths):
        """Write each path atomically: a power loss leaves the old file or the new one. A
        path whose content is None is removed (the other backend's file after a switch)."""
        for path in paths:
            if files[path] is None:
                self.remove_file(path)
            else:
                self.write_file(path, files[path], 0o640, dir_mode=0o750)

    @staticmethod
    def stale_persist_files(backend):
        """{path: None} for the files the other backend persisted: the boot unit loads one
        backend, and our rules now live in ``backend``."""
        other = "iptables" if backend == "nftables" else "nftables"
        names = list(PERSIST_FILES[other].values()) + (
            [PERSIST_IPSET, PERSIST_NFCT] if other == "iptables" else [])
        return dict((os.path.join(PERSIST_DIR, name), None) for name in names
                    if os.path.exists(os.path.join(PERSIST_DIR, name)))

    @staticmethod
    def write_file(path, content, mode, dir_mode=0o755):
        """Write one file atomically, with fsync of the file and its directory."""
        folder = os.path.dirname(path)
        if not os.path.isdir(folder):
            os.makedirs(folder, dir_mode)
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, path)
        _fsync_dir(folder)

    @staticmethod
    def is_dir(path):
        return os.path.isdir(path)

    @staticmethod
    def remove_file(path):
        try:
            os.remove(path)
        except (IOError, OSError) as exc:
            if exc.errno != errno.ENOENT:
                raise HostError("removing %s failed: %s" % (path, exc))

    @staticmethod
    def list_dir(path):
        """The names in directory ``path`` ([] when it does not exist)."""
        try:
            return sorted(os.listdir(path))
        except (IOError, OSError):
            return []

    @staticmethod
    def remove_empty_dir(path):
        """Remove directory ``path`` if it is empty; False when it holds anything."""
        try:
            os.rmdir(path)
        except (IOError, OSError) as exc:
            if exc.errno == errno.ENOENT:
                return True
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                return False
            raise HostError("removing %s failed: %s" % (path, exc))
        return True

    @staticmethod
    def read_file(path):
        """A file's text, or None when it does not exist."""
        return _read(path)

    # -- kernel settings and the boot unit
    @staticmethod
    def read_sysctl(key):
        """(value, writable): value None when the key does not exist (yet)."""
        path = kernel.proc_path(key)
        value = _read(path)
        return (None if value is None else value.strip()), os.access(path, os.W_OK)

    @staticmethod
    def write_sysctl(key, value):
        try:
            with open(kernel.proc_path(key), "w") as handle:
                handle.write(value)
        except (IOError, OSError) as exc:
            raise HostError("setting %s=%s failed: %s" % (key, value, exc))

    def load_conntrack(self):
        """Load nf_conntrack when its sysctls are missing (a modular kernel loads it with
        the first rule that needs it). Returns modprobe's complaint, or ""."""
        modprobe = self._bin("modprobe", required=False)
        if not modprobe:
            return "modprobe not found"
        rc, _out, err = self._run([modprobe, "nf_conntrack"])
        return "" if rc == 0 else err.strip()

    def tool_paths(self, names):
        """{name: absolute path} for the tools the boot unit runs."""
        extra = ["/usr/lib/systemd", "/lib/systemd", "/usr/sbin", "/sbin"]
        return dict((name, self.module.get_bin_path(name, required=True, opt_dirs=extra))
                    for name in names)

    def systemctl(self, *args):
        """Run systemctl; returns (rc, output)."""
        rc, out, err = self._run([self._bin("systemctl")] + list(args))
        return rc, (out + err).strip()

    # -- conntrack
    def conntrack_delete(self, filters):
        """Run ``conntrack -D`` per filter; returns the filters that deleted something."""
        if not filters:
            return []
        path = self._bin("conntrack", required=False)
        if not path:
            self.module.warn("conntrack not installed: stale NAT mappings were not flushed")
            return []
        done = []
        for args in filters:
            rc, _out, err = self._run([path, "-D"] + args)
            if rc == 0:
                done.append(" ".join(args))
            elif "0 flow entries" not in err:
                self.module.warn("conntrack -D %s: %s" % (" ".join(args), err.strip()))
        return done

    # -- status (nat_status): reads only
    def dump(self, backend):
        """Our rules with their counters, as the tools print them: {"nft": ``nft -j list
        table inet ipmasq``} or {4: ``iptables-save -c``, 6: ``ip6tables-save -c``}; None
        when the backend's tool is not installed."""
        if backend == "nftables":
            nft_bin = self._bin("nft", required=False)
            if not nft_bin:
                return None
            rc, out, err = self._run([nft_bin, "-j", "list", "table", "inet", "ipmasq"])
            if rc != 0:
                if "No such file or directory" in err:
                    return {"nft": '{"nftables": []}'}
                raise HostError("nft -j list table inet ipmasq failed: %s" % err.strip())
            return {"nft": out}
        out = {}
        for family, tool in ((4, "iptables-save"), (6, "ip6tables-save")):
            path = self._bin(tool, required=False)
            if not path and family == 4:
                return None
            out[family] = self._must([path, "-c"]) if path else ""
        out["nfct"] = self._nfct_list(list(out.values()))
        return out

    @staticmethod
    def boot_files(backend):
        """{key: (path, text or None)}: the files the boot unit loads for ``backend``, keyed
        as persist_files keys them."""
        names = {"nftables": {"nft": PERSIST_FILES["nftables"]["nft"]},
                 "iptables": {"ipv4": PERSIST_FILES["iptables"][4],
                              "ipv6": PERSIST_FILES["iptables"][6], "ipset": PERSIST_IPSET,
                              "nfct": PERSIST_NFCT}}
        return dict((key, (os.path.join(PERSIST_DIR, name), _read(os.path.join(PERSIST_DIR, name))))
                    for key, name in names[backend].items())

    @staticmethod
    def conntrack_figures():
        """(entries, table size) of connection tracking in this network namespace; None for
        what cannot be read (nf_conntrack not loaded)."""
        out = []
        for key in ("net.netfilter.nf_conntrack_count", kernel.CONNTRACK_MAX):
            value = Host.read_sysctl(key)[0]
            out.append(int(value) if model.digits(value) else None)
        return tuple(out)

    def conntrack_table(self):
        """The tracked connections, one a line (``conntrack -L -o extended``, or
        /proc/net/nf_conntrack without the tool); None when neither is there."""
        path = self._bin("conntrack", required=False)
        if path:
            return self._must([path, "-L", "-o", "extended"])
        return _read("/proc/net/nf_conntrack")

    # -- commit-confirm
    #
    # A pending change has a folder PENDING_DIR/net-<namespace>/<token> holding ``deadline``,
    # ``pid`` (the timer), ``persist.json`` (files to write once confirmed) and, once the
    # timer fired, ``outcome``: "restored" or "failed: why". The timer and confirm both run
    # under the host lock, so exactly one of them acts.

    def _pending_root(self):
        return os.path.join(PENDING_DIR, "net-%d" % os.stat("/proc/self/ns/net").st_ino)

    def _folder(self, token):
        if not isinstance(token, str) or not TOKEN_RE.match(token):
            raise HostError("confirm_token: not a token this module issued (got %s)"
                            % model.echo(token))
        return os.path.join(self._pending_root(), token)

    def rollbacks(self):
        """[(token, deadline, outcome)] of the changes armed here and not confirmed; outcome
        is None while the timer waits."""
        root = self._pending_root()
        out = []
        for token in sorted(os.listdir(root)) if os.path.isdir(root) else ():
            folder = os.path.join(root, token)
            deadline = _read(os.path.join(folder, "deadline"))
            outcome = _read(os.path.join(folder, "outcome"))
            out.append((token, float(deadline or 0), outcome))
        return out

    def forget_failed_rollbacks(self):
        """Drop the records of failed rollbacks once a later run has set the rules again."""
        for token, _deadline, outcome in self.rollbacks():
            if outcome and outcome != "restored":
                shutil.rmtree(os.path.join(self._pending_root(), token), ignore_errors=True)

    def arm_rollback(self, backend, previous, seconds, files, others=()):
        """Start a detached timer that, after ``seconds``, brings our rules back to
        ``previous`` (a State read under the lock) unless the change is confirmed first;
        ``others``: [(backend, State)] of the other backend too, when a switch changes both.

        The timer is a child of this run: it lives in the same network namespace and does
        not depend on the Ansible connection. ``files`` (path: content, None to remove) are
        written when the change is confirmed. Returns the token.
        """
        jobs = [(b, state, self.snapshot(b) if b == "nftables" else None)
                for b, state in [(backend, previous)] + list(others)]
        token = "%d-%s" % (os.getpid(), binascii.hexlify(os.urandom(6)).decode())
        folder = os.path.join(self._pending_root(), token)
        os.makedirs(folder, 0o700)
        _write(os.path.join(folder, "deadline"), "%.3f" % (time.time() + seconds))
        _write(os.path.join(folder, "persist.json"), json.dumps(files))
        for job_backend, _state, _snapshot in jobs:
            for tool in TOOLS[job_backend]:
                self._bin(tool, required=False)
        pid = self._detach(seconds, lambda: self._fire(folder, jobs))
        _write(os.path.join(folder, "pid"), str(pid))
        return token

    def snapshot(self, backend):
        """nftables: our table as ``nft list`` prints it (None when there is none). Loading
        that text back gives the table byte for byte, rules the module does not know too."""
        rc, out, err = self._run([self._bin("nft"), "list", "table", "inet", "ipmasq"])
        if rc != 0:
            if "No such file or directory" in err:
                return None
            raise HostError("nft list table inet ipmasq failed: %s" % err.strip())
        return out

    def _fire(self, folder, jobs):
        """The timer's work: restore and check, under the lock, unless confirmed meanwhile.
        ``jobs``: [(backend, previous State, nft snapshot text or None)]."""
        outcome_path = os.path.join(folder, "outcome")
        try:
            with self.lock(timeout=120):
                if not os.path.isdir(folder) or os.path.exists(outcome_path):
                    return  # confirmed (the folder is gone) or already done
                for backend, previous, snapshot in jobs:
                    if backend == "nftables":
                        script = "table inet ipmasq {}\ndelete table inet ipmasq\n" + (
                            snapshot or "")
                        self._must([self._bin("nft"), "-f", "-"], script, "nft -f (rollback)")
                    else:
                        self.restore(backend, previous)
                for backend, previous, _snapshot in jobs:
                    if not same_rules(backend, self.read(backend), previous):
                        raise HostError("our %s rules after the rollback differ from the saved "
                                        "ones" % backend)
                _write(outcome_path, "restored")
        except Exception as exc:  # pylint: disable=broad-except
            if os.path.isdir(folder) and not os.path.exists(outcome_path):
                _write(outcome_path, "failed: %s" % exc)

    def _detach(self, seconds, job):
        """Run ``job`` after ``seconds`` in a process of its own session, cut off from this
        run's output (Ansible waits for it to close). Returns that process's pid."""
        read_end, write_end = os.pipe()
        first = os.fork()
        if first:
            os.close(write_end)
            with os.fdopen(read_end) as pipe:
                pid = int(pipe.read() or 0)
            os.waitpid(first, 0)
            return pid
        try:  # pragma: no cover - runs in the detached child
            os.close(read_end)
            os.setsid()
            second = os.fork()
            if second:
                os.write(write_end, str(second).encode())
                os._exit(0)
            os.close(write_end)
            os.chdir("/")
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.closerange(3, 1024)  # the lock and Ansible's pipes stay with the parent
            self._detached = True
            time.sleep(seconds)
            job()
        finally:
            os._exit(0)

    def confirm(self, token):
        """Keep a change made with rollback_timeout: stop its timer, then write the files
        it held back. Returns the paths written; raises HostError when the change cannot be
        confirmed, and ConfirmedButNotPersisted when it was but the files could not be
        written."""
        folder = self._folder(token)
        if not os.path.isdir(folder):
            raise HostError("no pending change with token %s (already confirmed, or the host "
                            "restarted)" % token)
        outcome = _read(os.path.join(folder, "outcome"))
        if outcome:
            raise HostError("too late: %s" % describe_outcome(token, outcome))
        files = json.loads(_read(os.path.join(folder, "persist.json")) or "{}")
        self.disarm(token)
        try:
            self.write_files(files, sorted(files))
        except (IOError, OSError) as exc:
            raise ConfirmedButNotPersisted(
                "the change is confirmed and stays, but writing %s failed: %s; the rules "
                "loaded at boot are still the previous ones" % (", ".join(sorted(files)), exc))
        return sorted(files)

    def disarm(self, token):
        """Forget a pending change and stop its timer (under the lock: a timer that wakes
        up later finds no folder and does nothing)."""
        folder = self._folder(token)
        pid = int(_read(os.path.join(folder, "pid")) or 0)
        shutil.rmtree(folder, ignore_errors=True)
        if pid:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass

    def rollback_status(self, token):
        """"pending", "restored", "failed: why" or "unknown" for a token."""
        folder = self._folder(token)
        if not os.path.isdir(folder):
            return "unknown"
        return _read(os.path.join(folder, "outcome")) or "pending"


class ConfirmedButNotPersisted(HostError):
    """The rollback timer was stopped, but the boot files could not be written."""


def describe_outcome(token, outcome):
    if outcome == "restored":
        return "the rollback of %s already restored the previous rules" % token
    return ("the rollback of %s FAILED (%s): the host still runs the unconfirmed change"
            % (token, outcome[len("failed: "):] if outcome.startswith("failed: ") else outcome))


def same_rules(backend, state, other):
    """Whether two States hold the same rules of ours (iptables: also the same jumps)."""
    if backend == "nftables":
        return state == other
    return (state.chains, state.jumps, state.present, state.sets) == (
        other.chains, other.jumps, other.present, other.sets)


def _nfct_lines(part):
    """The nfct command lines of a part of split_script (its header left out)."""
    return [line for line in (part or "").splitlines() if line and not line.startswith("#")]


def _read(path):
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError):
        return None


def _write(path, text):
    with open(path, "w") as handle:
        handle.write(text)


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
