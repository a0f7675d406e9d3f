"""Detectors: a learned baseline per series × indicator, judged by exact binomial tests over several windows
at once (Bonferroni-corrected) plus a one-sided binomial CUSUM for small persistent shifts.

Why this shape (docs/vitals-monitor.md has the long form): every indicator is a ratio of counts, so the
daily load curve and traffic bursts change the denominator, not the rate; a binomial test against the
baseline rate turns "how surprising is x bad out of n" into one number whose false-alarm rate we can fix in
advance, and which needs no per-workflow threshold. Short windows make big jumps fire within a few buckets;
long windows and the CUSUM accumulate evidence for small shifts. The baseline is an exponentially weighted
rate over about an hour of closed buckets that skips buckets where the series looks elevated, so slow drift
is followed but a fault is not learned as normal.

Everything here works on whole blocks of series at once (numpy), so a tick costs a few array operations.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from codeblue.signals import kernels
from codeblue.signals.indicators import DEN_IDX, INDICATORS, NC, NI, NUM_IDX
from codeblue.signals.windows import FINE_N, FINE_S, Block, BoolArray, FloatArray, IntArray, Series

#: Indicators the CUSUM judges (all but the percentile ones), as a row mask.
_CUSUM_JUDGED = np.array([not ind.percentile for ind in INDICATORS])
_NUM_DEN = NUM_IDX + DEN_IDX
_NUM_DEN_A = np.array(_NUM_DEN, dtype=np.intp)
#: Rows per window-sum product in `test_block` (bounds its float64 temporaries to ~4 MB).
_CHUNK = 512
#: A binomial tail sums its first terms one by one, then the rest in vectorised chunks.
_SCALAR_TERMS = 48
_CHUNK_TERMS = 256


@dataclass
class DetectConfig:
    """Statistical settings. Defaults are principled budgets, not tuned to any scenario."""

    #: Test windows in fine (10 s) buckets: 30 s, 2 min, 10 min.
    windows: tuple[int, ...] = (3, 12, 60)
    #: False-alarm budget per workflow × indicator × evaluation (every 10 s), split (Bonferroni) across the
    #: windows and the workflow's series. 1e-7 × 8640 evaluations/day × 8 indicators ≈ 0.007 false alarms
    #: per workflow-day if the binomial model held exactly.
    alpha: float = 1e-7
    #: A series whose smallest p-value is below this is "elevated": its buckets stay out of the baseline and
    #: an open alert on it is not quiet.
    loose_alpha: float = 1e-3
    #: At least this many bad events in the window, and a rate at least `min_ratio` × baseline (percentile
    #: indicators: `min_ratio_percentile` × the baseline exceedance share, i.e. p95 clearly moved).
    min_count: int = 3
    min_ratio: float = 1.5
    min_ratio_percentile: float = 3.0
    #: CUSUM: shift to detect (× baseline rate) and its decision threshold h = ln(1/alpha_cusum), so the
    #: in-control run length is at least 1/alpha_cusum buckets (Wald's bound).
    cusum_ratio: float = 2.0
    cusum_alpha: float = 1e-8
    #: Baseline: half-life of the exponentially weighted rate, the minimum learned denominator, and how much
    #: stream a workflow needs before it is judged at all ("after about an hour of traffic").
    half_life_s: float = 3600.0
    memory_events: float = 30.0
    min_baseline: float = 100.0
    warmup_s: float = 1800.0
    #: Weight (in denominators) a new breakdown series inherits from its workflow's baseline.
    inherit_weight: float = 1000.0
    #: ... and for how long it is judged against that inherited baseline before learning its own.
    probation_s: float = 900.0
    #: An alert resolves after this long with none of its series elevated; a new alert for the same workflow
    #: and failure type within `group_window_s` of the last one joins its incident.
    quiet_s: float = 600.0
    group_window_s: float = 1800.0
    #: A bucket is closed (folded into baselines) this long after it ends (late events).
    lateness_s: float = 5.0
    #: Breakdown series per workflow (versions, segments, fallbacks) beyond which new keys are not tracked.
    max_breakdowns: int = 48
    #: Complaint clusters: a theme signals when its count in 15 minutes has P < cluster_alpha under its own
    #: baseline (Poisson) and under its baseline share of the workflow's complaints (binomial), with at least
    #: `cluster_min_count` complaints.
    cluster_alpha: float = 1e-7
    cluster_min_count: int = 8
    #: ... a theme's baseline is its own history over at most this long (memory: ≤ 960 buckets of 90 s per theme).
    cluster_horizon_s: float = 86400.0
    cusum_h: float = field(init=False)
    decay: float = field(init=False)

    def __post_init__(self) -> None:
        self.cusum_h = math.log(1.0 / self.cusum_alpha)
        self.decay = 0.5 ** (FINE_S / self.half_life_s)

    def ratios(self) -> FloatArray:
        return np.array([self.min_ratio_percentile if ind.percentile else self.min_ratio for ind in INDICATORS])


@functools.lru_cache(maxsize=16)
def _window_lengths_u32(windows: tuple[int, ...]) -> npt.NDArray[np.uint32]:
    """The test windows as unsigned bucket ages, shaped (1, windows, 1)."""
    return np.array(windows, dtype=np.uint32)[None, :, None]


def binom_sf(x: int, n: int, p: float) -> float:
    """P(X >= x) for X ~ Binomial(n, p), exactly: the first pmf term in log space, the rest by recurrence."""
    return _binom_sf_below(x, n, p, math.inf)


def _binom_sf_below(x: int, n: int, p: float, limit: float) -> float:
    """`binom_sf(x, n, p)` when it is below `limit`, else +inf (when the first pmf term alone reaches `limit`,
    the sum of positive terms cannot end below it, so the rest is not summed)."""
    if x <= 0:
        return 1.0 if limit > 1.0 else math.inf
    if x > n or p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0 if limit > 1.0 else math.inf
    odds = p / (1.0 - p)
    term = math.exp(math.lgamma(n + 1) - math.lgamma(x + 1) - math.lgamma(n - x + 1)
                    + x * math.log(p) + (n - x) * math.log1p(-p))
    if term >= limit and limit != math.inf:
        return math.inf
    if term == 0.0:
        # The first term underflows: so does every later one (each is the previous times a finite ratio), and
        # the sum would run its 5,000 terms to return 0.0.
        return 0.0
    total = term
    mode = (n + 1) * p
    stop = min(n, x + 5000)  # at most 5000 terms
    # The first terms one by one (most sums end here); k is the index of the term just added, minus one.
    first = min(stop, x + _SCALAR_TERMS)
    for k in range(x, first):
        term *= (n - k) / (k + 1) * odds
        total += term
        if term < total * 1e-12 and k + 1 > mode:
            return min(1.0, total)
    # A long tail in chunks, with the very same floating-point operations in the same order: the ratios
    # elementwise ((n - k) / (k + 1) correctly rounded, as Python's int division is, the integers being exact in
    # float64), then the running product and the running sum as accumulations, which are sequential.
    k0 = first
    while k0 < stop:
        k1 = min(stop, k0 + _CHUNK_TERMS)
        ks = np.arange(k0, k1, dtype=np.float64)
        seq = np.empty(k1 - k0 + 1)
        seq[0] = term
        np.multiply((n - ks) / (ks + 1.0), odds, out=seq[1:])
        terms = np.multiply.accumulate(seq)  # [term, the next terms...]
        sums = terms.copy()
        sums[0] = total
        totals = np.add.accumulate(sums)  # [total, total after each next term...]
        done = (terms[1:] < totals[1:] * 1e-12) & (ks + 1.0 > mode)
        if done.any():
            return min(1.0, float(totals[1 + int(np.argmax(done))]))
        term = float(terms[-1])
        total = float(totals[-1])
        k0 = k1
    return min(1.0, total)


def baseline_rate(s: Series, i: int) -> tuple[float, float]:
    """(rate, effective denominator) of the learned baseline, with a Jeffreys prior so zero stays positive."""
    den = float(s.bden[i])
    return (float(s.bnum[i]) + 0.5) / (den + 1.0), den


def inflate(p0: FloatArray, den: FloatArray) -> FloatArray:
    """The baseline rate raised by two standard errors of its own estimate."""
    return np.minimum(0.999, p0 + 2.0 * np.sqrt(p0 * (1.0 - p0) / np.maximum(den, 1.0)))


def inflate_one(p0: float, den: float) -> float:
    """`inflate` of one rate, in plain floats: the same IEEE operations (square root included, which is
    correctly rounded in both), with numpy's NaN for a negative variance and its NaN-propagating minimum."""
    var = p0 * (1.0 - p0) / (den if den >= 1.0 or den != den else 1.0)
    if not var >= 0.0:
        return math.nan
    r = p0 + 2.0 * math.sqrt(var)
    return r if r < 0.999 or r != r else 0.999


