"""Precision and recall of the refusal detectors on XSTest v2 completions, whole files held out.

    .venv/bin/python bench/sdk_refusal_eval.py               # evaluate (embedding part needs the extra)
    .venv/bin/python bench/sdk_refusal_eval.py --write-head  # re-train the shipped head, then evaluate

Positives: `2_full_refusal`; negatives: `1_full_compliance`; partial refusals left out.
The lexical patterns were developed looking only at the llama2new file; gpt4 and mistralinstruct are held
out for it. Every embedding head is evaluated only on files it was not fitted on, and its regularisation C
is chosen by cross-validation inside its training files only (leave one training file out when it has two,
otherwise a fixed default). MiniLM vectors are cached on disk (`--cache`, default under the temp directory)
so that re-runs only pay for texts they have not embedded yet; costs are measured without the cache.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from codeblue.sdk.refusal import (  # noqa: E402
    HEAD_PATH,
    EmbeddingRefusalDetector,
    Encoder,
    Head,
    embed,
    embeddings_available,
    encode,
    features,
    fit_head,
    refusal_score,
    segments,
)
from codeblue.sdk.refusal_eval import Labelled, average_precision, load_xstest, measure  # noqa: E402
from codeblue.sdk.refusal_exemplars import (  # noqa: E402
    CAVEATED_COMPLIANCE,
    COMPLIANCE,
    REFUSALS,
    SOFT_REFUSALS,
)

DATA = ROOT / "tests" / "data" / "xstest"
FILES = ("gpt4", "llama2new", "mistralinstruct")
LEXICAL_DEV = "llama2new"
SHIPPED_TRAIN = ("llama2new", "mistralinstruct")
C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
C_DEFAULT = 1.0  # when the training set holds a single file, there is nothing to cross-validate across
EX_REFUSALS = REFUSALS + SOFT_REFUSALS
EX_COMPLIANCE = COMPLIANCE + CAVEATED_COMPLIANCE


class CachedEncoder:
    """`encode` (or `fn`) with an on-disk cache keyed by the text's hash (the encoders are deterministic on CPU)."""

    def __init__(self, path: Path | None, fn: Encoder = encode) -> None:
        self.path = path
        self.fn = fn
        self.vecs: dict[str, list[float]] = {}
        if path is not None and path.exists():
            try:
                self.vecs = pickle.loads(path.read_bytes())
            except Exception:
                self.vecs = {}
        self.encoded = 0
        self.cpu = 0.0

    def __call__(self, texts: Sequence[str]) -> list[list[float]]:
        keys = [hashlib.sha256(t.encode()).hexdigest() for t in texts]
        todo = list(dict.fromkeys((k, t) for k, t in zip(keys, texts, strict=True) if k not in self.vecs))
        if todo:
            c0 = time.process_time()
            for (k, _), v in zip(todo, self.fn([t for _, t in todo]), strict=True):
                self.vecs[k] = v
            self.cpu += time.process_time() - c0
            self.encoded += len(todo)
            if self.path is not None:
                tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_bytes(pickle.dumps(self.vecs))
                tmp.replace(self.path)
        return [self.vecs[k] for k in keys]


def load() -> dict[str, list[Labelled]]:
    return {n: load_xstest(DATA / f"xstest_v2_completions_{n}.csv") for n in FILES}


def lexical(data: dict[str, list[Labelled]]) -> None:
    print("== lexical detector (stdlib; patterns developed on llama2new only)")
    for n in FILES:
        rows = data[n]
        scores = [refusal_score(r.text) for r in rows]
        m = measure(scores, [r.refusal for r in rows], 0.5)
        ap = average_precision(scores, [r.refusal for r in rows])
        tag = "dev     " if n == LEXICAL_DEV else "held-out"
        print(f"  {tag} {n:16s} {m}  AP {ap:.3f}")
    texts = [r.text for n in FILES for r in data[n]]
    t0 = time.perf_counter()
    for t in texts:
        refusal_score(t)
    per = (time.perf_counter() - t0) / len(texts)
    print(f"  cost: {per * 1e6:.0f} µs per answer (mean over {len(texts)} answers)")


