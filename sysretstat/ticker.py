"""Interval deadlines for the loops that sample every N seconds (top,
record, the daemon).

Deadlines lie on a grid of the monotonic clock from the start, so a
slow snapshot delays one tick and not every later one (no drift); a
wall-clock step (NTP, a user's date) moves nothing.  When a tick has
overrun whole intervals (a suspended host, a stalled read), the missed
ones are skipped rather than taken as a burst of near-empty intervals,
and counted in `missed`.
"""

import time

# After an overrun, where the next deadline goes:
SKIP = "skip"       # a full interval from now: every interval is whole
AT_ONCE = "now"     # now, then on a grid from there: the data is fresh
                    # again as soon as possible (the daemon's /healthz)


class Ticker:
    """Deadlines every `interval` seconds from construction.

    `stop` (anything with is_set() and wait(timeout) -> bool, such as a
    threading.Event or commands.common.StopFlag) ends wait() early.
    """

    def __init__(self, interval, stop=None, overrun=SKIP,
                 clock=time.monotonic):
        if overrun not in (SKIP, AT_ONCE):
            raise ValueError("overrun: %r" % (overrun,))
        self.interval = interval
        self.stop = stop
        self.overrun = overrun
        self.clock = clock
        self.started = clock()
        self.next = self.started + interval
        self.missed = 0

    def remaining(self):
        """Seconds to the next deadline (<= 0: due)."""
        return self.next - self.clock()

    def due(self):
        return self.remaining() <= 0

    def stopped(self):
        return self.stop is not None and self.stop.is_set()

    def wait(self, most=None):
        """Sleep until the deadline, or at most `most` seconds, or until
        the stop flag is set, whichever comes first.  True when the
        deadline has come and the flag is not set.

        Without `most` it returns only at the deadline or on the flag,
        however early a sleep wakes."""
        end = None if most is None else self.clock() + max(0.0, most)
        while not self.stopped():
            now = self.clock()
            left = self.next - now
            if left <= 0:
                return True
            if end is not None:
                if now >= end:
                    return False
                left = min(left, end - now)
            self._sleep(left)
        return False

    def _sleep(self, seconds):
        if self.stop is not None:
            self.stop.wait(seconds)
        else:
            time.sleep(seconds)

    def advance(self):
        """Move to the next deadline, once the tick's work is done.
        Returns how many deadlines the tick overran (0 when on time);
        `missed` keeps the total."""
        self.next += self.interval
        now = self.clock()
        if self.next > now:
            return 0
        late = int((now - self.next) // self.interval) + 1
        self.missed += late
        self.next = now + self.interval if self.overrun == SKIP else now
        return late

    def __iter__(self):
        """Each deadline as it comes (wait(), then advance() when the
        consumer asks for the next), until the stop flag."""
        while self.wait():
            yield self.next
            self.advance()
