"""Time-bucketed counter rings and fixed log-bucket histograms: memory bounded regardless of traffic.

A series (one workflow, or one breakdown of it: a served version, a segment, a fallback) keeps two rings of
counter vectors: 60 fine buckets of 10 s (the last 10 minutes, what the detector's windows read) and 60
coarse buckets of 60 s (the last hour, for onset search and long burn-rate windows). Nothing grows with
traffic: a bucket is a fixed vector of counts.

Series live as rows of `Block`s (numpy arrays of many series) so that closing a bucket and testing every
series is a handful of array operations per block, not a Python loop per series.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import numpy.typing as npt

from codeblue.signals.indicators import NC, NI

FINE_S = 10.0
FINE_N = 60
COARSE_PER_FINE = 6
COARSE_S = FINE_S * COARSE_PER_FINE
COARSE_N = 60

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

_AGES = np.arange(FINE_N, dtype=np.int64)
_CAGES = np.arange(COARSE_N, dtype=np.int64)


def fine_bucket(t: float) -> int:
    return int(t // FINE_S)


class Block:
    """Up to `cap` series as rows: their rings, baselines and detector state."""

    def __init__(self, cap: int, closed_to: int) -> None:
        self.cap = cap
        self.n = 0
        self.fine = np.zeros((cap, FINE_N, NC), dtype=np.int32)
        self.fine_ids = np.full((cap, FINE_N), -1, dtype=np.int32)  # bucket numbers (10 s) fit until 2650
        self.coarse = np.zeros((cap, COARSE_N, NC), dtype=np.int32)
        self.coarse_ids = np.full((cap, COARSE_N), -1, dtype=np.int32)
        self.bnum = np.zeros((cap, NI), dtype=np.float64)
        self.bden = np.zeros((cap, NI), dtype=np.float64)
        self.cusum = np.zeros((cap, NI), dtype=np.float64)
        self.hold = np.zeros((cap, NI), dtype=bool)
        self.firing = np.zeros((cap, NI), dtype=bool)
        self.last_b = np.full(cap, -1, dtype=np.int64)
        self.testable_b = np.zeros(cap, dtype=np.int64)  # first bucket at which the row may fire
        self.learn_b = np.zeros(cap, dtype=np.int64)  # first bucket folded into the row's own baseline
        self.wf = np.zeros(cap, dtype=np.int64)  # workflow number (Bonferroni across a workflow's series)
        self.series: list[Series | None] = []
        self.closed_to = closed_to

    def recent(self, rows: IntArray | slice, b_end: int) -> IntArray:
        """Fine buckets ending at `b_end` for `rows`, newest first: [row, age, counter]."""
        idx = (b_end - _AGES) % FINE_N
        ok = self.fine_ids[rows][:, idx] == (b_end - _AGES)
        out = self.fine[rows][:, idx, :].astype(np.int64)
        out *= ok[:, :, None]
        return out

    def free(self, row: int) -> None:
        self.fine[row] = 0
        self.fine_ids[row] = -1
        self.coarse[row] = 0
        self.coarse_ids[row] = -1
        self.bnum[row] = 0
        self.bden[row] = 0
        self.cusum[row] = 0
        self.hold[row] = False
        self.firing[row] = False
        self.last_b[row] = -1
        self.learn_b[row] = 0


def scatter_add(blk: Block, rows: IntArray, bs: IntArray, vecs: npt.NDArray[np.int32]) -> None:
    """Add count vectors `vecs[k]` to fine bucket `bs[k]` (and its coarse bucket) of row `rows[k]`.

    A slot holding an older bucket is cleared for the new one first; a slot holding a newer bucket (the ring
    has moved past `bs[k]`) drops the vector."""
    _scatter(blk.fine, blk.fine_ids, rows, bs % FINE_N, bs, vecs)
    cbs = bs // COARSE_PER_FINE
    _scatter(blk.coarse, blk.coarse_ids, rows, cbs % COARSE_N, cbs, vecs)
    np.maximum.at(blk.last_b, rows, bs)


def _scatter(ring: npt.NDArray[np.int32], ring_ids: npt.NDArray[np.int32], rows: IntArray, slots: IntArray,
             bs: IntArray, vecs: npt.NDArray[np.int32]) -> None:
    ids = ring_ids[rows, slots]
    stale = ids < bs
    if np.count_nonzero(stale):  # (count_nonzero: a C call, where .any() goes through Python)
        rs, ss = rows[stale], slots[stale]
        ring[rs, ss] = 0
        ring_ids[rs, ss] = bs[stale]  # (a slot named twice takes the last of its buckets, as assignment does)
        ids = ring_ids[rows, slots]
    ok = ids == bs
    if np.count_nonzero(ok) == ok.size:
        np.add.at(ring, (rows, slots), vecs)
    else:
        np.add.at(ring, (rows[ok], slots[ok]), vecs[ok])


class Rings:
    """One series' view of its block's rings."""

    __slots__ = ("block", "row")

    def __init__(self, block: Block, row: int) -> None:
        self.block = block
        self.row = row

    def add(self, b: int, vec: IntArray) -> None:
        blk, r = self.block, self.row
        i = b % FINE_N
        fid = int(blk.fine_ids[r, i])
        if fid < b:
            blk.fine[r, i] = 0
            blk.fine_ids[r, i] = b
            fid = b
        if fid == b:
            blk.fine[r, i] += vec
        cb = b // COARSE_PER_FINE
        j = cb % COARSE_N
        cid = int(blk.coarse_ids[r, j])
        if cid < cb:
            blk.coarse[r, j] = 0
            blk.coarse_ids[r, j] = cb
            cid = cb
        if cid == cb:
            blk.coarse[r, j] += vec

    def recent(self, b_end: int) -> IntArray:
        """The fine buckets ending at `b_end`, newest first: row k is bucket b_end - k (zeros where empty)."""
        blk, r = self.block, self.row
        idx = (b_end - _AGES) % FINE_N
        ok = blk.fine_ids[r, idx] == (b_end - _AGES)
        out: IntArray = blk.fine[r, idx].astype(np.int64)
        out *= ok[:, None]
        return out

    def recent_coarse(self, cb_end: int) -> IntArray:
        """The coarse buckets ending at `cb_end`, newest first."""
        blk, r = self.block, self.row
        idx = (cb_end - _CAGES) % COARSE_N
        ok = blk.coarse_ids[r, idx] == (cb_end - _CAGES)
        out: IntArray = blk.coarse[r, idx].astype(np.int64)
        out *= ok[:, None]
        return out

    def sum_since(self, t0: float, b_end: int) -> IntArray:
        """Counts from time `t0` (rounded down to a bucket) through fine bucket `b_end`, within the last hour."""
        b0 = fine_bucket(t0)
        if b0 > b_end:
            return np.zeros(NC, dtype=np.int64)
        fine_first = b_end - FINE_N + 1
        if b0 >= fine_first:
            return self.recent(b_end)[: b_end - b0 + 1].sum(axis=0)  # type: ignore[no-any-return]
        boundary = -(-fine_first // COARSE_PER_FINE) * COARSE_PER_FINE  # first coarse-aligned fine bucket
        cb_last = boundary // COARSE_PER_FINE - 1
        cb_first = b0 // COARSE_PER_FINE
        total = np.zeros(NC, dtype=np.int64)
        if cb_last >= cb_first:
            total += self.recent_coarse(cb_last)[: min(cb_last - cb_first + 1, COARSE_N)].sum(axis=0)
        total += self.recent(b_end)[: b_end - boundary + 1].sum(axis=0)
        return total


class Series:
    """A handle on one row: the workflow or one breakdown of it (key "*", "v:<kind>/<name>=<ver>", "s:<segment>",
    "f:<fallback>")."""

    __slots__ = ("block", "inherited", "key", "rings", "row")

    def __init__(self, key: str, block: Block, row: int) -> None:
        self.key = key
        self.block = block
        self.row = row
        self.rings = Rings(block, row)
        self.inherited = False

    @property
    def bnum(self) -> FloatArray:
        return self.block.bnum[self.row]  # type: ignore[no-any-return]

    @property
    def bden(self) -> FloatArray:
        return self.block.bden[self.row]  # type: ignore[no-any-return]

    @property
    def cusum(self) -> FloatArray:
        return self.block.cusum[self.row]  # type: ignore[no-any-return]

    @property
    def firing(self) -> BoolArray:
        return self.block.firing[self.row]  # type: ignore[no-any-return]

    @property
    def last_b(self) -> int:
        return int(self.block.last_b[self.row])

    def inherit(self, parent: Series, weight: float, probation_until: int) -> None:
        """Start from the parent's rates: a new version (segment, fallback) is judged against its workflow, and
        only learns a baseline of its own after its probation, so a bad new version cannot teach itself that
        its rate is normal."""
        scale = np.minimum(1.0, weight / np.maximum(parent.bden, 1e-9))
        self.block.bnum[self.row] = parent.bnum * scale
        self.block.bden[self.row] = parent.bden * scale
        if float(parent.bden.max()) > 0:
            self.block.learn_b[self.row] = probation_until
        self.inherited = True


class SeriesStore:
    """Allocates series rows in blocks of growing size (64, 256, 1024, then 4096 each)."""

    SIZES = (64, 256, 1024, 4096)

    def __init__(self) -> None:
        self.blocks: list[Block] = []
        self._free: list[tuple[Block, int]] = []

    def new(self, key: str, wf_no: int, b: int, testable_b: int, closed_to: int) -> Series:
        if self._free:
            blk, row = self._free.pop()
        else:
            if not self.blocks or self.blocks[-1].n >= self.blocks[-1].cap:
                size = self.SIZES[min(len(self.blocks), len(self.SIZES) - 1)]
                self.blocks.append(Block(size, closed_to))
            blk = self.blocks[-1]
            row = blk.n
            blk.n += 1
            blk.series.append(None)
        s = Series(key, blk, row)
        blk.series[row] = s
        blk.wf[row] = wf_no
        blk.last_b[row] = b
        blk.testable_b[row] = testable_b
        return s

    def release(self, s: Series) -> None:
        s.block.free(s.row)
        s.block.series[s.row] = None
        self._free.append((s.block, s.row))


# Log-bucket histogram: bucket k holds values in [1.2**(k-1), 1.2**k) (k=0 holds values < 1).
HIST_BINS = 96
HIST_BASE = 1.2
_LOG_BASE = math.log(HIST_BASE)
_EDGES = np.array([HIST_BASE**k for k in range(HIST_BINS)], dtype=np.float64)


def hist_bins(values: FloatArray) -> IntArray:
    v = np.maximum(values, 1.0)
    k = np.ceil(np.log(v) / _LOG_BASE).astype(np.int64)
    return np.minimum(np.maximum(k, 0), HIST_BINS - 1)  # (np.clip, in fewer Python frames)


class DecayingHistogram:
    """A fixed 96-bin log histogram (≈20 % bins, interpolated) with exponential forgetting."""

    __slots__ = ("counts", "last")

    def __init__(self) -> None:
        self.counts = np.zeros(HIST_BINS, dtype=np.float64)
        self.last = -1

    def add(self, values: FloatArray, b: int, decay_per_bucket: float) -> None:
        self.add_bins(hist_bins(values), b, decay_per_bucket)

    def add_bins(self, bins: IntArray, b: int, decay_per_bucket: float) -> None:
        """`add` for values already binned by `hist_bins` (several histograms' values binned in one call)."""
        if self.last >= 0 and b > self.last:
            self.counts *= decay_per_bucket ** (b - self.last)
        self.last = max(self.last, b)
        self.counts += np.bincount(bins, minlength=HIST_BINS)

    @property
    def total(self) -> float:
        return float(np.add.reduce(self.counts))

    def quantile(self, q: float) -> float:
        """The q-quantile, interpolated inside its bin; +inf when empty."""
        tot = np.add.reduce(self.counts)
        if tot <= 0:
            return math.inf
        cum = np.add.accumulate(self.counts)
        target = q * tot
        k = int(np.searchsorted(cum, target))
        k = min(k, HIST_BINS - 1)
        below = cum[k - 1] if k > 0 else 0.0
        inbin = self.counts[k]
        frac = (target - below) / inbin if inbin > 0 else 1.0
        lo = _EDGES[k - 1] if k > 0 else 0.0
        return float(lo + (_EDGES[k] - lo) * min(max(frac, 0.0), 1.0))


#: Bad events kept per workflow (time, subject, indicator bits) for distinct-subject harm counts.
BAD_RING = 1024


class WorkflowState:
    """Everything detection keeps about one workflow: its series, percentile baselines and recent bad events."""

    __slots__ = ("all", "bad", "bad_total", "breakdowns", "first_t", "last_b", "lat_hist", "lat_pending", "lat_thr",
                 "name", "no", "pending_b", "rage_hist", "rage_pending", "rage_thr", "testable_b")

    def __init__(self, name: str, no: int, t: float, all_series: Series, testable_b: int) -> None:
        self.name = name
        self.no = no
        self.all = all_series
        self.breakdowns: dict[str, Series] = {}
        self.lat_hist = DecayingHistogram()
        self.rage_hist = DecayingHistogram()
        self.lat_thr = math.inf
        self.rage_thr = math.inf
        self.lat_pending: list[float] = []
        self.rage_pending: list[float] = []
        self.pending_b = -1
        self.bad: deque[tuple[float, str | None, int]] = deque(maxlen=BAD_RING)
        self.bad_total = 0
        self.first_t = t
        self.last_b = fine_bucket(t)
        self.testable_b = testable_b

    def series(self) -> list[Series]:
        return [self.all, *self.breakdowns.values()]

    def version_series(self, config: str) -> dict[str, Series]:
        """Served versions of one config ("prompt/refund-assistant") → their series."""
        prefix = f"v:{config}="
        return {k[len(prefix):]: s for k, s in self.breakdowns.items() if k.startswith(prefix)}