def exemplar_feats(encoder: CachedEncoder) -> tuple[list[list[float]], list[int]]:
    texts = list(EX_REFUSALS) + list(EX_COMPLIANCE)
    embs = embed(texts, encoder=encoder)
    labels = [1] * len(EX_REFUSALS) + [0] * len(EX_COMPLIANCE)
    return [features(e, t) for e, t in zip(embs, texts, strict=True)], labels


def choose_c(train: Sequence[str], feats: dict[str, list[list[float]]], labels: dict[str, list[int]],
             xe: list[list[float]], ye: list[int]) -> float:
    """The L2 strength by leave-one-file-out inside the training files (mean F1 on the left-out file)."""
    if len(train) < 2:
        return C_DEFAULT
    best, best_f1 = C_DEFAULT, -1.0
    for c in C_GRID:
        f1s = []
        for v in train:
            rest = [n for n in train if n != v]
            head = fit_head([f for n in rest for f in feats[n]] + xe, [y for n in rest for y in labels[n]] + ye,
                            trained_on="cv", c=c)
            f1s.append(measure([head.score(f) for f in feats[v]], [bool(y) for y in labels[v]], head.threshold).f1)
        if statistics.mean(f1s) > best_f1:
            best, best_f1 = c, statistics.mean(f1s)
    return best


def fit_on(train: Sequence[str], feats: dict[str, list[list[float]]], labels: dict[str, list[int]],
           xe: list[list[float]], ye: list[int]) -> Head:
    c = choose_c(train, feats, labels, xe, ye)
    return fit_head([f for n in train for f in feats[n]] + xe, [y for n in train for y in labels[n]] + ye,
                    trained_on="+".join([*train, "exemplars"]), c=c)


def embedding(data: dict[str, list[Labelled]], write_head: bool, cache: Path | None) -> None:
    print("== embedding detector (all-MiniLM-L6-v2: opening + mean over sentences, lexical score -> "
          "logistic regression)")
    encoder = CachedEncoder(cache)
    embs = {n: embed([r.text for r in data[n]], encoder=encoder) for n in FILES}
    if encoder.encoded:
        print(f"  embedded {encoder.encoded} new texts (cache {cache}): {encoder.cpu:.1f} s process CPU")
    feats = {n: [features(e, r.text) for e, r in zip(embs[n], data[n], strict=True)] for n in FILES}
    labels = {n: [int(r.refusal) for r in data[n]] for n in FILES}
    xe, ye = exemplar_feats(encoder)

    def report(head: Head, name: str, held_out: list[str]) -> None:
        for te in held_out:
            scores = [head.score(f) for f in feats[te]]
            m = measure(scores, [bool(y) for y in labels[te]], head.threshold)
            ap = average_precision(scores, [bool(y) for y in labels[te]])
            goal = "meets goal" if m.precision >= 0.95 and m.recall >= 0.90 else "below goal"
            print(f"  {name:44s} C={head.c:<5g} -> {te:16s} {m}  AP {ap:.3f}  [{goal}]")

    report(fit_on([], feats, labels, xe, ye), "fit on written exemplars only", list(FILES))
    for tr in FILES:
        report(fit_on([tr], feats, labels, xe, ye), f"fit on {tr}+exemplars", [n for n in FILES if n != tr])
    for te in FILES:
        trs = [n for n in FILES if n != te]
        report(fit_on(trs, feats, labels, xe, ye), f"fit on {'+'.join(trs)}+exemplars", [te])
    if write_head:
        fit_on(SHIPPED_TRAIN, feats, labels, xe, ye).dump(HEAD_PATH)
        print(f"  wrote {HEAD_PATH.relative_to(ROOT)}")
    shipped = Head.load()
    held = [n for n in FILES if n not in shipped.trained_on.split("+")]
    report(shipped, f"SHIPPED head ({shipped.trained_on})", held)
    cost(data)


