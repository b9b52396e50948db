"""Which syscalls have their duration sampled rather than timed.

Timing a syscall costs two clock reads and the sys_enter program's work;
counting and classifying its return does not need them.  So every
return is counted, and durations are taken for every call of most
syscalls but only 1 in N calls of the ones that are hot and almost
never leave by IRET (getpid, read, write in a tight loop): the calls
whose timing costs the most and tells the least.  A syscall that is
rare, or that often returns by IRET (the returns the tool exists to
explain), keeps every call timed.

Syscalls that only their entry can identify (abi.NEED_ENTRY: the
sigreturns and execs) are never sampled: an untimed call is classified
at its exit alone.

The choice is remade from the rates over the last WINDOW_S seconds or
more (snapshots can come much faster: top's refresh, a test's loop);
the kernel side picks which calls to time at random
(bpf_get_prandom_u32), so that no workload's rhythm can line up with it.
"""

from sysretstat.kernel import abi

# A syscall is sampled only when 1 in N of its calls still gives this
# many durations per second; once sampled, until it falls below half
# that, so that a rate near the line does not flip at every decision.
MIN_SAMPLES = 100
# ... and while fewer than this share of its returns take IRET.
MAX_IRET_SHARE = 0.01
WINDOW_S = 0.5
MAX_SHIFT = 16


def shift_of(n):
    """log2 of a --latency-sample rate (a power of two, 1 to 65536)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1 or \
            n & (n - 1) or n > 1 << MAX_SHIFT:
        raise ValueError("a power of two from 1 to %d" % (1 << MAX_SHIFT))
    return n.bit_length() - 1


def _state(row):
    c = row.counts
    n, lat = c.n, c.lat
    return (sum(n), sum(n[abi.FIRST_IRET:]),
            lat[0].count + lat[1].count if lat else 0,
            n[abi.OUTCOMES.index("fork_child")])


class Sampler:
    """The per-slot shifts (abi.NR_SLOTS bytes) of one collection, and
    a count of the returns sampling left untimed."""

    def __init__(self, rate=1, every_syscall=False):
        self.rate = rate
        self.shift = shift_of(rate)
        # Tests: every syscall at the rate, hot or not, to mix timed and
        # untimed calls of every kind.
        self.every_syscall = every_syscall and self.shift > 0
        self.shifts = bytearray([self.shift if self.every_syscall else 0]
                                * abi.NR_SLOTS)
        for key in abi.NEED_ENTRY:
            self.shifts[abi.syscall_to_slot(*key)] = 0
        self.sampled = {}         # (abi, nr) ever sampled -> "abi:name"
        self.untimed = 0
        self._prev = {}           # slot -> _state at the last update
        self._window = {}         # slot -> _state when the window began
        self._window_s = 0.0

    def initial(self):
        return bytes(self.shifts)

    def update(self, syscalls, elapsed):
        """Account for `elapsed` seconds that ended with the syscall rows
        `syscalls` ({(abi, nr): Row}, cumulative); return the shifts
        from now on, or None when they do not change."""
        prev, shifts = self._prev, self.shifts
        for key, row in syscalls.items():
            slot = abi.syscall_to_slot(*key)
            now = _state(row)
            old = prev.get(slot, (0, 0, 0, 0))
            prev[slot] = now
            if shifts[slot]:
                # Untimed while it was sampled: sampling's doing (or,
                # rarely, a call seccomp skipped before sys_enter).  Not
                # clamped per update: counts and histograms are read a
                # moment apart, and what one update misses the next has.
                self.untimed += (now[0] - old[0]) - (now[2] - old[2]) - \
                    (now[3] - old[3])
                if key not in self.sampled:
                    self.sampled[key] = "%s:%s" % (
                        key[0], row.fields.get("name") or key[1])
        self._window_s += max(0.0, elapsed)
        if self.every_syscall or not self.shift or \
                self._window_s < WINDOW_S:
            return None
        new = bytearray(abi.NR_SLOTS)
        for key, row in syscalls.items():
            if key in abi.NEED_ENTRY:
                continue
            slot = abi.syscall_to_slot(*key)
            now = prev[slot]
            start = self._window.get(slot, (0, 0, 0, 0))
            calls, irets = now[0] - start[0], now[1] - start[1]
            need = (MIN_SAMPLES << self.shift) * self._window_s * (
                0.5 if shifts[slot] else 1)
            if calls >= need and irets < calls * MAX_IRET_SHARE:
                new[slot] = self.shift
        self._window = dict(prev)
        self._window_s = 0.0
        if new == shifts:
            return None
        self.shifts = new
        return bytes(new)

    def meta(self):
        """What the report says of it (sysretstat(8), meta)."""
        return {"latency_sample": self.rate,
                "latency_sampled": sorted(self.sampled.values()),
                "untimed_sampled": max(0, self.untimed)}
