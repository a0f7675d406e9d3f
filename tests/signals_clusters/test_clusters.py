"""Complaint clusters: themes per workflow, burst signals against each cluster's own baseline, bounded memory."""

from __future__ import annotations

import math
import random

import pytest

from codeblue.signals.clusters import ComplaintClusterer, content_terms, poisson_sf

T0 = 1_764_000_000.0
HOUR = 3600.0

WRONG_ACCOUNT = [
    "My refund was sent to the wrong account",
    "refund went into someone else's account!",
    "The bot paid my refund to a different account",
    "why did my refund go to another person's bank account",
    "refund credited to wrong bank account again",
    "Refunds are landing in the wrong accounts",
    "my refund ended up in a stranger's account",
    "it sent the refund to an account that is not mine",
]
LOAN_REFUSALS = [
    "It keeps refusing to answer questions about my loan repayment",
    "won't tell me anything about loan repayments, just says it can't help",
    "refuses every question about repaying my loan",
    "loan repayment advice is blocked, it just refuses",
    "asked about my loan repayment plan and it refused",
    "cannot get any answer on loan repayment dates, it refuses",
]
GENERIC = [
    "this is bad", "not helpful", "useless bot", "terrible answer", "wrong answer!!", "this doesn't work",
    "worst experience ever", "so frustrating", "Really bad.", "not good at all", "it's broken", "hate this",
]
UNRELATED = [
    "the font is too small on mobile", "I was charged twice for my subscription", "the page takes forever to load",
    "dark mode is missing", "password reset email never arrived", "the map shows the wrong city",
    "notifications arrive in the middle of the night", "can't upload a PDF receipt", "the logo looks blurry",
    "the French translation has typos", "the calendar export skips weekends", "my avatar disappeared",
    "checkout button hidden behind the cookie banner", "search ignores accents in names",
    "voice input stops after five seconds", "the invoice total rounds incorrectly",
]


def test_poisson_tail() -> None:
    assert poisson_sf(0, 3.0) == 1.0
    assert poisson_sf(1, 1.0) == pytest.approx(1 - math.exp(-1))
    assert poisson_sf(10, 1.0) == pytest.approx(1.1142547833e-07, rel=1e-6)
    assert poisson_sf(3, 5.0) == pytest.approx(1 - math.exp(-5) * (1 + 5 + 12.5))
    assert 0.0 < poisson_sf(150, 1.0) < 1e-250  # the far tail stays representable
    assert poisson_sf(5, 0.0) == 0.0


def test_generic_words_are_not_content() -> None:
    for text in GENERIC:
        assert content_terms(text) == [], text
    assert "refund" in content_terms("Refunds are landing in the wrong accounts")


def test_two_unrelated_themes_on_one_workflow_form_two_clusters() -> None:
    cc = ComplaintClusterer()
    ids_a = {cc.add("refund-desk", t, T0 + i) for i, t in enumerate(WRONG_ACCOUNT)}
    ids_b = {cc.add("refund-desk", t, T0 + 100 + i) for i, t in enumerate(LOAN_REFUSALS)}
    assert len(ids_a) == 1 and len(ids_b) == 1 and ids_a != ids_b
    (a,) = ids_a
    infos = {c.cluster_id: c for c in cc.clusters("refund-desk")}
    assert infos[a].size == len(WRONG_ACCOUNT)
    assert {"refund", "account"} <= set(infos[a].terms)
    # the same texts on another workflow are another workflow's clusters
    other = cc.add("billing", WRONG_ACCOUNT[0], T0)
    assert other.startswith("billing/") and other not in ids_a


def test_a_burst_of_one_theme_signals_with_representatives() -> None:
    rnd = random.Random(7)
    cc = ComplaintClusterer(window=900, min_count=5)
    # two days of background: unrelated complaints, generic ones, and the theme itself now and then
    t = T0
    while t < T0 + 48 * HOUR:
        cc.add("refund-desk", rnd.choice(UNRELATED + GENERIC), t)
        if rnd.random() < 0.1:
            cc.add("refund-desk", rnd.choice(WRONG_ACCOUNT), t + 1)
        t += 600
    assert cc.signals(t) == []
    burst_start = t
    for i in range(12):
        cid = cc.add("refund-desk", WRONG_ACCOUNT[i % len(WRONG_ACCOUNT)], burst_start + 60 * i)
    now = burst_start + 12 * 60
    sigs = cc.signals(now)
    assert [s.cluster_id for s in sigs] == [cid]
    s = sigs[0]
    assert s.workflow == "refund-desk"
    assert s.count_recent == 12
    assert s.p_value < 1e-6 and s.score > 10
    assert s.baseline_rate < 1.0
    assert len(s.representatives) == 3 and all(r in WRONG_ACCOUNT for r in s.representatives)
    assert s.first_seen < burst_start  # the theme existed before the burst
    assert s.as_dict()["cluster_id"] == cid
    # an hour later, the burst has left the window
    assert cc.signals(now + HOUR) == []