@dataclass
class Finding:
    """A series × indicator that crossed its test this evaluation."""

    series: str
    indicator: int
    pvalue: float
    method: str
    window_s: float
    x: int
    n: int
    baseline: float
    severity: str | None = None


def close_block(blk: Block, close_to: int, cfg: DetectConfig) -> None:
    """Fold closed fine buckets into every row's baseline (indicators not held) and step the CUSUMs."""
    if close_to <= blk.closed_to or blk.n == 0:
        blk.closed_to = max(blk.closed_to, close_to)
        return
    n = blk.n
    first = max(blk.closed_to + 1, close_to - FINE_N + 1)
    skipped = first - (blk.closed_to + 1)
    d = cfg.decay
    if skipped > 0:
        dd = np.where(blk.bnum[:n] >= cfg.memory_events, d**skipped, 1.0)
        blk.bnum[:n] *= dd
        blk.bden[:n] *= dd
    k = kernels.loaded()
    if k is not None:  # the same loop, compiled (see _kernels.c)
        k.close_block(blk.fine, blk.fine_ids, blk.bnum, blk.bden, blk.learn_b, blk.cusum, blk.hold, n, first, close_to,
                      d, cfg.memory_events, cfg.cusum_ratio, cfg.min_baseline)
        blk.closed_to = close_to
        return
    bnum, bden, learn_b, cusum = blk.bnum[:n], blk.bden[:n], blk.learn_b[:n], blk.cusum[:n]
    nothold = ~blk.hold[:n]
    for b in range(first, close_to + 1):
        slot = b % FINE_N
        ok = blk.fine_ids[:n, slot] == b
        # one gather (numerators, then denominators), zeroed where the slot holds another bucket, as float64
        xm = np.multiply(blk.fine[:n, slot, _NUM_DEN_A], ok[:, None], dtype=np.float64)
        x = xm[:, :NI]
        m = xm[:, NI:]
        keep = nothold & (learn_b <= b)[:, None]
        # Forget only what is already well known: a rate keeps at least `memory_events` bad events of memory,
        # so a rare indicator (wrong-entity actions at ~0) is judged against all its clean history.
        dd = np.where(bnum >= cfg.memory_events, d, 1.0)
        bnum *= dd  # in place: the same two roundings as `bnum * dd + new`
        bnum += np.where(keep, x, 0.0)
        bden *= dd
        bden += np.where(keep, m, 0.0)
        p0 = np.divide(bnum + 0.5, bden + 1.0)
        np.maximum(p0, 1e-6, out=p0)
        np.minimum(p0, 0.45, out=p0)
        p1 = p0 * cfg.cusum_ratio
        llr = x * np.log(p1 / p0) + (m - x) * np.log((1.0 - p1) / (1.0 - p0))
        # percentiles drift with load: only the windowed tests judge them
        cusum += np.where((bden >= cfg.min_baseline) & _CUSUM_JUDGED, llr, 0.0)
        np.maximum(0.0, cusum, out=cusum)
    blk.closed_to = close_to


