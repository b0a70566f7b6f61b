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

import errno
import fcntl
import os
import time

from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import iptables
from ansible_collections.ipmasq.gateway.plugins.module_utils._nat import nft

LOCK_PATH = "/run/ipmasq.lock"
PERSIST_DIR = "/etc/ipmasq"
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