def test_a_burst_of_generic_or_unrelated_complaints_does_not_signal() -> None:
    cc = ComplaintClusterer(window=900, min_count=5)
    for i in range(60):  # 60 generic complaints in ten minutes
        assert cc.add("chat", GENERIC[i % len(GENERIC)], T0 + 10 * i) == "chat/generic"
    assert cc.generic_count("chat") == 60
    for i, text in enumerate(UNRELATED):  # sixteen unrelated complaints in the same minutes
        cc.add("chat", text, T0 + 10 * i + 5)
    assert cc.signals(T0 + 600) == []
    assert len(cc.clusters("chat")) == len(UNRELATED)


def test_a_theme_at_its_usual_high_rate_does_not_signal_but_a_jump_does() -> None:
    cc = ComplaintClusterer(window=900, min_count=5)
    t = T0
    for i in range(int(24 * HOUR / 120)):  # one complaint every two minutes for a day: 7.5 per window
        cid = cc.add("refund-desk", LOAN_REFUSALS[i % len(LOAN_REFUSALS)], t)
        t += 120
    assert cc.signals(t) == []
    for i in range(60):  # then 60 in fifteen minutes
        cc.add("refund-desk", LOAN_REFUSALS[i % len(LOAN_REFUSALS)], t + 15 * i)
    sigs = cc.signals(t + 900)
    assert [s.cluster_id for s in sigs] == [cid]
    assert 5 < sigs[0].baseline_rate < 12


def test_memory_is_bounded_and_stale_clusters_are_evicted() -> None:
    cc = ComplaintClusterer(max_clusters=20, horizon=2 * HOUR, window=600)
    rnd = random.Random(3)
    words = [f"thing{n}" for n in range(400)]
    for i in range(500):
        text = " ".join(rnd.sample(words, 3)) + f" widget{i}"
        cc.add("w", text, T0 + i)
    assert len(cc.clusters("w")) <= 20
    assert cc.cluster_count <= 20
    cc.add("w", WRONG_ACCOUNT[0], T0 + 600)
    cc.signals(T0 + 600 + 3 * HOUR)  # everything is older than the horizon
    assert cc.cluster_count == 0 and cc.clusters("w") == []


def test_bad_input_is_a_clear_error() -> None:
    cc = ComplaintClusterer()
    with pytest.raises(ValueError, match="workflow"):
        cc.add("", "text", T0)
    with pytest.raises(ValueError, match="time"):
        cc.add("w", "text", float("nan"))
    with pytest.raises(ValueError, match="embedder"):
        ComplaintClusterer(embedder="minilm")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="horizon"):
        ComplaintClusterer(window=100, horizon=50)


def test_embedding_clusterer_separates_themes() -> None:
    from codeblue.sdk.refusal import embeddings_available

    if not embeddings_available():
        pytest.skip("needs pip install 'codeblue[embeddings]'")
    cc = ComplaintClusterer(embedder="auto")
    assert cc.method == "embedding"
    past = T0 - 2 * 86400  # both themes seen two days ago; only one bursts now
    ids_a = {cc.add("refund-desk", t, past + i) for i, t in enumerate(WRONG_ACCOUNT)}
    ids_b = {cc.add("refund-desk", t, past + 100 + i) for i, t in enumerate(LOAN_REFUSALS)}
    assert len(ids_a) == 1 and len(ids_b) == 1 and ids_a != ids_b
    for text in GENERIC:
        assert cc.add("refund-desk", text, T0 + 200) == "refund-desk/generic"
    for i in range(8):
        cc.add("refund-desk", WRONG_ACCOUNT[i], T0 + 300 + i)
    sigs = cc.signals(T0 + 400)
    assert [s.cluster_id for s in sigs] == list(ids_a)
