"""Differential tests for the tick's hot path: the current `test_block`, `close_block` and the p-value helpers
against the implementations they replaced (kept here verbatim as the reference), on random block states that
reach every branch (idle rows, stale and future buckets, candidates, screened cells, CUSUMs, firing rows).
Results must be identical: every finding's fields, and every array the functions update, bit for bit."""

from __future__ import annotations

import copy
import math
import random
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pytest

from codeblue.signals import detect, kernels
from codeblue.signals.clusters import ClusterSignal, ComplaintClusterer, _Cluster, _poisson_sf_below, poisson_sf
from codeblue.signals.detect import DetectConfig, Finding, baseline_rate, binom_sf, close_block, inflate, still_elevated
from codeblue.signals.indicators import DEN_IDX, INDICATORS, NC, NI, NUM_IDX
from codeblue.signals.windows import FINE_N, FINE_S, Block, FloatArray, IntArray, Series, SeriesStore

_CUSUM_JUDGED = np.array([not ind.percentile for ind in INDICATORS])


@pytest.fixture(autouse=True)
def _numpy_path() -> Iterable[None]:
    """These are the numpy implementations' tests (the compiled kernels are compared with them in
    test_kernels.py)."""
    with kernels.using(False):
        yield

_NUM_DEN = NUM_IDX + DEN_IDX
_CHUNK = 512

# ----------------------------------------------------------------------------- the reference (commit ce9f273)


def old_binom_sf(x: int, n: int, p: float) -> float:
    """P(X >= x) for X ~ Binomial(n, p), exactly: the first pmf term in log space, the rest by recurrence."""
    if x <= 0:
        return 1.0
    if x > n or p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    odds = p / (1.0 - p)
    term = math.exp(math.lgamma(n + 1) - math.lgamma(x + 1) - math.lgamma(n - x + 1)
                    + x * math.log(p) + (n - x) * math.log1p(-p))
    total = term
    k = x
    stop = min(n, x + 5000)  # at most 5000 terms
    mode = (n + 1) * p
    while k < stop:
        term *= (n - k) / (k + 1) * odds
        total += term
        k += 1
        if term < total * 1e-12 and k > mode:
            break
    return min(1.0, total)



def old_close_block(blk: Block, close_to: int, cfg: DetectConfig) -> None:
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
    bnum, bden, hold, learn_b = blk.bnum[:n], blk.bden[:n], blk.hold[:n], blk.learn_b[:n]
    for b in range(first, close_to + 1):
        slot = b % FINE_N
        ok = blk.fine_ids[:n, slot] == b
        xm = blk.fine[:n, slot][:, _NUM_DEN].astype(np.float64)  # one gather: numerators, then denominators
        xm *= ok[:, None]
        x = xm[:, :NI]
        m = xm[:, NI:]
        keep = ~hold & (learn_b <= b)[:, None]
        # Forget only what is already well known: a rate keeps at least `memory_events` bad events of memory,
        # so a rare indicator (wrong-entity actions at ~0) is judged against all its clean history.
        dd = np.where(bnum >= cfg.memory_events, d, 1.0)
        bnum[:] = bnum * dd + np.where(keep, x, 0.0)
        bden[:] = bden * dd + np.where(keep, m, 0.0)
        p0 = np.minimum(np.maximum((bnum + 0.5) / (bden + 1.0), 1e-6), 0.45)
        p1 = p0 * cfg.cusum_ratio
        llr = x * np.log(p1 / p0) + (m - x) * np.log((1.0 - p1) / (1.0 - p0))
        # percentiles drift with load: only the windowed tests judge them
        blk.cusum[:n] = np.maximum(0.0, blk.cusum[:n] + np.where((bden >= cfg.min_baseline) & _CUSUM_JUDGED, llr, 0.0))
    blk.closed_to = close_to


