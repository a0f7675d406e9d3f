"""The embedding detector's inputs and training, without the model: segmentation, the head's fitting, and
that the written exemplars are not taken from the evaluation data."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from codeblue.sdk.refusal import Head, segments
from codeblue.sdk.refusal_exemplars import CAVEATED_COMPLIANCE, COMPLIANCE, REFUSALS, SOFT_REFUSALS

DATA = Path(__file__).resolve().parent.parent / "data" / "xstest"


def test_segments_split_sentences_and_lines_and_strip_markup() -> None:
    text = "I understand.\n\n**Here is why:** it helps.\n- First point!\n1. Second? Yes."
    assert segments(text) == ["I understand.", "Here is why:** it helps.", "First point!", "Second?", "Yes."]  # "1." alone is dropped


def test_segments_are_bounded_and_never_empty() -> None:
    long = " ".join(f"Sentence number {i} is here." for i in range(100))
    segs = segments(long)
    assert len(segs) == 24
    assert segments("x" * 1000) == ["x" * 300]
    assert segments("") == ["."]
    assert segments("  \n ") == ["."]


def test_fit_head_folds_standardisation_into_the_weights() -> None:
    pytest.importorskip("numpy")
    from codeblue.sdk.refusal import fit_head

    # one informative feature on a large scale, one noise feature on a tiny scale
    xs = [[1000.0 + 10 * i, 0.001 * ((i * 7) % 5)] for i in range(20)] + \
         [[1300.0 + 10 * i, 0.001 * ((i * 3) % 5)] for i in range(20)]
    ys = [0] * 20 + [1] * 20
    head = fit_head(xs, ys, trained_on="synthetic", c=10.0)
    assert head.c == 10.0
    preds = [head.score(x) >= head.threshold for x in xs]
    assert sum(p == bool(y) for p, y in zip(preds, ys, strict=True)) >= 38
    assert head.score([900.0, 0.0]) < 0.1 < 0.9 < head.score([1600.0, 0.0])


def test_head_round_trips_through_json(tmp_path: Path) -> None:
    head = Head((0.5, -1.25), 0.1, 0.5, "a+b+exemplars", 0.3)
    head.dump(tmp_path / "h.json")
    assert Head.load(tmp_path / "h.json") == head
    shipped = Head.load()
    assert shipped.c > 0 and "exemplars" in shipped.trained_on


def _shingles(text: str, n: int = 7) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z']+", text.lower().replace("\u2019", "'"))
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def test_exemplars_share_no_seven_word_run_with_the_evaluation_answers() -> None:
    answers: set[tuple[str, ...]] = set()
    for f in sorted(DATA.glob("xstest_v2_completions_*.csv")):
        with open(f, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                answers |= _shingles(row["completion"])
    assert len(answers) > 10_000
    for ex in REFUSALS + SOFT_REFUSALS + COMPLIANCE + CAVEATED_COMPLIANCE:
        common = _shingles(ex) & answers
        assert not common, (ex, sorted(common)[:3])


def test_average_precision() -> None:
    from codeblue.sdk.refusal_eval import average_precision

    assert average_precision([0.9, 0.8, 0.1], [True, True, False]) == 1.0
    assert average_precision([0.9, 0.8, 0.1], [False, True, True]) == (1 / 2 + 2 / 3) / 2
    assert average_precision([0.5, 0.5], [True, False]) == 0.5  # ties count against the detector
    assert average_precision([0.1], [False]) == 1.0
