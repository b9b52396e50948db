"""The time series of a recording: every interval's totals, in bounded
memory."""

from sysretstat.model.snapshot import Counts

SERIES_MAX_POINTS = 4096


class Series:
    """Per-interval totals, for the time series; at most max_points
    points (older neighbours are merged pairwise when full), so memory
    stays bounded however long the recording."""

    def __init__(self, max_points=SERIES_MAX_POINTS):
        self.max_points = max_points
        self.points = []    # [start_s, dur_s, n list, intervals merged]
        self.step = 1       # intervals per point

    def add(self, start, dur, n):
        pts = self.points
        if pts and pts[-1][3] < self.step:
            last = pts[-1]
            last[1] += dur
            last[2] = [a + b for a, b in zip(last[2], n)]
            last[3] += 1
            return
        if len(pts) >= self.max_points:
            merged = []
            for k in range(0, len(pts), 2):
                a = pts[k]
                if k + 1 < len(pts):
                    b = pts[k + 1]
                    a = [a[0], a[1] + b[1],
                         [x + y for x, y in zip(a[2], b[2])], a[3] + b[3]]
                merged.append(a)
            self.points = pts = merged
            self.step *= 2
            return self.add(start, dur, n)
        pts.append([start, dur, list(n), 1])

    def __len__(self):
        return len(self.points)

    def rows(self, max_rows=None):
        """(start_s, dur_s, Counts) per point, merged down to max_rows."""
        pts = self.points
        group = 1
        if max_rows and len(pts) > max_rows:
            group = -(-len(pts) // max_rows)
        out = []
        for k in range(0, len(pts), group):
            chunk = pts[k:k + group]
            n = [sum(col) for col in zip(*(p[2] for p in chunk))]
            out.append((chunk[0][0], sum(p[1] for p in chunk), Counts(n)))
        return out