def old_test_block(
    blk: Block, eval_b: int, cfg: DetectConfig, wf_m: IntArray, ratios: FloatArray
) -> list[tuple[int, Finding]]:
    """Test every active row of a block on its recent fine buckets. Updates `hold`."""
    n = blk.n
    if n == 0:
        return []
    active = blk.last_b[:n] > eval_b - FINE_N
    rows = np.flatnonzero(active)
    if rows.size == 0:
        return []
    # A block's rows are usually all active: plain slices then (views, no gathers).
    sel: slice | IntArray = slice(0, n) if rows.size == n else rows
    # Window sums as one batched product: (rows, windows, slots) masks × (rows, slots, counters), in float64
    # (BLAS; the counts are integers far below 2**53, so the sums are exact).
    # Done in chunks of rows so that the float64 copies stay small (memory: a 4096-row block would need ~30 MB).
    lengths = np.array(cfg.windows, dtype=np.int64)[None, :, None]
    win = np.empty((rows.size, len(cfg.windows), NC))
    for c0 in range(0, rows.size, _CHUNK):
        part: slice | IntArray = slice(c0, min(c0 + _CHUNK, n)) if rows.size == n else rows[c0:c0 + _CHUNK]
        age = eval_b - blk.fine_ids[part]
        masks = ((age[:, None, :] < lengths) & (age >= 0)[:, None, :]).astype(np.float64)
        np.matmul(masks, blk.fine[part].astype(np.float64), out=win[c0:c0 + _CHUNK])
    X = win[:, :, NUM_IDX]
    N = win[:, :, DEN_IDX]
    bnum = blk.bnum[sel]
    bden = blk.bden[sel]
    p0 = (bnum + 0.5) / (bden + 1.0)
    p0u = inflate(p0, bden)
    P = p0u[:, None, :]
    cand = (cfg.min_count <= X) & (ratios[None, None, :] * P * N <= X) & (N > 0)
    best = np.ones((rows.size, NI))
    where = np.zeros((rows.size, NI), dtype=np.int64)
    cr, cw, ci = np.nonzero(cand)
    if cr.size:
        # Chernoff screen: P(X >= x) <= exp(-n KL(x/n || p)); only near-significant cells get the exact sum.
        # Computed on the candidate cells only (the same elementwise arithmetic as on the whole array).
        xc = X[cr, cw, ci]
        nc = N[cr, cw, ci]
        pc = p0u[cr, ci]
        q = xc / np.maximum(nc, 1.0)
        kl = np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0) / pc), 0.0) + np.where(
            q < 1, (1 - q) * np.log(np.where(q < 1, 1 - q, 1.0) / (1 - pc)), 0.0)
        keep = (-nc * kl) < math.log(cfg.loose_alpha) + 3.0
        for r, wi, i, x, m, p in zip(cr[keep].tolist(), cw[keep].tolist(), ci[keep].tolist(), xc[keep].tolist(),
                                     nc[keep].tolist(), pc[keep].tolist(), strict=True):
            pv = old_binom_sf(int(x), int(m), p)
            if pv < best[r, i]:
                best[r, i] = pv
                where[r, i] = wi
    firing = blk.firing[sel]
    blk.hold[sel] = (best < cfg.loose_alpha) | firing
    ok = (bden >= cfg.min_baseline) & ~firing & (eval_b >= blk.testable_b[sel])[:, None]
    if not ok.any():
        return []
    strict = cfg.alpha / (len(cfg.windows) * np.maximum(wf_m[blk.wf[sel]], 1))
    fire = ok & (best < strict[:, None])
    cus = ok & ~fire & (blk.cusum[sel] > cfg.cusum_h)
    out: list[tuple[int, Finding]] = []
    for r, i in zip(*np.nonzero(fire | cus), strict=True):
        s = blk.series[rows[r]]
        if s is None:
            continue
        ind = INDICATORS[i]
        if fire[r, i]:
            wi = int(where[r, i])
            w = cfg.windows[wi]
            out.append((int(blk.wf[rows[r]]), Finding(
                s.key, int(i), float(best[r, i]), f"binomial test over {int(w * FINE_S)}s", w * FINE_S,
                int(X[r, wi, i]), int(N[r, wi, i]), float(p0[r, i]))))
        else:
            row = win[r, -1]
            out.append((int(blk.wf[rows[r]]), Finding(
                s.key, int(i), math.exp(-float(blk.cusum[rows[r], i])), "binomial CUSUM", FINE_N * FINE_S,
                int(row[ind.num]), int(row[ind.den]), float(p0[r, i]))))
    return out



