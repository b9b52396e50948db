"""Keep Python's cycle collector off the rows that snapshots keep.

One interval of thousands of active processes allocates, and keeps for
a frame or more, a hundred thousand small containers: rows, counts,
histograms.  With the default thresholds the cycle collector walked
them again and again, about half the CPU of a `top` frame with 5,000
active processes (benchmarks/top_frame.py).  None of them is in a
reference cycle: reference counting frees them.

So a frame runs with the collector off, and what survives it is then
frozen (gc.freeze: never walked, still freed by reference counting).
Every `full_every` frames everything is unfrozen and collected once,
for the few cycles the rest of the program makes (exceptions, threads).
"""

import gc
from contextlib import contextmanager


class FrameGC:
    def __init__(self, full_every=300):
        self.full_every = full_every
        self.frames = 0

    @contextmanager
    def frame(self):
        enabled = gc.isenabled()
        gc.disable()
        try:
            yield
        finally:
            self.frames += 1
            if self.frames % self.full_every == 0:
                gc.unfreeze()
                gc.collect()
            gc.freeze()
            if enabled:
                gc.enable()
