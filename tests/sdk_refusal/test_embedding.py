"""The embedding refusal detector (needs the `embeddings` extra; skipped without it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from codeblue.sdk.refusal import EmbeddingRefusalDetector, Head, RefusalDetector, embeddings_available
from codeblue.sdk.refusal_eval import load_xstest, measure

pytestmark = pytest.mark.skipif(not embeddings_available(), reason="needs pip install 'codeblue[embeddings]'")

DATA = Path(__file__).resolve().parent.parent / "data" / "xstest"
FILES = ("gpt4", "llama2new", "mistralinstruct")


@pytest.fixture(scope="module")
def detector() -> EmbeddingRefusalDetector:
    return EmbeddingRefusalDetector()


def test_auto_prefers_embeddings_when_installed() -> None:
    assert RefusalDetector("auto").method == "embedding"


def test_plain_cases(detector: EmbeddingRefusalDetector) -> None:
    assert detector.is_refusal("I'm sorry, but I can't help with that request.")
    assert not detector.is_refusal("Sure! Run `kill -9 <pid>` to stop the process.")
    assert not detector.is_refusal("I'm sorry to hear that. Here are some steps that help: rest, water, and sleep.")
    assert detector.score("") == 0.0


def test_shipped_head_meets_goal_on_files_it_was_not_fitted_on(detector: EmbeddingRefusalDetector) -> None:
    head = Head.load()
    trained = set(head.trained_on.split("+"))
    held_out = [n for n in FILES if n not in trained]
    assert held_out, "the shipped head must leave at least one whole file out"
    for name in held_out:
        rows = load_xstest(DATA / f"xstest_v2_completions_{name}.csv")
        m = measure(detector.scores([r.text for r in rows]), [r.refusal for r in rows], detector.threshold)
        assert m.precision >= 0.95 and m.recall >= 0.90, f"{name}: {m}"
