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
import shutil
import signal
import subprocess
import time

from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import iptables
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import nft

LOCK_PATH = "/run/ipmasq.lock"
PERSIST_DIR = "/etc/ipmasq"
PENDING_DIR = "/run/ipmasq"  # commit-confirm: one folder per armed rollback
PERSIST_FILES = {
    "nftables": {"nft": "ipmasq.nft"},
    "iptables": {4: "ipmasq.v4", 6: "ipmasq.v6"},
}


class HostError(Exception):
    """A command on the host failed; the message carries its output."""


class Host:
    def __init__(self, module):
        self.module = module

    # -- plumbing
    def _bin(self, name, required=True):
        return self.module.get_bin_path(name, required=required)

    def _run(self, args, data=None):
        rc, out, err = self.module.run_command(args, data=data, binary_data=True)
        return rc, out, err

    def _must(self, args, data=None, what=None):
        rc, out, err = self._run(args, data)
        if rc != 0:
            detail = (err or out).strip()
            raise HostError("%s failed (rc=%d): %s" % (what or " ".join(args), rc, detail))
        return out

    def lock(self, timeout=60):
        """Serialise read-diff-apply between concurrent runs on one host."""
        handle = open(LOCK_PATH, "a")
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

    def codec(self, backend):
        return nft if backend == "nftables" else iptables

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
        parts = {}
        for family, tool in ((4, "iptables-save"), (6, "ip6tables-save")):
            path = self._bin(tool, required=family == 4)
            parts[family] = iptables.parse_save(self._must([path]), family) if path \
                else iptables.empty_state()
        return iptables.combine(parts[4], parts[6])

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
        tools = dict((f, self._bin(iptables.TOOLS[f])) for f in sorted(scripts))
        for family in sorted(scripts):
            self._must([tools[family], "-w", "--noflush", "--test"], scripts[family],
                       "%s --test" % iptables.TOOLS[family])
        for family in sorted(scripts):
            self._must([tools[family], "-w", "--noflush"], scripts[family],
                       iptables.TOOLS[family])

    def restore(self, backend, previous):
        """Bring our rules back to ``previous`` (a State read earlier) from whatever is there."""
        codec = self.codec(backend)
        self.apply(backend, codec.render_changes(self.read(backend), previous))

    # -- persist
    def persist_files(self, backend, state):
        """{path: content} of the files the boot unit restores."""
        codec = self.codec(backend)
        text = codec.render_full(state)
        if backend == "nftables":
            return {os.path.join(PERSIST_DIR, "ipmasq.nft"): text}
        parts = iptables.split_script(text.splitlines())
        return dict((os.path.join(PERSIST_DIR, name), parts.get(family, ""))
                    for family, name in PERSIST_FILES["iptables"].items())

    def persist_changes(self, files):
        """The paths whose content differs from ``files``."""
        changed = []
        for path, content in sorted(files.items()):
            try:
                with open(path) as handle:
                    if handle.read() == content:
                        continue
            except (IOError, OSError):
                pass
            changed.append(path)
        return changed

    def write_files(self, files, paths):
        if not paths:
            return
        if not os.path.isdir(PERSIST_DIR):
            os.makedirs(PERSIST_DIR, 0o750)
        for path in paths:
            tmp = path + ".tmp"
            with open(tmp, "w") as handle:
                handle.write(files[path])
            os.chmod(tmp, 0o640)
            os.rename(tmp, path)  # atomic: the boot unit never sees half a file

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

    # -- commit-confirm
    def arm_rollback(self, backend, commands, seconds):
        """Start a detached timer that applies ``commands`` (the way back) after ``seconds``.

        The timer is a child of this run, so it lives in the same network namespace and
        does not depend on the Ansible connection. Returns its token.
        """
        token = "%d-%s" % (os.getpid(), binascii.hexlify(os.urandom(6)).decode())
        folder = os.path.join(PENDING_DIR, token)
        os.makedirs(folder, 0o700)
        steps = []
        if backend == "nftables":
            path = os.path.join(folder, "rollback.nft")
            with open(path, "w") as handle:
                handle.write("\n".join(commands) + "\n")
            steps.append([self._bin("nft"), "-f", path])
        else:
            for family, text in sorted(iptables.split_script(commands).items()):
                path = os.path.join(folder, "rollback.v%d" % family)
                with open(path, "w") as handle:
                    handle.write(text)
                steps.append([self._bin(iptables.TOOLS[family]), "-w", "--noflush", path])
        # sleep, then run each step; paths come from this code only (no user text).
        program = 'sleep "$1"; %s touch "%s"' % (
            "".join("%s; " % " ".join("'%s'" % a for a in step) for step in steps),
            os.path.join(folder, "fired"))
        args = ["/bin/sh", "-c", program, "ipmasq-rollback", str(seconds)]
        # The timer must outlive this module run, and run_command waits for its child.
        with open(os.devnull, "r+") as null:
            proc = subprocess.Popen(  # pylint: disable=ansible-bad-function
                args, stdin=null, stdout=null, stderr=null, close_fds=True, start_new_session=True)
        with open(os.path.join(folder, "pid"), "w") as handle:
            handle.write(str(proc.pid))
        return token

    def stash_files(self, token, files, paths):
        """Keep the files to persist until the change is confirmed."""
        with open(os.path.join(PENDING_DIR, token, "persist.json"), "w") as handle:
            json.dump(dict((p, files[p]) for p in paths), handle)

    def confirm(self, token):
        """Cancel the rollback timer of ``token``, then write the files it held back."""
        folder = os.path.join(PENDING_DIR, os.path.basename(token))
        if not os.path.isdir(folder):
            raise HostError("no pending change with token %s" % token)
        if os.path.exists(os.path.join(folder, "fired")):
            shutil.rmtree(folder, ignore_errors=True)
            raise HostError("too late: the rollback of %s already restored the previous rules"
                            % token)
        with open(os.path.join(folder, "pid")) as handle:
            pid = int(handle.read())
        try:
            os.killpg(pid, signal.SIGTERM)
        except OSError:
            pass
        if os.path.exists(os.path.join(folder, "fired")):
            raise HostError("too late: the rollback of %s already restored the previous rules"
                            % token)
        stash = os.path.join(folder, "persist.json")
        written = []
        if os.path.exists(stash):
            with open(stash) as handle:
                files = json.load(handle)
            self.write_files(files, sorted(files))
            written = sorted(files)
        shutil.rmtree(folder, ignore_errors=True)
        return written