def test_block(
    blk: Block, eval_b: int, cfg: DetectConfig, wf_m: IntArray, ratios: FloatArray
) -> list[tuple[int, Finding]]:
    """Test every active row of a block on its recent fine buckets. Updates `hold`.

    A tick at the library's density tests a few dozen rows, where numpy's per-call overhead is the cost: this
    is written for few calls (one comparison builds the window masks, one gather reads numerators and
    denominators), and the exact binomial sum of a screened cell stops as soon as it can no longer matter."""
    n = blk.n
    if n == 0:
        return []
    limit = max(cfg.loose_alpha, cfg.alpha / len(cfg.windows))
    k = kernels.loaded()
    if k is not None and limit < 1.0 and len(cfg.windows) <= kernels.MAX_WINDOWS:
        return _test_block_compiled(k, blk, eval_b, cfg, wf_m, ratios, limit)
    last_b = blk.last_b[:n]
    rows: IntArray | None = None
    if int(last_b.min()) <= eval_b - FINE_N:  # some rows idle for the whole ring: test only the others
        rows = np.flatnonzero(last_b > eval_b - FINE_N)
        if rows.size == 0:
            return []
        if rows.size == n:
            rows = None
    # A block's rows are usually all active: plain slices then (views, no gathers).
    sel: slice | IntArray = slice(0, n) if rows is None else rows
    m = n if rows is None else rows.size
    # Window sums as one batched product: (rows, windows, slots) masks × (rows, slots, counters), in float64
    # (BLAS; the counts are integers far below 2**53, so the sums are exact). A bucket is in a window when its
    # age is in [0, length): as unsigned 32-bit integers, negative ages (future buckets) are huge, so one
    # comparison does both bounds. Done in chunks of rows so that the float64 copies stay small (memory: a
    # 4096-row block would need ~30 MB).
    lengths = _window_lengths_u32(cfg.windows)
    win = np.empty((m, len(cfg.windows), NC))
    for c0 in range(0, m, _CHUNK):
        part: slice | IntArray = slice(c0, min(c0 + _CHUNK, n)) if rows is None else rows[c0:c0 + _CHUNK]
        age = (eval_b - blk.fine_ids[part]).view(np.uint32)  # int32 - int -> int32, as before
        masks = np.less(age[:, None, :], lengths, out=np.empty((age.shape[0], len(cfg.windows), FINE_N)))
        np.matmul(masks, blk.fine[part].astype(np.float64), out=win[c0:c0 + _CHUNK])
    XN = win[:, :, _NUM_DEN_A]  # one gather: numerators, then denominators
    X = XN[:, :, :NI]
    N = XN[:, :, NI:]
    bnum = blk.bnum[sel]
    bden = blk.bden[sel]
    p0 = (bnum + 0.5) / (bden + 1.0)
    p0u = inflate(p0, bden)
    # Candidates: at least `min_count` bad events, a rate at least ratio × the (inflated) baseline, n > 0.
    floor = (ratios * p0u)[:, None, :] * N
    np.maximum(floor, float(cfg.min_count), out=floor)
    cand = floor <= X
    cand &= N > 0
    firing = blk.firing[sel]
    # A firing series × indicator holds and cannot fire again (nor report a p-value) whatever its test says:
    # its cells need no exact sum.
    cand &= ~firing[:, None, :]
    cr, cw, ci = cand.nonzero()
    # A p-value at or above `limit` changes nothing that is read: `hold` compares it with loose_alpha, firing
    # with the strict level (at most alpha / windows), and the p-value and window reported are those of the
    # smallest one, which is then below both. So each exact sum may stop once it reaches `limit`, and a block
    # with no screened cell needs no p-values at all. (A limit of 1 or more, an absurd configuration, disables
    # both shortcuts.)
    if limit >= 1.0:
        limit = math.inf
    # The smallest p-value of each screened cell and its window (`_smallest_pvalues`).
    held: dict[tuple[int, int], tuple[float, int]] = {}
    if cr.size:
        # Chernoff screen: P(X >= x) <= exp(-n KL(x/n || p)); only near-significant cells get the exact sum.
        # Computed on the candidate cells only (the same elementwise arithmetic as on the whole array).
        xc = X[cr, cw, ci]
        nc = N[cr, cw, ci]
        pc = p0u[cr, ci]
        # (Written with fewer calls than the whole-array form it replaced, value for value the same: with
        # min_count >= 1 every candidate has q > 0, so its q log(q/p) term needs no guard; -(n kl) < c is
        # n kl > -c, negation being exact; when every q is below 1, the guards of the (1-q) term select
        # every element.)
        q = xc / np.maximum(nc, 1.0)
        if cfg.min_count >= 1:
            kl = q * np.log(q / pc)
        else:
            kl = np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0) / pc), 0.0)
        below1 = q < 1
        omq = 1 - q
        if np.count_nonzero(below1) == below1.size:
            kl += omq * np.log(omq / (1 - pc))
        else:
            kl += np.where(below1, omq * np.log(np.where(below1, omq, 1.0) / (1 - pc)), 0.0)
        keep = nc * kl > -(math.log(cfg.loose_alpha) + 3.0)
        cells: Iterable[tuple[int, int, int, float, float, float]]
        if cr.size > 64:  # many candidates (a large block): only the screened cells become Python lists
            kept = np.flatnonzero(keep)
            cells = zip(cr[kept].tolist(), cw[kept].tolist(), ci[kept].tolist(), xc[kept].tolist(),
                        nc[kept].tolist(), pc[kept].tolist(), strict=True)
        else:  # a few: filtering the lists is cheaper than six more gathers
            cells = ((r, wi, i, x, nn, p) for r, wi, i, x, nn, p, k in zip(
                cr.tolist(), cw.tolist(), ci.tolist(), xc.tolist(), nc.tolist(), pc.tolist(), keep.tolist(),
                strict=True) if k)
        if np.count_nonzero(keep):
            held = _smallest_pvalues(cells, limit)
    cusum = blk.cusum[sel]
    if limit == math.inf:  # an absurd configuration (a level of 1 or more): every cell's p-value is read
        return _judge_arrays(blk, rows, sel, eval_b, cfg, wf_m, held, firing, bden, cusum, X, N, p0)
    # What is read of the p-values: `hold` (below loose_alpha), and firing (below the strict level, on cells that
    # may fire) — a cell without one has 1, which is neither. The rare cells past either, in Python.
    blk.hold[sel] = firing
    hold_cells = [ri for ri, (pv, _w) in held.items() if pv < cfg.loose_alpha]
    if hold_cells:
        hr, hi = zip(*hold_cells, strict=True)
        blk.hold[list(hr) if rows is None else rows[list(hr)], list(hi)] = True
    cur, cui = (cusum > cfg.cusum_h).nonzero()
    return _verdicts(blk, rows, eval_b, cfg, wf_m, held, list(zip(cur.tolist(), cui.tolist(), strict=True)), firing,
                     bden, X, N, p0)


