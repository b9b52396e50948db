"""record's encoding of a row's latency straight from the kernel's runs
(format._enc_pending) must write what the made Hists (Counts.lat) give,
as it did before: same buckets, same counts, same sums, same order."""

import random
import struct

from sysretstat.kernel import abi
from sysretstat.model.counts import Counts, KernelLatency
from sysretstat.model.histogram import Hist
from sysretstat.record import format as fmt

NR = abi.NR_OUTCOMES


def _reference(c):
    """The encoding as it was, from Counts.lat (made Hists)."""
    n = c.n
    last = len(n)
    while last and not n[last - 1]:
        last -= 1
    out = [n[:last]] + fmt._enc_hists(c.lat)
    if c.detail:
        out.append(c.reason_detail())
    return out


def _run(rng, nbuckets=24):
    k = rng.choice((0, 1, 2, 3, 5))
    vals = [rng.choice((0, 0, 1, 2, 7, 1 << 40)) for _ in range(k)]
    raw = struct.pack("=%dq" % k, *vals)
    if rng.random() < .5:
        where = rng.randrange(nbuckets)
    else:
        bits = sorted(rng.sample(range(nbuckets), k))
        word = sum(1 << b for b in bits)
        where = word.to_bytes(8 * rng.choice((1, 2)), "little")
    return (where, raw, rng.randrange(10 ** 6))


def _counts(rng, runs):
    n = [0] * NR
    n[0] = rng.randrange(5)
    if rng.random() < .3:
        n[rng.randrange(NR)] = rng.randrange(1, 5)
    return Counts.of(n, KernelLatency(runs) if runs is not None else None)


def test_pending_latency_encodes_as_the_hists():
    rng = random.Random(7)
    for _ in range(3000):
        new_runs = [_run(rng), _run(rng)]
        if rng.random() < .3:
            old_runs = list(new_runs)
            if rng.random() < .5:
                old_runs[1] = _run(rng)
        else:
            old_runs = [_run(rng), _run(rng)]
        # Same where and length, other counts: the one-pass way.
        if rng.random() < .3:
            w, raw, s = new_runs[0]
            k = len(raw) // 8
            other = struct.pack("=%dq" % k,
                                *[rng.randrange(3) for _ in range(k)])
            old_runs[0] = (w, other, s - 5)
        if rng.random() < .1:
            old_runs = None
        elif rng.random() < .05:
            new_runs = None
        pair = []
        for _ in range(2):
            state = rng.getstate()
            new = _counts(rng, new_runs)
            old = _counts(rng, old_runs)
            rng.setstate(state)
            pair.append((new, old))
        (new, old), (new2, old2) = pair
        got = fmt._enc_counts(new.minus(old))
        assert got == _reference(new2.minus(old2))
        # A cumulative row (a checkpoint): the runs alone.
        assert fmt._enc_counts(new) == _reference(_counts_copy(new2))
        rng.random()


def _counts_copy(c):
    return Counts.of(list(c.n), c._lat)


def test_made_hists_are_written_as_they_are():
    c = Counts([3, 1] + [0] * (NR - 2), [Hist({4: 0, 2: 5}, 10), Hist()])
    assert fmt._enc_counts(c) == _reference(c)
    old = Counts([1] + [0] * (NR - 1), [Hist({2: 1}, 3), Hist({9: 2}, 4)])
    assert fmt._enc_counts(c.minus(old)) == _reference(c.minus(old))
