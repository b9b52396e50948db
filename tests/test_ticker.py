"""The interval ticker top, record and the daemon share."""

import threading

import pytest

from sysretstat.ticker import AT_ONCE, SKIP, Ticker


class Clock:
    """A monotonic clock the test moves; sleeping advances it."""

    def __init__(self, t=100.0):
        self.t = t

    def __call__(self):
        return self.t


class FakeStop:
    """A stop flag whose wait() advances the fake clock (a sleep)."""

    def __init__(self, clock, set_at=None):
        self.clock = clock
        self.set_at = set_at
        self.waits = []

    def is_set(self):
        return self.set_at is not None and self.clock.t >= self.set_at

    def wait(self, timeout):
        self.waits.append(timeout)
        if self.set_at is not None and self.clock.t + timeout >= self.set_at:
            self.clock.t = max(self.clock.t, self.set_at)
            return True
        self.clock.t += timeout
        return False


def test_deadlines_do_not_drift():
    c = Clock()
    t = Ticker(1.0, clock=c)
    assert t.remaining() == 1.0 and not t.due()
    for k in range(1, 6):
        c.t = 100.0 + k + 0.3       # each tick's work takes 0.3 s
        assert t.advance() == 0
        assert t.next == 100.0 + k + 1
    assert t.missed == 0


@pytest.mark.parametrize("overrun,after", [(SKIP, 104.5 + 1.0),
                                           (AT_ONCE, 104.5)])
def test_an_overrun_skips_the_missed_ticks(overrun, after):
    c = Clock()
    t = Ticker(1.0, clock=c, overrun=overrun)
    c.t = 104.5                     # the tick due at 101 ends at 104.5
    assert t.advance() == 3         # 102, 103, 104 missed
    assert t.missed == 3
    assert t.next == after
    c.t = after + 0.1
    t.advance()
    assert t.next == after + 1.0    # a grid again from there


def test_wait_sleeps_to_the_deadline_and_retries_early_wakes():
    c = Clock()
    stop = FakeStop(c)
    real = stop.wait

    def early(timeout):             # every sleep wakes at half time
        return real(timeout / 2)
    stop.wait = early
    t = Ticker(1.0, stop, clock=c)
    assert t.wait() is True
    assert c.t >= 101.0 and t.due()
    assert len(stop.waits) > 1


def test_wait_returns_early_on_the_stop_flag():
    c = Clock()
    t = Ticker(1.0, FakeStop(c, set_at=100.4), clock=c)
    assert t.wait() is False
    assert c.t == 100.4


def test_wait_at_most():
    c = Clock()
    stop = FakeStop(c)
    t = Ticker(1.0, stop, clock=c)
    assert t.wait(0.25) is False and c.t == 100.25
    assert t.wait(-1) is False and c.t == 100.25
    assert t.wait(5) is True and c.t == 101.0


def test_iteration_yields_deadlines_until_stopped():
    c = Clock()
    t = Ticker(0.5, FakeStop(c, set_at=102.2), clock=c)
    assert list(t) == [100.5, 101.0, 101.5, 102.0]


def test_a_real_event_ends_a_real_wait_at_once():
    stop = threading.Event()
    t = Ticker(3600, stop)
    threading.Timer(0.05, stop.set).start()
    assert t.wait() is False
    assert t.remaining() > 3500


def test_bad_overrun_policy():
    with pytest.raises(ValueError):
        Ticker(1.0, overrun="burst")