def second_encoder(data: dict[str, list[Labelled]], model_dir: Path, cache: Path | None) -> None:
    """Experiment (not shipped): the same head over [MiniLM features, a second sentence-transformers model's opening
    + mean-over-sentences embeddings] and over the second model's alone, every file held out in turn."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device="cpu")

    def enc2(texts: Sequence[str]) -> list[list[float]]:
        vecs = model.encode(list(texts), batch_size=32, normalize_embeddings=True, show_progress_bar=False)
        return [list(map(float, v)) for v in vecs]

    name = model_dir.name
    mini = CachedEncoder(cache)
    other = CachedEncoder(None if cache is None else cache.with_name(f"codeblue-refusal-{name}.pkl"), enc2)
    texts = {n: [r.text for r in data[n]] for n in FILES}
    ex_texts = list(EX_REFUSALS) + list(EX_COMPLIANCE)
    ye = [1] * len(EX_REFUSALS) + [0] * len(EX_COMPLIANCE)
    labels = {n: [int(r.refusal) for r in data[n]] for n in FILES}
    m1 = {n: embed(texts[n], encoder=mini) for n in FILES}
    m2 = {n: embed(texts[n], encoder=other) for n in FILES}
    e1, e2 = embed(ex_texts, encoder=mini), embed(ex_texts, encoder=other)
    lex = {n: [refusal_score(t) for t in texts[n]] for n in FILES}
    lex_e = [refusal_score(t) for t in ex_texts]
    variants = {
        f"{name}": ({n: [[*b, x] for b, x in zip(m2[n], lex[n], strict=True)] for n in FILES},
                    [[*b, x] for b, x in zip(e2, lex_e, strict=True)]),
        f"MiniLM+{name}": ({n: [[*a, *b, x] for a, b, x in zip(m1[n], m2[n], lex[n], strict=True)] for n in FILES},
                           [[*a, *b, x] for a, b, x in zip(e1, e2, lex_e, strict=True)]),
    }
    for vname, (feats, xe) in variants.items():
        print(f"== experiment: {vname} (opening + mean over sentences, lexical score -> logistic regression)")
        for te in FILES:
            trs = [n for n in FILES if n != te]
            head = fit_on(trs, feats, labels, xe, ye)
            scores = [head.score(f) for f in feats[te]]
            m = measure(scores, [bool(y) for y in labels[te]], head.threshold)
            ap = average_precision(scores, [bool(y) for y in labels[te]])
            goal = "meets goal" if m.precision >= 0.95 and m.recall >= 0.90 else "below goal"
            print(f"  {'fit on ' + '+'.join(trs) + '+exemplars':44s} C={head.c:<5g} -> {te:16s} {m}  AP {ap:.3f}  [{goal}]")
    import torch

    torch.set_num_threads(1)
    batch = [r.text for n in FILES for r in data[n][:20]]
    for label, fn in (("MiniLM", encode), (name, enc2)):
        fn(["warm-up"])
        c0 = time.process_time()
        embed(batch, encoder=fn)
        c = time.process_time() - c0
        print(f"  cost {label}: {c / len(batch) * 1e3:.0f} ms process CPU per answer (one torch thread, one batch "
              f"of {len(batch)} answers, opening + sentences); load average {os.getloadavg()[0]:.1f}")


def prompts(name: str) -> dict[str, tuple[str, str]]:
    """The prompt and prompt type of each row of one XSTest file, by id (used by the --with-prompt experiment only)."""
    import csv

    with open(DATA / f"xstest_v2_completions_{name}.csv", newline="", encoding="utf-8") as f:
        return {row["id"]: (row["prompt"], row["type"]) for row in csv.DictReader(f)}


def fp_at_recall(scores: Sequence[float], labels: Sequence[bool], recall: float = 0.90) -> int:
    """False positives at the highest threshold where recall first reaches `recall`."""
    n_pos = sum(labels)
    tp = fp = 0
    for _, y in sorted(zip(scores, labels, strict=True), key=lambda p: (-p[0], p[1])):
        if y:
            tp += 1
            if tp >= recall * n_pos:
                return fp
        else:
            fp += 1
    return fp


def with_prompt(data: dict[str, list[Labelled]], mode: str, cache: Path | None) -> None:
    """Experiment (not shipped): read the question with the answer. Relational MiniLM features of (prompt, answer)
    are added to the shipped design's features: cos(prompt, opening), max / mean over the answer's segments of
    cos(prompt, segment), cos(prompt, mean of segments), and per segment gap = cos(prompt, segment) -
    cos(segment, refusal-exemplar centroid) as mean, max and fraction > 0 (no feature of the prompt alone: a
    "harmful question" feature would learn the dev files' habit of refusing every unsafe prompt); and, as another variant, the
    opening and mean embeddings projected off the prompt embedding. The written exemplars have no prompt: their
    relational features are set to the training files' mean (zero after standardisation) and their embeddings
    are not projected. A stacked variant fits a small head over [out-of-fold score of the shipped design,
    relational features] on the training files.

    mode "dev": gpt4 <-> llama2new only (mistralinstruct is not loaded); mode "rotation": every file held out."""
    import numpy as np

    files = ("gpt4", "llama2new") if mode == "dev" else FILES
    enc = CachedEncoder(cache)
    texts = {n: [r.text for r in data[n]] for n in files}
    labels = {n: [int(r.refusal) for r in data[n]] for n in files}
    ps, kinds = {}, {}
    for n in files:
        by_id = prompts(n)
        ps[n] = [by_id[r.id][0] for r in data[n]]
        kinds[n] = [by_id[r.id][1] for r in data[n]]
    ex_texts = list(EX_REFUSALS) + list(EX_COMPLIANCE)
    ye = [1] * len(EX_REFUSALS) + [0] * len(EX_COMPLIANCE)
    e_ex = np.asarray(embed(ex_texts, encoder=enc))
    rc = e_ex[: len(EX_REFUSALS), :384].mean(axis=0)
    rc = rc / np.linalg.norm(rc)
    lex_e = [refusal_score(t) for t in ex_texts]

    def unit(v: Any) -> Any:
        return v / (np.linalg.norm(v) + 1e-12)

    base: dict[str, Any] = {}
    rel: dict[str, Any] = {}
    proj: dict[str, Any] = {}
    for n in files:
        emb = np.asarray(embed(texts[n], encoder=enc))
        pv = np.asarray(enc(ps[n]))
        lex = np.asarray([refusal_score(t) for t in texts[n]])
        base[n] = np.hstack([emb, lex[:, None]])
        rows, prow = [], []
        for i, t in enumerate(texts[n]):
            p, o, m = pv[i], emb[i, :384], unit(emb[i, 384:])
            sv = np.asarray(enc(segments(t)))
            cs = sv @ p
            po = float(o @ p)
            gap = cs - sv @ rc  # per segment: closer to the question, or to a refusal?
            rows.append([po, float(cs.max()), float(cs.mean()), float(m @ p), float(gap.mean()), float(gap.max()),
                         float((gap > 0).mean())])
            prow.append([*(o - po * p), *(m - float(m @ p) * p), lex[i]])
        rel[n] = np.asarray(rows)
        proj[n] = np.asarray(prow)
    xb_e = np.hstack([e_ex, np.asarray(lex_e)[:, None]])
    cc = unit(e_ex[len(EX_REFUSALS):, :384].mean(axis=0))

    def centroid_gaps(e: Any) -> Any:
        """Answer-only: cos(opening, refusal centroid) - cos(opening, compliance centroid), same for the mean."""
        o, m = e[:, :384], e[:, 384:] / np.linalg.norm(e[:, 384:], axis=1, keepdims=True)
        return np.stack([o @ rc - o @ cc, m @ rc - m @ cc], axis=1)

    gaps = {n: centroid_gaps(base[n][:, :-1]) for n in files}
    gaps_e = centroid_gaps(e_ex)

    def stackx(tr: Sequence[str], feats: dict[str, Any], xe: Any) -> tuple[Any, Any]:
        x = np.vstack([feats[n] for n in tr] + ([xe] if xe is not None else []))
        y = np.asarray([y for n in tr for y in labels[n]] + (ye if xe is not None else []))
        return x, y

    def rel_e(tr: Sequence[str]) -> Any:
        mu = np.vstack([rel[n] for n in tr]).mean(axis=0)
        return np.tile(mu, (len(ex_texts), 1))

    def variant(name: str, tr: Sequence[str]) -> tuple[Any, Any, dict[str, Any]]:
        """(train x, train y, {file: x}) for one variant."""
        if name == "shipped design":
            feats, xe = base, xb_e
        elif name == "+ relational":
            feats = {n: np.hstack([base[n], rel[n]]) for n in files}
            xe = np.hstack([xb_e, rel_e(tr)])
        elif name == "+ relational, no exemplars":
            feats, xe = {n: np.hstack([base[n], rel[n]]) for n in files}, None
        elif name == "projected off prompt + relational":
            feats = {n: np.hstack([proj[n], rel[n]]) for n in files}
            xe = np.hstack([xb_e, rel_e(tr)])
        elif name == "compact: relational + centroid gaps":
            feats = {n: np.hstack([rel[n], gaps[n], base[n][:, -1:]]) for n in files}
            xe = np.hstack([rel_e(tr), gaps_e, xb_e[:, -1:]])
        elif name == "relational only (+ lexical)":
            feats = {n: np.hstack([rel[n], base[n][:, -1:]]) for n in files}
            xe = None
        else:
            raise ValueError(name)
        x, y = stackx(tr, feats, xe)
        return x, y, feats

    def fit(x: Any, y: Any, c: float, tag: str) -> Head:
        return fit_head(x.tolist(), y.astype(int).tolist(), trained_on=tag, c=c)

    def cv_c(name: str, tr: Sequence[str]) -> float:
        """C by leave-one-file-out (two training files) or 5-fold CV inside the file (one), mean F1."""
        best, best_f1 = C_DEFAULT, -1.0
        for c in C_GRID:
            f1s = []
            if len(tr) >= 2:
                for v in tr:
                    rest = [n for n in tr if n != v]
                    x, y, feats = variant(name, rest)
                    h = fit(x, y, c, "cv")
                    f1s.append(measure([h.score(f) for f in feats[v].tolist()], [bool(t) for t in labels[v]],
                                       0.5).f1)
            else:
                x, y, feats = variant(name, tr)
                nf = len(labels[tr[0]])
                folds = np.arange(nf) % 5
                for k in range(5):
                    keep = np.concatenate([folds != k, np.ones(len(y) - nf, dtype=bool)])
                    h = fit(x[keep], y[keep], c, "cv")
                    sc = [h.score(f) for f in x[:nf][folds == k].tolist()]
                    f1s.append(measure(sc, [bool(t) for t in y[:nf][folds == k]], 0.5).f1)
            if statistics.mean(f1s) > best_f1:
                best, best_f1 = c, statistics.mean(f1s)
        return best

    def line(name: str, tr: Sequence[str], te: str, scores: Sequence[float], c: float) -> None:
        lab = [bool(t) for t in labels[te]]
        m = measure(scores, lab, 0.5)
        ap = average_precision(scores, lab)
        goal = "meets goal" if m.precision >= 0.95 and m.recall >= 0.90 else "below goal"
        safe = ""
        if mode == "dev":  # ranking among answers to the safe prompts only, where the dev files' hard cases are
            idx = [i for i, t in enumerate(kinds[te]) if not t.startswith("contrast")]
            safe = f"  AP(safe prompts) {average_precision([scores[i] for i in idx], [lab[i] for i in idx]):.3f}"
        print(f"  {name:36s} {'+'.join(tr):26s} C={c:<5g} -> {te:16s} {m}  AP {ap:.3f}  fp@R.9 "
              f"{fp_at_recall(scores, lab)}{safe}  [{goal}]")

    def oof_base(tr: Sequence[str], c: float) -> Any:
        """Out-of-fold scores of the shipped design on the training files (5 folds inside each file)."""
        out = []
        for n in tr:
            nf = len(labels[n])
            folds = np.arange(nf) % 5
            sc = np.zeros(nf)
            for k in range(5):
                x = np.vstack([base[n][folds != k]] + [base[o] for o in tr if o != n] + [xb_e])
                y = np.asarray([labels[n][i] for i in range(nf) if folds[i] != k]
                               + [t for o in tr if o != n for t in labels[o]] + ye)
                h = fit(x, y, c, "oof")
                sc[folds == k] = [h.score(f) for f in base[n][folds == k].tolist()]
            out.append(sc)
        return np.concatenate(out)

    def logit(s: Any) -> Any:
        s = np.clip(np.asarray(s, dtype=np.float64), 1e-6, 1 - 1e-6)
        return np.log(s / (1 - s))

    names = ["shipped design", "+ relational", "+ relational, no exemplars", "projected off prompt + relational",
             "compact: relational + centroid gaps", "relational only (+ lexical)"]
    splits = ([(["gpt4"], "llama2new"), (["llama2new"], "gpt4")] if mode == "dev"
              else [([n for n in FILES if n != te], te) for te in FILES])
    if mode == "rotation":  # only the candidate chosen on the dev pair (and the shipped design for reference)
        names = ["shipped design", "+ relational"]
    print(f"== experiment --with-prompt {mode}: (prompt, answer) features, MiniLM")
    for tr, te in splits:
        for name in names:
            c = cv_c(name, tr)
            x, y, feats = variant(name, tr)
            h = fit(x, y, c, name)
            line(name, tr, te, [h.score(f) for f in feats[te].tolist()], c)
        if mode == "rotation":
            continue
        # stacked: out-of-fold shipped-design score + relational features, fitted on the training files
        c0 = cv_c("shipped design", tr)
        xs = np.hstack([logit(oof_base(tr, c0))[:, None], np.vstack([rel[n] for n in tr])])
        ys = np.asarray([t for n in tr for t in labels[n]])
        x, y, _ = variant("shipped design", tr)
        hb = fit(x, y, c0, "base")
        xt = np.hstack([logit([hb.score(f) for f in base[te].tolist()])[:, None], rel[te]])
        for c in (0.1, 1.0):
            hs = fit(xs, ys, c, "stack")
            line("stacked (base score + relational)", tr, te, [hs.score(f) for f in xt.tolist()], c)
    if enc.encoded:
        print(f"  embedded {enc.encoded} new texts: {enc.cpu:.1f} s process CPU")


def cost(data: dict[str, list[Labelled]]) -> None:
    """Embedding cost without the cache: a batch of answers, then single answers (wall and process CPU)."""
    det = EmbeddingRefusalDetector()
    det.score("warm-up: load the model")
    batch = [r.text for n in FILES for r in data[n][:40]]
    w0, c0 = time.perf_counter(), time.process_time()
    det.scores(batch)
    w, c = time.perf_counter() - w0, time.process_time() - c0
    n_segs = sum(len(segments(t)) for t in batch)
    print(f"  cost: {w / len(batch) * 1e3:.1f} ms wall, {c / len(batch) * 1e3:.1f} ms process CPU per answer "
          f"in one batch of {len(batch)} answers ({n_segs / len(batch):.1f} sentences each on average)")
    lat, cpu = [], []
    for t in [r.text for r in data["gpt4"][:30]]:
        w0, c0 = time.perf_counter(), time.process_time()
        det.score(t)
        lat.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    print(f"  cost: {statistics.median(lat) * 1e3:.1f} ms wall, {statistics.median(cpu) * 1e3:.1f} ms process CPU "
          f"median per single answer (unbatched, 30 answers); load average {os.getloadavg()[0]:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--write-head", action="store_true", help="re-train the shipped head and write it")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "codeblue-refusal-minilm.pkl",
                    help="on-disk cache of MiniLM vectors (default: %(default)s)")
    ap.add_argument("--no-cache", action="store_true", help="embed everything again")
    ap.add_argument("--second-encoder", type=Path, metavar="DIR",
                    help="experiment: also evaluate a second sentence-transformers model from a local directory")
    ap.add_argument("--with-prompt", choices=("dev", "rotation"),
                    help="experiment: (prompt, answer) features; 'dev' = gpt4 <-> llama2new only, "
                         "'rotation' = every file held out")
    args = ap.parse_args()
    if args.with_prompt is not None:
        if not embeddings_available():
            sys.exit("--with-prompt needs the embeddings extra")
        files = FILES if args.with_prompt == "rotation" else ("gpt4", "llama2new")
        with_prompt({n: load_xstest(DATA / f"xstest_v2_completions_{n}.csv") for n in files}, args.with_prompt,
                    None if args.no_cache else args.cache)
        return
    data = load()
    for n in FILES:
        pos = sum(r.refusal for r in data[n])
        print(f"{n}: {pos} full refusals, {len(data[n]) - pos} full compliance")
    lexical(data)
    if embeddings_available():
        embedding(data, args.write_head, None if args.no_cache else args.cache)
        if args.second_encoder is not None:
            second_encoder(data, args.second_encoder, None if args.no_cache else args.cache)
    else:
        print("== embedding detector: skipped (pip install 'codeblue[embeddings]')")


if __name__ == "__main__":
    main()