def _smallest_pvalues(
    cells: Iterable[tuple[int, int, int, float, float, float]], limit: float,
    sf: Callable[[int, int, float, float], float] | None = None,
) -> dict[tuple[int, int], tuple[float, int]]:
    """The smallest exact p-value of each screened cell (row, window, indicator, x, n, p) and its window, by
    (row, indicator), in the order the cells come (for one series × indicator the windows in order, so a tie keeps
    the first window; a p-value enters only below the one before it, starting from 1). Sums stop at `limit`;
    `sf` is `_binom_sf_below` or its compiled twin."""
    held: dict[tuple[int, int], tuple[float, int]] = {}
    sf = sf or _binom_sf_below
    for r, wi, i, x, nn, p in cells:
        pv = sf(int(x), int(nn), p, limit)
        prev = held.get((r, i))
        if pv < (1.0 if prev is None else prev[0]):
            held[r, i] = (pv, wi)
    return held


def _verdicts(
    blk: Block, rows: IntArray | None, eval_b: int, cfg: DetectConfig, wf_m: IntArray,
    held: dict[tuple[int, int], tuple[float, int]], cusum_cells: list[tuple[int, int]], firing: BoolArray,
    bden: FloatArray, X: FloatArray, N: FloatArray, p0: FloatArray,
) -> list[tuple[int, Finding]]:
    """The findings of a tested block: cells whose smallest p-value (`held`) is below the strict level, then cells
    whose CUSUM crossed (`cusum_cells`), that may fire. `r` indexes the tested arrays (`firing`, `bden`, `X`, `N`,
    `p0`); block row `rows[r]`, or `r` itself when `rows` is None."""
    if not held and not cusum_cells:
        return []
    wf = blk.wf
    testable_b = blk.testable_b
    alpha_w = len(cfg.windows)

    def may_fire(r: int, i: int) -> bool:  # `ok` of the array form, for one cell
        row_no = r if rows is None else int(rows[r])
        return bool(bden[r, i] >= cfg.min_baseline) and not firing[r, i] and eval_b >= testable_b[row_no]

    fired: dict[tuple[int, int], bool] = {}  # cell -> by the binomial test (else by the CUSUM)
    for (r, i), (pv, _w) in held.items():
        row_no = r if rows is None else int(rows[r])
        if pv < cfg.alpha / (alpha_w * max(int(wf_m[wf[row_no]]), 1)) and may_fire(r, i):
            fired[r, i] = True
    for r, i in cusum_cells:
        if (r, i) not in fired and may_fire(r, i):
            fired[r, i] = False
    out: list[tuple[int, Finding]] = []
    for (r, i), binomial in sorted(fired.items()):
        f = _finding(blk, r if rows is None else int(rows[r]), r, i, cfg, X, N, p0, held[r, i] if binomial else None)
        if f is not None:
            out.append(f)
    return out


