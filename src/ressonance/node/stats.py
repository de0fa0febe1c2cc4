"""Figures of this node for metrics and the dashboard, kept as plain numbers where things
happen and read when someone asks (a scrape, a dashboard poll): nothing here runs per socket.

:class:`LatencyHistogram` counts observations into fixed buckets (the Prometheus histogram
model: cumulative at read time, a sum and a count) and answers quantiles for the dashboard.
"""

from __future__ import annotations

from bisect import bisect_left

# seconds: from under a millisecond (a loop tick on an idle node) to seconds (a stalled one)
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)


class LatencyHistogram:
    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: over the largest bound (+Inf)
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations ≤ it), ending with (+inf, count)."""
        total = 0
        out = []
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out

    def snapshot(self) -> tuple[list[int], float, int]:
        return list(self.counts), self.sum, self.count


def quantile(
    bounds: tuple[float, ...],
    before: tuple[list[int], float, int],
    after: tuple[list[int], float, int],
    q: float,
) -> float | None:
    """The ``q`` quantile of what was observed between two snapshots, interpolated within its
    bucket as Prometheus' ``histogram_quantile`` does; None when nothing was observed."""
    counts = [b - a for a, b in zip(before[0], after[0], strict=True)]
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    lower = 0.0
    for i, n in enumerate(counts):
        upper = bounds[i] if i < len(bounds) else bounds[-1]
        if seen + n >= rank and n:
            return lower + (upper - lower) * (rank - seen) / n
        seen += n
        lower = upper
    return bounds[-1]
