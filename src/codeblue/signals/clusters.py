"""Complaint clusters: group complaint texts per workflow by what they are about, and flag one theme growing.

A rising complaint *rate* is the `complaint_rate` indicator's job. This module answers a sharper question:
is one *theme* ("my refund went to someone else's account") suddenly much more frequent than it has been?
That is the seed's "complaint clusters for one workflow" signal, and it survives a background of generic,
unrelated complaints that would drown a plain rate.

`ComplaintClusterer` is pure in-memory state with no server imports (the detection pipeline owns one):

    cc = ComplaintClusterer()                           # lexical; ComplaintClusterer(embedder="auto") for MiniLM
    cid = cc.add("refund-desk", "refund sent to the wrong account", time=t)
    for sig in cc.signals(now): ...                     # ClusterSignal per theme bursting above its own baseline

* **Representation** (lexical, default): normalised word stems (lower case, accents and punctuation
  dropped, light suffix stripping) and adjacent-stem bigrams, weighted by an inverse document frequency
  learned online over all complaints seen. Words that say only that the user is unhappy ("bad", "useless",
  "not helpful", "the bot") are not content; a complaint with no content terms is *generic*: it is counted
  in the workflow's generic bucket and never forms a theme.
* **Clustering**: online single pass. A complaint joins the most similar cluster of its workflow (cosine of
  TF-IDF vectors, candidates found through an inverted index) when the similarity reaches `threshold`,
  else it starts a new cluster. Centroids keep their `max_terms` heaviest terms.
* **Signal**: per cluster, counts in time buckets; the baseline rate is the cluster's own count before the
  recent window over the time the workflow has been observed (up to `horizon`), plus a prior of one
  pseudo-event over `prior` seconds (default 4 windows: a brand-new theme is expected ~0.25 times a
  window). A cluster signals when its count in the last `window` seconds is at least
  `min_count`, at least `min_ratio` × the expected count, and the Poisson tail probability
  P(X ≥ count | expected) is below `p_threshold`.
* **Share test** (`relative=True`, what the detection pipeline uses): the cluster must also have grown
  *relative to the workflow's other complaints* — its share of the workflow's complaints in the window is
  tested (exact binomial tail) against its share before, with the same `p_threshold` and `min_ratio`. A burst
  of generic or mixed complaints that lifts every theme alike keeps every share where it was and signals
  nothing (a rising complaint *rate* is `complaint_rate`'s job); one theme taking over does.
* **Memory**: at most `max_clusters` clusters per workflow (a new cluster evicts the least recently seen
  one), clusters idle for `horizon` are dropped, buckets older than `horizon` are pruned, the vocabulary is
  capped at `max_vocab` terms.
"""

from __future__ import annotations

import functools
import itertools
import math
import operator
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, Literal

from codeblue.signals.detect import binom_sf

__all__ = ["ClusterInfo", "ClusterSignal", "ComplaintClusterer", "content_terms", "poisson_sf"]

Embedder = Callable[[Sequence[str]], Sequence[Sequence[float]]]