def _test_block_compiled(
    k: kernels.Kernels, blk: Block, eval_b: int, cfg: DetectConfig, wf_m: IntArray, ratios: FloatArray, limit: float
) -> list[tuple[int, Finding]]:
    """`test_block` with the screening in compiled code (`_kernels.screen`): window sums, baselines, `hold` reset to
    `firing`, candidates past the Chernoff screen and CUSUM crossings in one call; the exact sums and verdicts as
    in `test_block`. Arrays are indexed by block row (idle rows are skipped, not compacted)."""
    n = blk.n
    nw = len(cfg.windows)
    X = np.empty((n, nw, NI))
    N = np.empty((n, nw, NI))
    p0 = np.empty((n, NI))
    cells, cusum_cells = k.screen(
        blk.fine, blk.fine_ids, blk.bnum, blk.bden, blk.firing, blk.hold, blk.cusum, blk.last_b, n, eval_b,
        cfg.windows, ratios, float(cfg.min_count), -(math.log(cfg.loose_alpha) + 3.0), cfg.cusum_h, X, N, p0)
    held = _smallest_pvalues(cells, limit, k.binom_sf_below)
    for (r, i), (pv, _w) in held.items():
        if pv < cfg.loose_alpha:
            blk.hold[r, i] = True
    return _verdicts(blk, None, eval_b, cfg, wf_m, held, cusum_cells, blk.firing, blk.bden, X, N, p0)


