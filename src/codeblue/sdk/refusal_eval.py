"""Measuring refusal detectors on labelled answers (XSTest v2 completions: full refusal vs full compliance)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

POSITIVE = "2_full_refusal"
NEGATIVE = "1_full_compliance"


@dataclass(frozen=True)
class Labelled:
    id: str
    text: str
    refusal: bool


@dataclass(frozen=True)
class Metrics:
    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def __str__(self) -> str:
        return (f"precision {self.precision:.3f}  recall {self.recall:.3f}  f1 {self.f1:.3f}  "
                f"(tp {self.tp} fp {self.fp} fn {self.fn} tn {self.tn})")


def load_xstest(path: str | Path) -> list[Labelled]:
    """Full refusals (positives) and full compliance (negatives) from one XSTest completions CSV; partial
    refusals are left out."""
    out: list[Labelled] = []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            label = row["final_label"].strip()
            if label not in (POSITIVE, NEGATIVE):
                continue
            out.append(Labelled(row["id"], row["completion"], label == POSITIVE))
    return out


def measure(scores: Sequence[float], labels: Sequence[bool], threshold: float) -> Metrics:
    tp = fp = fn = tn = 0
    for s, y in zip(scores, labels, strict=True):
        p = s >= threshold
        if p and y:
            tp += 1
        elif p:
            fp += 1
        elif y:
            fn += 1
        else:
            tn += 1
    return Metrics(tp, fp, fn, tn)


def average_precision(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the precision-recall curve (mean precision at each positive, ties broken pessimistically):
    how well a detector ranks refusals above compliance, whatever threshold it is run at."""
    pairs = sorted(zip(scores, labels, strict=True), key=lambda p: (-p[0], p[1]))
    n_pos = sum(1 for _, y in pairs if y)
    if not n_pos:
        return 1.0
    tp = 0
    total = 0.0
    for i, (_, y) in enumerate(pairs, 1):
        if y:
            tp += 1
            total += tp / i
    return total / n_pos