# Words that carry no topic in a complaint: function words, and words that only say the user is unhappy
# or name the assistant itself.
_STOP = frozenset(["a", "about", "above", "after", "again", "against", "all", "also", "am", "an", "and", "any", "are", "aren't", "as", "at", "be", "because", "been", "before", "being", "below", "between", "both", "but", "by", "can", "can't", "cannot", "could", "couldn't", "did", "didn't", "do", "does", "doesn't", "doing", "don't", "down", "during", "each", "even", "ever", "every", "few", "for", "from", "further", "get", "gets", "getting", "got", "had", "hadn't", "has", "hasn't", "have", "haven't", "having", "he", "her", "here", "hers", "herself", "him", "himself", "his", "how", "i", "i'd", "i'm", "i've", "if", "in", "into", "is", "isn't", "it", "it's", "its", "itself", "just", "keep", "keeps", "kept", "let's", "me", "more", "most", "much", "must", "my", "myself", "no", "nor", "not", "now", "of", "off", "on", "once", "only", "or", "other", "ought", "our", "ours", "ourselves", "out", "over", "own", "same", "she", "should", "shouldn't", "so", "some", "still", "such", "than", "that", "that's", "the", "their", "theirs", "them", "themselves", "then", "there", "there's", "these", "they", "they're", "this", "those", "through", "to", "too", "under", "until", "up", "upon", "us", "very", "was", "wasn't", "we", "we're", "were", "weren't", "what", "what's", "when", "where", "which", "while", "who", "whom", "why", "will", "with", "won't", "would", "wouldn't", "you", "you're", "your", "yours", "yourself", "yourselves", "yet", "one", "thing", "things", "anything", "something", "nothing", "everything", "really", "actually", "literally", "totally", "completely", "absolutely", "please", "pls", "plz", "thanks", "thank", "ok", "okay", "yes", "yeah", "hey", "hi", "hello", "guys", "lol", "seriously", "honestly", "again", "already", "always", "never", "today", "now", "time", "times", "bad", "worse", "worst", "terrible", "horrible", "awful", "awfull", "poor", "useless", "pointless", "rubbish", "garbage", "trash", "crap", "sucks", "suck", "sucked", "stupid", "dumb", "annoying", "annoyed", "frustrating", "frustrated", "angry", "disappointed", "disappointing", "disappointment", "unhappy", "upset", "hate", "hated", "waste", "wasted", "joke", "ridiculous", "unacceptable", "pathetic", "shame", "helpful", "unhelpful", "help", "helping", "helped", "helps", "good", "great", "nice", "fine", "better", "best", "wrong", "incorrect", "broken", "broke", "fail", "failed", "fails", "failing", "failure", "issue", "issues", "problem", "problems", "error", "work", "works", "worked", "working", "doesnt", "dont", "cant", "wont", "isnt", "didnt", "bot", "bots", "chatbot", "assistant", "ai", "agent", "app", "application", "service", "system", "tool", "answer", "answers", "answered", "response", "responses", "reply", "replies", "respond", "responded", "said", "says", "say", "told", "tell", "support", "experience", "fix", "fixed", "fixing", "make", "made", "makes", "use", "used", "using", "try", "tried", "trying", "want", "wanted", "need", "needed", "go", "goes", "going", "went", "gone", "come", "comes", "came", "take", "takes", "took", "give", "gives", "gave", "ask", "asks", "asked", "put", "puts", "meh", "ugh", "bleh", "wtf", "omg", "someone", "anyone", "everyone", "somebody", "anybody", "else", "another", "other", "others", "different", "person", "people", "guy", "lady", "thing", "stuff"])

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_SUFFIXES = ("ational", "ization", "fulness", "ousness", "iveness", "ations", "ements", "ments", "ation",
             "ement", "ment", "ness", "ings", "edly", "ing", "ies", "ied", "ers", "ed", "er", "es", "ly", "s")


def _stem(word: str) -> str:
    """A light stemmer: strip one common suffix (keeping ≥ 3 letters), then cap the length."""
    w = word
    if len(w) > 4:
        for suf in _SUFFIXES:
            if w.endswith(suf) and len(w) - len(suf) >= 3:
                w = w[: -len(suf)]
                if suf in ("ies", "ied"):
                    w += "y"
                break
    return w[:7]


@functools.lru_cache(maxsize=2048)
def _term_counts(text: str) -> Counter[str]:
    """Content terms with their weights: 2 per stem, 1 per bigram (bigrams count half). Memoised (a cluster's
    sample texts are weighed again each time it is shown): callers only read the result."""
    out: Counter[str] = Counter()
    for t in content_terms(text):
        out[t] += 1 if "_" in t else 2
    return out


def content_terms(text: str) -> list[str]:
    """The content terms of a complaint: stems of non-generic words, plus bigrams of adjacent ones."""
    t = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower().replace("\u2019", "'")
    stems: list[str] = []
    for m in _WORD.finditer(t):
        w = m.group(0)
        if w.endswith("'s"):
            w = w[:-2]
        if w in _STOP or len(w) < 2 or w.isdigit():
            continue
        stems.append(_stem(w))
    terms = list(stems)
    terms.extend(f"{a}_{b}" for a, b in itertools.pairwise(stems) if a != b)
    return terms


def poisson_sf(k: int, lam: float) -> float:
    """P(X ≥ k) for X ~ Poisson(lam), accurate in the far tail."""
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
    exp, log = math.exp, math.log
    while True:
        t = exp(log_term)
        if total == 0.0 and t == 0.0:
            # The first term underflows: every later one does too (log_term only falls while i > lam), so the
            # loop would add 10,000 zeros and return 0.0.
            break
        total += t
        i += 1
        log_term += log_lam - log(i)
        if t < total * 1e-15 or i > k + 10_000:
            break
    return min(1.0, total)