def _finding(
    blk: Block, row_no: int, r: int, i: int, cfg: DetectConfig, X: FloatArray, N: FloatArray, p0: FloatArray,
    binomial: tuple[float, int] | None,
) -> tuple[int, Finding] | None:
    """(workflow index, finding) of block row `row_no` (row `r` of the tested arrays), indicator `i`: fired by the
    binomial test with (p-value, window index) `binomial`, else by the CUSUM. None for a row without a series."""
    s = blk.series[row_no]
    if s is None:
        return None
    if binomial is not None:
        pv, wi = binomial
        w = cfg.windows[wi]
        return int(blk.wf[row_no]), Finding(
            s.key, i, pv, f"binomial test over {int(w * FINE_S)}s", w * FINE_S,
            int(X[r, wi, i]), int(N[r, wi, i]), float(p0[r, i]))
    return int(blk.wf[row_no]), Finding(
        s.key, i, math.exp(-float(blk.cusum[row_no, i])), "binomial CUSUM", FINE_N * FINE_S,
        int(X[r, -1, i]), int(N[r, -1, i]), float(p0[r, i]))


def _judge_arrays(
    blk: Block, rows: IntArray | None, sel: slice | IntArray, eval_b: int, cfg: DetectConfig, wf_m: IntArray,
    held: dict[tuple[int, int], tuple[float, int]], firing: BoolArray, bden: FloatArray, cusum: FloatArray,
    X: FloatArray, N: FloatArray, p0: FloatArray,
) -> list[tuple[int, Finding]]:
    """`test_block`'s verdicts with every cell's p-value as an array (1 where none was computed): for levels of
    1 or more, where a p-value of 1 may hold or fire."""
    m = firing.shape[0]
    best = np.ones((m, NI))
    where = np.zeros((m, NI), dtype=np.int64)
    for (r, i), (pv, wi) in held.items():
        best[r, i] = pv
        where[r, i] = wi
    blk.hold[sel] = (best < cfg.loose_alpha) | firing
    ok = (bden >= cfg.min_baseline) & ~firing & (eval_b >= blk.testable_b[sel])[:, None]
    strict = cfg.alpha / (len(cfg.windows) * np.maximum(wf_m[blk.wf[sel]], 1))
    fire = ok & (best < strict[:, None])
    cus = ok & ~fire & (cusum > cfg.cusum_h)
    out: list[tuple[int, Finding]] = []
    for r, i in zip(*np.nonzero(fire | cus), strict=True):
        binomial = (float(best[r, i]), int(where[r, i])) if fire[r, i] else None
        f = _finding(blk, int(r) if rows is None else int(rows[r]), int(r), int(i), cfg, X, N, p0, binomial)
        if f is not None:
            out.append(f)
    return out