# ----------------------------------------------------------------------------- random states


def _random_block(rng: np.random.Generator, cfg: DetectConfig, eval_b: int) -> tuple[Block, IntArray]:
    """A block of random series: traffic with random bad rates (some far above baseline), random ring ids
    (current, stale, empty, a few in the future), baselines from none to well learned, random CUSUMs."""
    store = SeriesStore()
    n = int(rng.integers(1, 64))
    wf_m = np.zeros(64, dtype=np.int64)
    for r in range(n):
        wf = int(rng.integers(0, 8))
        store.new("*" if r % 4 == 0 else f"v:prompt/p=v{r}", wf, eval_b, int(eval_b + rng.integers(-200, 20)),
                  eval_b - 2)
        wf_m[wf] += 1
    blk = store.blocks[0]
    if rng.random() < 0.3:  # a released row (series None)
        store.release(blk.series[int(rng.integers(0, n))])  # type: ignore[arg-type]
    traffic = rng.integers(0, 40, size=(n, 1, 1))
    rates = rng.choice([0.0, 0.002, 0.01, 0.05, 0.2, 0.6], size=(n, 1, NC))
    den = rng.poisson(traffic, size=(n, FINE_N, NC))
    num = rng.binomial(den, rates)
    fine = np.where(np.isin(np.arange(NC), detect.NUM_IDX)[None, None, :], num, den)
    if rng.random() < 0.5:  # complaints without responses, numerators above denominators
        fine[:, :, 10] += rng.poisson(1.0, size=(n, FINE_N))
    blk.fine[:n] = fine.astype(np.int32)
    slots = np.arange(FINE_N)
    ids = eval_b - ((eval_b - slots) % FINE_N)  # the last 60 buckets
    ids = np.broadcast_to(ids, (n, FINE_N)).copy()
    kind = rng.random((n, FINE_N))
    ids[kind < 0.05] = -1
    ids[(kind >= 0.05) & (kind < 0.1)] -= FINE_N * rng.integers(1, 3)
    ids[(kind >= 0.1) & (kind < 0.12)] += FINE_N  # future buckets (late clocks)
    blk.fine_ids[:n] = ids.astype(np.int32)
    blk.last_b[:n] = eval_b - rng.choice([0, 0, 0, 1, 5, 59, 60, 61, 300], size=n)
    learned = rng.choice([0.0, 50.0, 150.0, 5000.0, 1e5], size=(n, 1))
    blk.bden[:n] = learned * rng.uniform(0.5, 1.5, size=(n, NI))
    blk.bnum[:n] = blk.bden[:n] * rng.choice([0.0, 0.001, 0.01, 0.05, 0.3], size=(n, NI))
    blk.bnum[:n][rng.random((n, NI)) < 0.1] = 0.0
    blk.cusum[:n] = np.where(rng.random((n, NI)) < 0.1, rng.uniform(0, 2 * cfg.cusum_h, size=(n, NI)), 0.0)
    blk.firing[:n] = rng.random((n, NI)) < 0.05
    blk.hold[:n] = rng.random((n, NI)) < 0.1
    blk.learn_b[:n] = eval_b + rng.integers(-10, 10, size=n)
    return blk, wf_m


def _configs() -> list[DetectConfig]:
    return [DetectConfig(), DetectConfig(windows=(1, 6, 30)), DetectConfig(alpha=1e-3, loose_alpha=1e-2),
            DetectConfig(min_count=1, min_ratio=1.0), DetectConfig(min_count=0, min_ratio=0.5),
            DetectConfig(cusum_ratio=1.7, memory_events=5.0),
            DetectConfig(loose_alpha=2.0)]  # an absurd loose level: every shortcut off


def _finding_tuple(x: tuple[int, Finding]) -> tuple[object, ...]:
    wf, f = x
    return (wf, f.series, f.indicator, f.pvalue, f.method, f.window_s, f.x, f.n, f.baseline, f.severity)