def _poisson_sf_below(k: int, lam: float, limit: float) -> float:
    """`poisson_sf(k, lam)`, or +inf when it cannot be below `limit` (< 1): in the upper tail the first term
    alone reaching `limit` settles it (the tail is a sum of positive terms), and the rest is not summed."""
    if k > 0 and 0 < lam < k and math.exp(-lam + k * math.log(lam) - math.lgamma(k + 1)) >= limit:
        return math.inf
    return poisson_sf(k, lam)


@dataclass(frozen=True)
class ClusterSignal:
    """One complaint theme on one workflow growing well above its own baseline."""

    workflow: str
    cluster_id: str
    count_recent: int
    baseline_rate: float  # expected count in a window of `window_s`, from the cluster's own history
    p_value: float  # Poisson P(X ≥ count_recent | baseline_rate)
    score: float  # count_recent / baseline_rate
    representatives: tuple[str, ...]  # up to 3 texts closest to the theme
    first_seen: float
    last_seen: float
    window_s: float
    terms: tuple[str, ...]  # the theme's heaviest terms, a label for people
    total: int  # complaints in the cluster over the horizon
    burst_start: float = 0.0  # start of the first bucket of the window holding one of the recent complaints
    share: float | None = None  # share of the workflow's complaints in the window (share test only)
    baseline_share: float | None = None  # ... and before it

    def as_dict(self) -> dict[str, Any]:
        return {
            "workflow": self.workflow, "cluster_id": self.cluster_id, "count_recent": self.count_recent,
            "baseline_rate": self.baseline_rate, "p_value": self.p_value, "score": self.score,
            "representatives": list(self.representatives), "first_seen": self.first_seen,
            "last_seen": self.last_seen, "window_s": self.window_s, "terms": list(self.terms), "total": self.total,
            "burst_start": self.burst_start, "share": self.share, "baseline_share": self.baseline_share,
        }


@dataclass(frozen=True)
class ClusterInfo:
    cluster_id: str
    size: int
    terms: tuple[str, ...]
    first_seen: float
    last_seen: float
    representatives: tuple[str, ...]


@dataclass(slots=True)
class _Cluster:
    id: str
    first_seen: float
    last_seen: float
    counts: Counter[str] = field(default_factory=Counter)  # lexical centroid: raw term counts
    vec: list[float] | None = None  # embedding centroid: running mean
    size: int = 0
    buckets: dict[int, int] = field(default_factory=dict)
    n: int = 0  # sum of `buckets`
    # (text, its embedding) — lexical samples keep only the text; its terms are recomputed when shown
    samples: list[tuple[str, list[float] | None]] = field(default_factory=list)


@dataclass(slots=True)
class _Workflow:
    first_seen: float
    clusters: dict[str, _Cluster] = field(default_factory=dict)
    index: dict[str, set[str]] = field(default_factory=dict)  # term → cluster ids (lexical)
    generic: dict[int, int] = field(default_factory=dict)  # generic complaints per bucket
    generic_n: int = 0  # sum of `generic`
    generic_last: int = -(2**62)  # the latest bucket of `generic`
    next_id: int = 1