def still_elevated(s: Series, i: int, rec: IntArray, cfg: DetectConfig) -> bool:
    """Whether an alerting series × indicator still shows a rate above its baseline (loose test, 2-10 min)."""
    ind = INDICATORS[i]
    p0, den_eff = baseline_rate(s, i)
    p0u = inflate_one(p0, den_eff)
    ratio = cfg.min_ratio_percentile if ind.percentile else cfg.min_ratio
    cums = np.add.accumulate(rec, axis=0)
    limit = cfg.loose_alpha if cfg.loose_alpha < 1.0 else math.inf
    for w in cfg.windows[1:] or cfg.windows:
        row = cums[w - 1]
        x, n = int(row[ind.num]), int(row[ind.den])
        if n > 0 and x >= cfg.min_count and x >= ratio * p0u * n and _binom_sf_below(x, n, p0u, limit) < cfg.loose_alpha:
            return True
    return False


def onset_search(rows: IntArray, bucket_s: float, end_t: float, i: int, p0: float, p1: float) -> tuple[float, int]:
    """Change-point search backwards: the start of the run of buckets (newest first in `rows`) that maximises
    the cumulative log-likelihood ratio of rate p1 against p0. Returns (onset time, buckets back)."""
    ind = INDICATORS[i]
    p0 = min(max(p0, 1e-6), 0.99)
    p1 = min(max(p1, p0 * 1.01), 0.999)
    a, c = math.log(p1 / p0), math.log((1 - p1) / (1 - p0))
    x = rows[:, ind.num].astype(np.float64)
    n = rows[:, ind.den].astype(np.float64)
    llr = np.cumsum(x * a + (n - x) * c)
    k = int(np.argmax(llr))
    return end_t - (k + 1) * bucket_s, k