def _same(a: Block, b: Block) -> None:
    for name in ("bnum", "bden", "cusum", "hold", "firing", "fine", "fine_ids", "last_b"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name
        if x.dtype.kind == "f":  # the same bits: -0.0 and 0.0 differ here
            assert x.tobytes() == y.tobytes(), name
    assert a.closed_to == b.closed_to


def random_ticks(rng: np.random.Generator) -> Iterator[tuple[DetectConfig, Block, IntArray, int, int]]:
    """20 random block states per config of `_configs()`, each with the tick to run on it: (config, block, the
    workflows' series counts, close_to, eval_b); the block's closed_to is one to 80 buckets before close_to."""
    for cfg in _configs():
        for _ in range(20):
            eval_b = int(rng.integers(10_000, 200_000_000))
            blk, wf_m = _random_block(rng, cfg, eval_b)
            close_to = eval_b - 1 - int(rng.choice([0, 0, 0, 1, 3, 70]))
            blk.closed_to = close_to - int(rng.choice([1, 1, 1, 2, 5, 80]))
            yield cfg, blk, wf_m, close_to, eval_b


@pytest.mark.parametrize("seed", range(4))
def test_test_block_and_close_block_match_the_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    fired = screened = 0
    for cfg, blk, wf_m, close_to, eval_b in random_ticks(rng):
        ref = copy.deepcopy(blk)
        close_block(blk, close_to, cfg)
        old_close_block(ref, close_to, cfg)
        _same(blk, ref)
        with np.errstate(invalid="ignore"):  # random baselines may put a rate above 1: NaN, on both sides
            new = [_finding_tuple(x) for x in detect.test_block(blk, eval_b, cfg, wf_m, cfg.ratios())]
            old = [_finding_tuple(x) for x in old_test_block(ref, eval_b, cfg, wf_m, cfg.ratios())]
        assert new == old
        _same(blk, ref)
        fired += len(new)
        screened += int(ref.hold[: ref.n].sum())
    # the states reach the interesting branches
    assert fired > 50 and screened > 50


def test_binom_sf_long_tails_match_the_reference() -> None:
    # sums of hundreds to thousands of terms (x just above the mean of a large n): the chunked path
    rng = random.Random(11)
    long = 0
    for _ in range(600):
        n = rng.choice([300, 2_000, 20_000, 200_000, 3_000_000])
        p = rng.choice([1e-4, 0.003, 0.02, 0.1, 0.3, rng.random() * 0.5])
        mean = n * p
        x = max(1, int(mean + rng.uniform(-3, 8) * math.sqrt(mean * (1 - p) + 1)))
        want = old_binom_sf(x, n, p)
        assert binom_sf(x, n, p) == want, (x, n, p)
        long += mean > 2_000
    assert long > 50


def test_binom_sf_and_its_early_stop_match_the_reference() -> None:
    rng = random.Random(7)
    for _ in range(8_000):
        n = rng.choice([0, 1, 3, 10, 60, 500, 4000, 20_000])
        x = rng.randint(-1, n + 1)
        p = rng.choice([0.0, 1e-7, 1e-4, 0.003, 0.02, 0.1, 0.45, 0.9, 0.999, 1.0, rng.random()])
        want = old_binom_sf(x, n, p)
        assert binom_sf(x, n, p) == want
        limit = rng.choice([1e-7, 1e-5, 1e-3, 0.02, 0.5, math.inf])
        got = detect._binom_sf_below(x, n, p, limit)
        if want < limit:
            assert got == want
        else:
            assert got == math.inf or got == want >= limit


def test_poisson_early_stop_is_exact_below_its_limit() -> None:
    rng = random.Random(5)
    for _ in range(5_000):
        lam = rng.choice([1e-3, 0.2, 1.0, 4.0, 30.0, 300.0]) * rng.random()
        k = rng.randint(0, 3 * int(lam) + 12)
        limit = rng.choice([1e-7, 1e-3, 0.3])
        want = poisson_sf(k, lam)
        got = _poisson_sf_below(k, lam, limit)
        assert got == want if want < limit else got in (want, math.inf)


def test_poisson_sf_is_a_probability_in_the_tail() -> None:
    # the clusterer's Poisson tail: a sanity anchor for the cluster path the tick runs
    assert poisson_sf(0, 1.0) == 1.0
    assert math.isclose(poisson_sf(1, 1.0), 1 - math.exp(-1.0), rel_tol=1e-12)
    assert 0.0 < poisson_sf(40, 3.0) < 1e-20



# ----------------------------------------------------------------------------- complaint clusters


class _ReferenceClusterer(ComplaintClusterer):
    """The clusterer as it was (commit ce9f273): TF-IDF weights recomputed term by term, every cluster's window
    counted on every test."""

    def _weighted(self, counts: Counter[str], idf: dict[str, float] | None = None) -> tuple[dict[str, float], float]:
        vec = {t: c * self._idf(t) for t, c in counts.items()}
        norm = math.sqrt(sum(v * v for v in vec.values()))
        return vec, norm

    def _nearest(self, wf: Any, counts: Counter[str], emb: list[float] | None) -> tuple[_Cluster | None, float]:
        """As it was (commit 6412202), lexical branch: every candidate's whole TF-IDF vector built as a dict."""
        assert emb is None
        best: _Cluster | None = None
        best_sim = -1.0
        vec, norm = self._weighted(counts)
        if norm == 0:
            return None, 0.0
        candidates: set[str] = set()
        for t in counts:
            candidates |= wf.index.get(t, set())
        for cid in candidates:
            c = wf.clusters[cid]
            cvec, cnorm = self._weighted(c.counts)
            if cnorm == 0:
                continue
            sim = sum(v * cvec.get(t, 0.0) for t, v in vec.items()) / (norm * cnorm)
            if sim > best_sim:
                best, best_sim = c, sim
        return best, best_sim

    def signals(self, now: float, workflows: Iterable[str] | None = None) -> list[ClusterSignal]:
        """Clusters whose count in the last `window` seconds is well above their own baseline, strongest first.
        Without `workflows` (all of them), also drops clusters and counts older than `horizon`."""
        if workflows is None:
            self._prune(now)
            names: Iterable[str] = list(self._wf)
        else:
            names = [w for w in workflows if w in self._wf]
        recent_from = int((now - self.window) // self.bucket_s) + 1
        now_bucket = int(now // self.bucket_s)
        out: list[ClusterSignal] = []
        for name in names:
            wf = self._wf[name]
            observed = max(0.0, min(self.horizon, now - self.window - wf.first_seen))
            counted: list[tuple[_Cluster, int, int, int]] = []
            tot_recent, tot_before = self._split(wf.generic, wf.generic_n, wf.generic_last, recent_from, now_bucket)
            for c in wf.clusters.values():
                recent, before = self._split(c.buckets, c.n, int(c.last_seen // self.bucket_s), recent_from,
                                             now_bucket)
                first_b = next((b for b in range(recent_from, now_bucket + 1) if c.buckets.get(b)), now_bucket + 1)
                tot_recent += recent
                tot_before += before
                if recent >= self.min_count:
                    counted.append((c, recent, before, first_b))
            for c, recent, before, first_b in counted:
                expected = self.window * (before + 1.0) / (observed + self.prior_s)
                if recent < self.min_ratio * expected:
                    continue  # (the cheap test first: the p-value only matters past it)
                p = poisson_sf(recent, expected)
                if p >= self.p_threshold:
                    continue
                share = base_share = None
                if self.relative:
                    base_share = (before + 0.5) / (tot_before + 1.0)
                    share = recent / tot_recent
                    p_share = binom_sf(recent, tot_recent, base_share)
                    if share < self.min_ratio * base_share or p_share >= self.p_threshold:
                        continue
                    p = max(p, p_share)
                terms, reps = self._shown_of(c)
                out.append(ClusterSignal(
                    workflow=name, cluster_id=c.id, count_recent=recent, baseline_rate=expected, p_value=p,
                    score=recent / expected, representatives=reps, first_seen=c.first_seen,
                    last_seen=c.last_seen, window_s=self.window, terms=terms,
                    total=c.n, burst_start=first_b * self.bucket_s, share=share,
                    baseline_share=base_share,
                ))
        out.sort(key=lambda s: (s.p_value, -s.count_recent))
        return out



_THEMES = [
    "refund sent to the wrong account", "it promised a refund for a non-refundable subscription",
    "the citation links to an outdated policy page", "repayment plan advice contradicts the loan terms",
    "it booked the appointment for someone else", "tool call failed with invalid date format",
    "card number shown in the chat transcript", "cannot change my delivery address",
]
_WORDS = ["refund", "account", "policy", "loan", "card", "address", "delivery", "subscription", "invoice",
          "payment", "order", "booking", "date", "plan", "limit", "fee", "balance", "transfer"]


@pytest.mark.parametrize("seed", range(3))
def test_clusterer_matches_the_reference(seed: int) -> None:
    rng = random.Random(seed)
    kw: dict[str, Any] = {"relative": seed != 1, "p_threshold": 1e-7 if seed == 0 else 1e-3,
                          "min_count": 8 if seed == 0 else 5, "horizon": 86400.0}
    new = ComplaintClusterer(**kw)
    ref = _ReferenceClusterer(**kw)
    t = 1_700_000_000.0
    signalled = 0
    for step in range(2500):
        burst = (step // 400) % 3 == 1
        t += rng.expovariate(1 / (4.0 if burst else 20.0))
        wf = rng.choice(["refund-desk", "finance-qa", "support-desk"])
        burst = burst and wf == "refund-desk"
        r = rng.random()
        if burst and r < 0.7:
            text = _THEMES[seed % len(_THEMES)] + rng.choice(["", "!", " again", " today"])
        elif r < 0.2:
            text = rng.choice(["meh", "useless bot", "this is terrible", "not helpful at all"])
        elif r < 0.6:
            text = rng.choice(_THEMES) + " " + rng.choice(_WORDS)
        else:
            text = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 6)))
        tt = t - rng.random() * 30  # slightly out of order, as replay sorts only within a tick
        assert new.add(wf, text, tt) == ref.add(wf, text, tt)
        if step % 7 == 0:
            workflows = None if step % 70 == 0 else [wf, "nobody"]
            a = [s.as_dict() for s in new.signals(t, workflows)]
            b = [s.as_dict() for s in ref.signals(t, workflows)]
            assert a == b
            signalled += len(a)
    assert [c.__dict__ for c in new.clusters("refund-desk")] == [c.__dict__ for c in ref.clusters("refund-desk")]
    assert signalled > 0


_ = (FINE_S, FloatArray, Finding)


def test_inflate_one_matches_inflate() -> None:
    rng = np.random.default_rng(3)
    p0 = np.concatenate([rng.random(20_000), rng.random(2_000) * 3 - 1, [0.0, 1.0, 0.5, math.nan, 0.999, 0.9985]])
    den = np.concatenate([rng.choice([0.0, 0.3, 1.0, 7.0, 1e3, 1e7, math.nan], size=p0.size - 6) *
                          rng.random(p0.size - 6), [0.0, 1.0, 1e9, 5.0, -1.0, 0.0]])
    with np.errstate(invalid="ignore"):
        want = inflate(p0, den)
    got = np.array([detect.inflate_one(a, b) for a, b in zip(p0.tolist(), den.tolist(), strict=True)])
    # the same bits, except that a NaN may differ in its sign (only ever compared, which is false either way)
    assert np.array_equal(np.isnan(want), np.isnan(got))
    ok = ~np.isnan(want)
    assert want[ok].tobytes() == got[ok].tobytes()


def old_still_elevated(s: Series, i: int, rec: IntArray, cfg: DetectConfig) -> bool:
    """Whether an alerting series × indicator still shows a rate above its baseline (loose test, 2-10 min)."""
    ind = INDICATORS[i]
    p0, den_eff = baseline_rate(s, i)
    p0u = float(inflate(np.array([p0]), np.array([den_eff]))[0])
    ratio = cfg.min_ratio_percentile if ind.percentile else cfg.min_ratio
    cums = np.cumsum(rec, axis=0)
    for w in cfg.windows[1:] or cfg.windows:
        row = cums[w - 1]
        x, n = int(row[ind.num]), int(row[ind.den])
        if n > 0 and x >= cfg.min_count and x >= ratio * p0u * n and old_binom_sf(x, n, p0u) < cfg.loose_alpha:
            return True
    return False



@pytest.mark.parametrize("seed", range(2))
def test_still_elevated_matches_the_reference(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    hits = 0
    for cfg in _configs():
        for _ in range(20):
            eval_b = int(rng.integers(10_000, 200_000_000))
            blk, _wf_m = _random_block(rng, cfg, eval_b)
            for s in blk.series:
                if s is None:
                    continue
                rec = blk.recent(np.array([s.row]), eval_b)[0]
                for i in range(NI):
                    with np.errstate(invalid="ignore"):
                        want = old_still_elevated(s, i, rec, cfg)
                    assert still_elevated(s, i, rec, cfg) == want
                    hits += want
    assert hits > 20


def test_fold_histograms_matches_folding_one_workflow_at_a_time() -> None:
    from codeblue.signals.pipeline import Pipeline

    rng = random.Random(9)
    pipe = Pipeline()
    ref = {}
    for round_ in range(3):
        for k in range(400):
            ws = pipe._workflow(f"wf-{k}", 1_795_500_000.0)
            ws.lat_pending = [rng.lognormvariate(6.5, 1.0) for _ in range(rng.choice([0, 1, 5, 40]))]
            ws.rage_pending = [float(rng.choice([0, 1, 7, 3600])) * rng.random() for _ in range(rng.choice([0, 3, 30]))]
            ws.pending_b = 179_550_000 + 6 * round_ + rng.randint(0, 5)
            lat, rage = ref.setdefault(ws.name, (copy.deepcopy(ws.lat_hist), copy.deepcopy(ws.rage_hist)))
            if ws.lat_pending:
                lat.add(np.asarray(ws.lat_pending, dtype=np.float64), ws.pending_b, pipe.cfg.decay)
            if ws.rage_pending:
                rage.add(np.asarray(ws.rage_pending, dtype=np.float64), ws.pending_b, pipe.cfg.decay)
        pipe._fold_histograms()
        for name, (lat, rage) in ref.items():
            ws = pipe.workflows[name]
            assert ws.lat_hist.counts.tobytes() == lat.counts.tobytes() and ws.lat_hist.last == lat.last
            assert ws.rage_hist.counts.tobytes() == rage.counts.tobytes() and ws.rage_hist.last == rage.last
            assert ws.lat_pending == [] and ws.rage_pending == []


def old_scatter_add(blk: Block, rows: IntArray, bs: IntArray, vecs: Any) -> None:
    """`windows.scatter_add` as it was (commit 6412202)."""
    from codeblue.signals.windows import COARSE_N, COARSE_PER_FINE

    slots = bs % FINE_N
    ids = blk.fine_ids[rows, slots]
    stale = ids < bs
    if stale.any():
        blk.fine[rows[stale], slots[stale]] = 0
        blk.fine_ids[rows[stale], slots[stale]] = bs[stale]
    ok = blk.fine_ids[rows, slots] == bs
    np.add.at(blk.fine, (rows[ok], slots[ok]), vecs[ok])
    cbs = bs // COARSE_PER_FINE
    cslots = cbs % COARSE_N
    cids = blk.coarse_ids[rows, cslots]
    cstale = cids < cbs
    if cstale.any():
        blk.coarse[rows[cstale], cslots[cstale]] = 0
        blk.coarse_ids[rows[cstale], cslots[cstale]] = cbs[cstale]
    cok = blk.coarse_ids[rows, cslots] == cbs
    np.add.at(blk.coarse, (rows[cok], cslots[cok]), vecs[cok])
    np.maximum.at(blk.last_b, rows, bs)


def random_scatters(seed: int) -> Iterator[tuple[np.random.Generator, Block, Block, IntArray, IntArray]]:
    """150 random flushes into random rings: (the generator, the block, a copy of it, rows, buckets), with
    repeated (row, bucket) pairs, buckets a ring apart in one call (the same slot named twice), late buckets
    behind the ring, buckets ahead of it, rows never written, and coarse ring ids current, stale or ahead."""
    rng = np.random.default_rng(seed)
    cfg = DetectConfig()
    for _ in range(150):
        eval_b = int(rng.integers(10_000, 1_000_000))
        blk, _wf_m = _random_block(rng, cfg, eval_b)
        if rng.random() < 0.5:
            blk.coarse_ids[: blk.n] = (eval_b // 6 - rng.choice([0, 1, 30, 59, 60, 61, -1], size=(blk.n, 60))
                                       ).astype(np.int32)
        ref = copy.deepcopy(blk)
        k = int(rng.integers(1, 80))
        rows = rng.integers(0, blk.n, size=k).astype(np.int64)
        bs = (eval_b + rng.choice([0, 0, 0, 1, -1, -5, -59, -60, -61, 60, 120, -400], size=k)).astype(np.int64)
        yield rng, blk, ref, rows, bs


@pytest.mark.parametrize("seed", range(3))
def test_scatter_add_matches_the_reference(seed: int) -> None:
    """Random flushes into random rings: repeated (row, bucket) pairs, buckets a ring apart in one call (the same
    slot named twice), late buckets behind the ring, buckets ahead of it, rows never written."""
    from codeblue.signals.windows import scatter_add

    partial = 0
    for rng, blk, ref, rows, bs in random_scatters(seed):
        k = len(rows)
        vecs = rng.integers(0, 50, size=(k, NC)).astype(np.int32)
        scatter_add(blk, rows, bs, vecs)
        old_scatter_add(ref, rows, bs, vecs)
        for name in ("fine", "fine_ids", "coarse", "coarse_ids", "last_b"):
            assert np.array_equal(getattr(blk, name), getattr(ref, name)), name
        partial += int((ref.fine_ids[rows, bs % FINE_N] != bs).any())
    assert partial > 20  # the branch where some vectors are dropped was exercised


def old_poisson_sf(k: int, lam: float) -> float:
    """`clusters.poisson_sf` as it was (commit 6412202)."""
    if k <= 0:
        return 1.0
    if lam <= 0:
        return 0.0
    if k <= lam:
        cdf = 0.0
        term = math.exp(-lam)
        for i in range(k):
            cdf += term
            term *= lam / (i + 1)
        return max(0.0, 1.0 - cdf)
    log_term = -lam + k * math.log(lam) - math.lgamma(k + 1)
    total = 0.0
    i = k
    log_lam = math.log(lam)
    while True:
        t = math.exp(log_term)
        total += t
        i += 1
        log_term += log_lam - math.log(i)
        if t < total * 1e-15 or i > k + 10_000:
            break
    return min(1.0, total)


def test_tails_whose_first_term_underflows_match_the_reference() -> None:
    """Far tails (a burst of hundreds against a baseline of a few; an incident's window at 5× traffic) whose
    first term is below the smallest double: the shortcut returns what the full loops returned, and tails
    just above the underflow are still summed."""
    rng = random.Random(17)
    zero = nonzero = 0
    for _ in range(400):
        lam = rng.choice([0.01, 0.5, 3.0, 6.0, 40.0, 300.0]) * rng.uniform(0.5, 1.5)
        k = int(lam) + rng.choice([1, 5, 30, 120, 200, 299, 400, 1500])
        want = old_poisson_sf(k, lam)
        assert poisson_sf(k, lam) == want, (k, lam)
        assert _poisson_sf_below(k, lam, 1e-7) == want or want >= 1e-7
        zero += want == 0.0
        nonzero += 0.0 < want < 1e-250
    for _ in range(400):
        n = rng.choice([200, 2_000, 20_000, 400_000])
        p = rng.choice([1e-4, 0.004, 0.03, 0.2])
        x = min(n, int(n * p) + rng.choice([1, 10, 100, 400, 1500, 6000]))
        want = old_binom_sf(x, n, p)
        assert binom_sf(x, n, p) == want, (x, n, p)
        assert detect._binom_sf_below(x, n, p, 1e-3) == want or want >= 1e-3
        zero += want == 0.0
        nonzero += 0.0 < want < 1e-250
    assert zero > 100 and nonzero > 10  # both sides of the underflow