class ComplaintClusterer:
    """Online clustering of complaint texts per workflow, and burst signals per cluster (see module doc)."""

    def __init__(
        self,
        embedder: Embedder | Literal["auto"] | None = None,
        *,
        threshold: float | None = None,
        window: float = 900.0,
        horizon: float = 7 * 86400.0,
        min_count: int = 5,
        min_ratio: float = 3.0,
        p_threshold: float = 1e-3,
        max_clusters: int = 200,
        max_terms: int = 48,
        max_vocab: int = 50_000,
        max_workflows: int = 10_000,
        samples: int = 8,
        prior: float | None = None,
        relative: bool = False,
    ) -> None:
        if window <= 0 or horizon <= window:
            raise ValueError("window must be > 0 and horizon > window")
        if min_count < 1 or max_clusters < 1 or max_terms < 4 or samples < 3:
            raise ValueError("min_count, max_clusters must be ≥ 1; max_terms ≥ 4; samples ≥ 3")
        if prior is not None and prior <= 0:
            raise ValueError("prior must be > 0 seconds")
        if not 0 < p_threshold < 1:
            raise ValueError("p_threshold must be between 0 and 1")
        self._embed: Embedder | None
        if embedder == "auto":
            self._embed = _minilm_embedder()
        elif embedder is None or callable(embedder):
            self._embed = embedder
        else:
            raise ValueError("embedder must be None, 'auto' or a callable texts -> vectors")
        self.method = "embedding" if self._embed is not None else "lexical"
        self.threshold = threshold if threshold is not None else (0.6 if self._embed is not None else 0.25)
        self.window = window
        self.horizon = horizon
        self.bucket_s = window / 10.0
        self.prior_s = prior if prior is not None else 4 * window
        self.min_count = min_count
        self.min_ratio = min_ratio
        self.p_threshold = p_threshold
        self.max_clusters = max_clusters
        self.max_terms = max_terms
        self.max_vocab = max_vocab
        self.max_workflows = max_workflows
        self.samples = samples
        self.relative = relative
        self._wf: dict[str, _Workflow] = {}
        self._df: Counter[str] = Counter()
        self._docs = 0
        # What a signal shows of a cluster (terms, representatives) by cluster id, with the (size, docs) it was
        # computed at: both change whenever the cluster or the term weights change, so a hit is exact.
        self._shown: dict[str, tuple[int, int, tuple[str, ...], tuple[str, ...]]] = {}

    # ----- weighting --------------------------------------------------------------------------------

    def _idf(self, term: str) -> float:
        return math.log((1 + self._docs) / (1 + self._df.get(term, 0))) + 1.0

    def _weighted(self, counts: Counter[str], idf: dict[str, float] | None = None) -> tuple[dict[str, float], float]:
        """TF-IDF vector and its norm. `idf`, when given, memoises term weights for one call site: they depend
        only on the term and the corpus counts, which do not change while one complaint is placed."""
        if idf is None:
            vec = {t: c * self._idf(t) for t, c in counts.items()}
        else:
            vec = {}
            for t, c in counts.items():
                w = idf.get(t)
                if w is None:
                    w = idf[t] = self._idf(t)
                vec[t] = c * w
        norm = math.sqrt(sum(v * v for v in vec.values()))
        return vec, norm

    def _learn_df(self, terms: set[str]) -> None:
        self._docs += 1
        self._df.update(terms)
        if len(self._df) > self.max_vocab:
            keep = self._df.most_common(self.max_vocab // 2)
            self._df = Counter(dict(keep))

    # ----- adding -----------------------------------------------------------------------------------

    def _workflow(self, workflow: str, time: float) -> _Workflow:
        wf = self._wf.get(workflow)
        if wf is None:
            if len(self._wf) >= self.max_workflows:
                idle = min(self._wf, key=lambda k: max((c.last_seen for c in self._wf[k].clusters.values()),
                                                       default=self._wf[k].first_seen))
                del self._wf[idle]
            wf = self._wf[workflow] = _Workflow(first_seen=time)
        elif time < wf.first_seen:
            wf.first_seen = time
        return wf

    def add(self, workflow: str, text: str, time: float) -> str:
        """Put one complaint in a cluster of its workflow; returns the cluster id (``"<workflow>/generic"``
        for a complaint with no content terms)."""
        if not isinstance(workflow, str) or not workflow:
            raise ValueError("workflow must be a non-empty string")
        if not isinstance(text, str):
            raise ValueError("text must be a string")
        if not math.isfinite(time):
            raise ValueError("time must be a finite number of unix seconds")
        wf = self._workflow(workflow, time)
        bucket = int(time // self.bucket_s)
        counts = _term_counts(text)
        if not counts:
            wf.generic[bucket] = wf.generic.get(bucket, 0) + 1
            wf.generic_n += 1
            wf.generic_last = max(wf.generic_last, bucket)
            return f"{workflow}/generic"
        self._learn_df(set(counts))
        emb: list[float] | None = None
        if self._embed is not None:
            emb = _unit(list(self._embed([text])[0]))
        best, best_sim = self._nearest(wf, counts, emb)
        if best is None or best_sim < self.threshold:
            best = self._new_cluster(workflow, wf, time)
        self._join(wf, best, text, counts, emb, time, bucket)
        return best.id

    def _nearest(self, wf: _Workflow, counts: Counter[str], emb: list[float] | None) -> tuple[_Cluster | None, float]:
        best: _Cluster | None = None
        best_sim = -1.0
        if emb is not None:
            for c in wf.clusters.values():
                if c.vec is None:
                    continue
                sim = sum(a * b for a, b in zip(emb, c.vec, strict=True)) / (_norm(c.vec) or 1.0)
                if sim > best_sim:
                    best, best_sim = c, sim
            return best, best_sim
        idf: dict[str, float] = {}
        vec, norm = self._weighted(counts, idf)
        if norm == 0:
            return None, 0.0
        candidates: set[str] = set()
        for t in counts:
            candidates |= wf.index.get(t, set())
        # Each candidate's TF-IDF vector as `_weighted` builds it, without the dict: its norm needs every weight
        # (summed in the same order: `sum` is the same algorithm whatever the iterable), its dot product with
        # `vec` only the complaint's terms (the same products; a term the cluster lacks weighs 0.0 there).
        get = idf.get
        df = self._df.get
        docs = 1 + self._docs
        log = math.log
        for cid in candidates:
            c = wf.clusters[cid]
            weights = []
            for t, n in c.counts.items():
                w = get(t)
                if w is None:
                    w = idf[t] = log(docs / (1 + df(t, 0))) + 1.0  # `_idf`
                weights.append(n * w)
            cnorm = math.sqrt(sum(map(operator.mul, weights, weights)))
            if cnorm == 0:
                continue
            cc = c.counts
            sim = sum(v * (cc[t] * idf[t] if t in cc else 0.0) for t, v in vec.items()) / (norm * cnorm)
            if sim > best_sim:
                best, best_sim = c, sim
        return best, best_sim

    def _new_cluster(self, workflow: str, wf: _Workflow, time: float) -> _Cluster:
        if len(wf.clusters) >= self.max_clusters:
            victim = min(wf.clusters.values(), key=lambda c: (c.last_seen, c.size))
            self._drop(wf, victim)
        cid = f"{workflow}/{wf.next_id}"
        wf.next_id += 1
        c = _Cluster(id=cid, first_seen=time, last_seen=time)
        wf.clusters[cid] = c
        return c

    def _drop(self, wf: _Workflow, c: _Cluster) -> None:
        for t in c.counts:
            ids = wf.index.get(t)
            if ids is not None:
                ids.discard(c.id)
                if not ids:
                    del wf.index[t]
        del wf.clusters[c.id]

    def _join(self, wf: _Workflow, c: _Cluster, text: str, counts: Counter[str], emb: list[float] | None,
              time: float, bucket: int) -> None:
        c.size += 1
        c.first_seen = min(c.first_seen, time)
        c.last_seen = max(c.last_seen, time)
        c.buckets[bucket] = c.buckets.get(bucket, 0) + 1
        c.n += 1
        if emb is not None:
            if c.vec is None:
                c.vec = list(emb)
            else:
                n = min(c.size, 1000)
                c.vec = [(v * (n - 1) + e) / n for v, e in zip(c.vec, emb, strict=True)]
        before = set(c.counts)
        c.counts.update(counts)
        if len(c.counts) > self.max_terms * 2:
            c.counts = Counter(dict(c.counts.most_common(self.max_terms)))
        after = set(c.counts)
        for t in after - before:
            wf.index.setdefault(t, set()).add(c.id)
        for t in before - after:
            ids = wf.index.get(t)
            if ids is not None:
                ids.discard(c.id)
                if not ids:
                    del wf.index[t]
        if all(s[0] != text for s in c.samples):
            c.samples.append((text, emb))
            if len(c.samples) > self.samples:
                c.samples.pop(1)  # keep the first complaint, and the most recent others

    # ----- signals ----------------------------------------------------------------------------------

    def _prune(self, now: float) -> None:
        oldest = int((now - self.horizon) // self.bucket_s)
        for name in list(self._wf):
            wf = self._wf[name]
            for c in list(wf.clusters.values()):
                if c.last_seen < now - self.horizon:
                    self._drop(wf, c)
                    continue
                for b in [b for b in c.buckets if b < oldest]:
                    c.n -= c.buckets.pop(b)
            for b in [b for b in wf.generic if b < oldest]:
                wf.generic_n -= wf.generic.pop(b)
            if not wf.clusters and not wf.generic:
                del self._wf[name]

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
                last = int(c.last_seen // self.bucket_s)
                if last < recent_from:  # nothing in the window (every bucket is at or before the last one)
                    tot_before += c.n
                    continue
                recent, before = self._split(c.buckets, c.n, last, recent_from, now_bucket)
                tot_recent += recent
                tot_before += before
                if recent >= self.min_count:
                    first_b = next((b for b in range(recent_from, now_bucket + 1) if c.buckets.get(b)),
                                   now_bucket + 1)
                    counted.append((c, recent, before, first_b))
            for c, recent, before, first_b in counted:
                expected = self.window * (before + 1.0) / (observed + self.prior_s)
                if recent < self.min_ratio * expected:
                    continue  # (the cheap test first: the p-value only matters past it)
                p = _poisson_sf_below(recent, expected, self.p_threshold)
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

    @staticmethod
    def _split(buckets: dict[int, int], total: int, last: int, recent_from: int, now_bucket: int) -> tuple[int, int]:
        """(count in the recent window, count before it): the window's few buckets are read, the rest is the
        running total minus them (and minus any future-dated buckets, which only late clocks produce)."""
        recent = sum(map(buckets.get, range(recent_from, now_bucket + 1), repeat(0)))  # (integers: any order)
        later = 0
        if last > now_bucket:
            later = sum(n for b, n in buckets.items() if b > now_bucket)
        return recent, total - recent - later

    def _shown_of(self, c: _Cluster) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(terms, representatives) of a cluster, recomputed only after the cluster or the term weights changed."""
        hit = self._shown.get(c.id)
        if hit is not None and hit[0] == c.size and hit[1] == self._docs:
            return hit[2], hit[3]
        terms, reps = self._terms(c), self._representatives(c)
        if len(self._shown) >= 4096:
            self._shown.clear()
        self._shown[c.id] = (c.size, self._docs, terms, reps)
        return terms, reps

    def _terms(self, c: _Cluster, n: int = 5) -> tuple[str, ...]:
        vec, _ = self._weighted(c.counts)
        return tuple(t for t, _ in sorted(vec.items(), key=lambda kv: (-kv[1], kv[0]))[:n])

    def _representatives(self, c: _Cluster) -> tuple[str, ...]:
        if c.vec is not None:
            cv = c.vec
            scored = [(sum(a * b for a, b in zip(cv, s, strict=True)), t)
                      for t, s in c.samples if isinstance(s, list)]
        else:
            idf: dict[str, float] = {}
            cvec, cnorm = self._weighted(c.counts, idf)
            scored = []
            for t, _s in c.samples:
                vec, norm = self._weighted(_term_counts(t), idf)
                if vec:
                    sim = sum(v * cvec.get(k, 0.0) for k, v in vec.items()) / ((norm * cnorm) or 1.0)
                    scored.append((sim, t))
        scored.sort(key=lambda st: -st[0])
        return tuple(t for _, t in scored[:3])

    # ----- introspection ----------------------------------------------------------------------------

    def clusters(self, workflow: str) -> list[ClusterInfo]:
        """The clusters of `workflow`, largest first."""
        wf = self._wf.get(workflow)
        if wf is None:
            return []
        infos = [ClusterInfo(c.id, c.size, self._terms(c), c.first_seen, c.last_seen, self._representatives(c))
                 for c in wf.clusters.values()]
        infos.sort(key=lambda i: (-i.size, i.cluster_id))
        return infos

    def generic_count(self, workflow: str) -> int:
        wf = self._wf.get(workflow)
        return wf.generic_n if wf else 0

    @property
    def cluster_count(self) -> int:
        return sum(len(wf.clusters) for wf in self._wf.values())


def _norm(v: Sequence[float]) -> float:
    return math.sqrt(sum(x * x for x in v))


def _unit(v: list[float]) -> list[float]:
    n = _norm(v)
    return [x / n for x in v] if n else v


def _minilm_embedder() -> Embedder | None:
    """MiniLM sentence embeddings when the `embeddings` extra is installed, else None (lexical)."""
    try:
        from codeblue.sdk.refusal import embed, embeddings_available
    except ImportError:  # pragma: no cover
        return None
    if not embeddings_available():
        return None

    def run(texts: Sequence[str]) -> Sequence[Sequence[float]]:
        return embed(list(texts))

    return run
