"""Names of cgroup v2 ids: the path of a cgroup below the cgroup2 mount.

The BPF side reads a task's default-hierarchy cgroup as its kernfs id,
which is the inode number of the cgroup's directory; user space turns
it into a path ("/" for the root, "/system.slice/cron.service") by
walking the mount.  A walk costs a directory read per cgroup, so it is
done only for an id not yet known, at most once per `rescan_s`.  Paths
once learnt are kept: a container's cgroup is removed while its last
returns are still being reported.
"""

import os
import time

from sysretstat.kernel import hostinfo

ROOT_ID = 1   # the root of a kernfs hierarchy


def cgroup2_mount():
    """Where the cgroup v2 hierarchy is mounted, or None."""
    text = hostinfo._read("/proc/self/mounts") or ""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) > 2 and parts[2] == "cgroup2":
            return parts[1]
    return None


class CgroupPaths:
    """id -> path, from the walks of one cgroup2 mount."""

    # Bounds a walk of a host with a runaway number of cgroups.
    MAX_DIRS = 100000

    def __init__(self, root=None, rescan_s=1.0, clock=time.monotonic):
        self.root = root if root is not None else cgroup2_mount()
        self.rescan_s = rescan_s
        self.clock = clock
        self.paths = {}
        self._walked_at = None

    def path(self, cid):
        """The cgroup's path; "" for no id (not read), and "cgroup:ID"
        for one that came and went between two walks (or with no cgroup2
        mount to walk)."""
        if not cid:
            return ""
        p = self.paths.get(cid)
        if p is not None:
            return p
        now = self.clock()
        if self.root and (self._walked_at is None or
                          now - self._walked_at >= self.rescan_s):
            self._walked_at = now
            self._walk()
            p = self.paths.get(cid)
            if p is not None:
                return p
        return "/" if cid == ROOT_ID else "cgroup:%d" % cid

    def _walk(self):
        root = self.root.rstrip("/") or "/"
        try:
            self.paths[os.stat(root).st_ino] = "/"
        except OSError:
            return
        todo, seen = [(root, "")], 0
        while todo and seen < self.MAX_DIRS:
            path, rel = todo.pop()
            try:
                with os.scandir(path) as it:
                    for e in it:
                        # kernfs gives each directory its id as d_ino:
                        # no stat per cgroup.
                        if e.is_dir(follow_symlinks=False):
                            sub = rel + "/" + e.name
                            self.paths[e.inode()] = sub
                            todo.append((e.path, sub))
                            seen += 1
            except OSError:
                continue   # removed while walked
