"""Precision and recall of the refusal detectors on XSTest v2 completions, whole files held out.

    .venv/bin/python bench/sdk_refusal_eval.py               # evaluate (embedding part needs the extra)
    .venv/bin/python bench/sdk_refusal_eval.py --write-head  # re-train the shipped head, then evaluate

Positives: `2_full_refusal`; negatives: `1_full_compliance`; partial refusals left out.
The lexical patterns were developed looking only at the llama2new file; gpt4 and mistralinstruct are held
out for it. Every embedding head is evaluated only on files it was not fitted on.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from codeblue.sdk.refusal import (  # noqa: E402
    HEAD_PATH,
    EmbeddingRefusalDetector,
    Head,
    embed,
    embeddings_available,
    features,
    fit_head,
    refusal_score,
)
from codeblue.sdk.refusal_eval import Labelled, load_xstest, measure  # noqa: E402
from codeblue.sdk.refusal_exemplars import COMPLIANCE, REFUSALS  # noqa: E402

DATA = ROOT / "tests" / "data" / "xstest"
FILES = ("gpt4", "llama2new", "mistralinstruct")
LEXICAL_DEV = "llama2new"
SHIPPED_TRAIN = ("llama2new", "mistralinstruct")


def load() -> dict[str, list[Labelled]]:
    return {n: load_xstest(DATA / f"xstest_v2_completions_{n}.csv") for n in FILES}


def lexical(data: dict[str, list[Labelled]]) -> None:
    print("== lexical detector (stdlib; patterns developed on llama2new only)")
    for n in FILES:
        rows = data[n]
        m = measure([refusal_score(r.text) for r in rows], [r.refusal for r in rows], 0.5)
        tag = "dev     " if n == LEXICAL_DEV else "held-out"
        print(f"  {tag} {n:16s} {m}")
    texts = [r.text for n in FILES for r in data[n]]
    t0 = time.perf_counter()
    for t in texts:
        refusal_score(t)
    per = (time.perf_counter() - t0) / len(texts)
    print(f"  cost: {per * 1e6:.0f} µs per answer (mean over {len(texts)} answers)")


def exemplar_feats() -> tuple[list[list[float]], list[int]]:
    texts = list(REFUSALS) + list(COMPLIANCE)
    embs = embed(texts)
    return [features(e, t) for e, t in zip(embs, texts, strict=True)], [1] * len(REFUSALS) + [0] * len(COMPLIANCE)


def train_shipped(data: dict[str, list[Labelled]], feats: dict[str, list[list[float]]]) -> Head:
    xe, ye = exemplar_feats()
    x = [f for n in SHIPPED_TRAIN for f in feats[n]] + xe
    y = [int(r.refusal) for n in SHIPPED_TRAIN for r in data[n]] + ye
    return fit_head(x, y, trained_on="+".join(SHIPPED_TRAIN) + "+exemplars")


def embedding(data: dict[str, list[Labelled]], write_head: bool) -> None:
    print("== embedding detector (all-MiniLM-L6-v2 of the opening + lexical score -> logistic regression)")
    t0 = time.perf_counter()
    embs = {n: embed([r.text for r in data[n]]) for n in FILES}
    n_texts = sum(len(v) for v in data.values())
    per = (time.perf_counter() - t0) / n_texts
    feats = {n: [features(e, r.text) for e, r in zip(embs[n], data[n], strict=True)] for n in FILES}
    labels = {n: [r.refusal for r in data[n]] for n in FILES}
    xe, ye = exemplar_feats()

    def report(head: Head, name: str, held_out: list[str]) -> None:
        for te in held_out:
            m = measure([head.score(f) for f in feats[te]], labels[te], head.threshold)
            goal = "meets goal" if m.precision >= 0.95 and m.recall >= 0.90 else "below goal"
            print(f"  {name:38s} -> {te:16s} {m}  [{goal}]")

    head = fit_head(xe, ye, trained_on="exemplars")
    report(head, "fit on written exemplars only", list(FILES))
    for tr in FILES:
        head = fit_head(feats[tr] + xe, [int(y) for y in labels[tr]] + ye, trained_on=tr)
        report(head, f"fit on {tr}+exemplars", [n for n in FILES if n != tr])
    for te in FILES:
        trs = [n for n in FILES if n != te]
        x = [f for n in trs for f in feats[n]] + xe
        y = [int(v) for n in trs for v in labels[n]] + ye
        report(fit_head(x, y, trained_on="+".join(trs)), f"fit on {'+'.join(trs)}+exemplars", [te])
    if write_head:
        train_shipped(data, feats).dump(HEAD_PATH)
        print(f"  wrote {HEAD_PATH.relative_to(ROOT)}")
    shipped = Head.load()
    held = [n for n in FILES if n not in shipped.trained_on.split("+")]
    report(shipped, f"SHIPPED head ({shipped.trained_on})", held)
    print(f"  cost: {per * 1e3:.1f} ms per answer embedding in batches of 32 (CPU, torch threads default)")
    det = EmbeddingRefusalDetector()
    sample = [r.text for r in data["gpt4"][:50]]
    lat = []
    for t in sample:
        t1 = time.perf_counter()
        det.score(t)
        lat.append(time.perf_counter() - t1)
    print(f"  cost: {statistics.median(lat) * 1e3:.1f} ms median per single answer (unbatched, 50 answers)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--write-head", action="store_true", help="re-train the shipped head and write it")
    args = ap.parse_args()
    data = load()
    for n in FILES:
        pos = sum(r.refusal for r in data[n])
        print(f"{n}: {pos} full refusals, {len(data[n]) - pos} full compliance")
    lexical(data)
    if embeddings_available():
        embedding(data, args.write_head)
    else:
        print("== embedding detector: skipped (pip install 'codeblue[embeddings]')")


if __name__ == "__main__":
    main()
