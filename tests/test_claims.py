"""The pair model (tutor.grading.claims): labels from annotations, its summaries, and what a learner sees."""

from __future__ import annotations

import numpy as np
import pytest

from tutor import text as T
from tutor.grading.claims import CLAIM_SIGNALS, CLASSES, PAIR_FEATURES, ClaimModel, claim_signals, pair_labels
from tutor.grading.embedding import EmbeddingGrader
from tutor.grading.learned import LearnedModel


def _units(text: str) -> list[T.Unit]:
    return T.answer_units(text)


def test_units_take_the_labels_of_the_spans_they_lie_in_or_contain(bank):
    q = bank.get(
        "ch13-1"
    )  # key points: exponent_width, dynamic_range, ...; misconceptions: more_mantissa, ...
    answer = "bf16 keeps the 8-bit exponent of fp32. It has more mantissa bits than fp16. Pizza is nice."
    units = _units(answer)
    y = pair_labels(
        q,
        units,
        [
            {"quote": "keeps the 8-bit exponent of fp32", "states": ["exponent_width"], "contradicts": []},
            {"quote": "It has more mantissa bits than fp16", "holds": ["more_mantissa"]},
            {"quote": "It has more mantissa bits", "contradicts": ["dynamic_range"]},
        ],
    )
    by_text = {u.text: row for u, row in zip(units, y, strict=True)}
    kp = {k.id: i for i, k in enumerate(q.key_points)}
    mis = {m.id: len(q.key_points) + i for i, m in enumerate(q.misconceptions)}
    first = by_text["bf16 keeps the 8-bit exponent of fp32."]
    assert first[kp["exponent_width"]] == 1 and first.sum() == 1
    second = by_text["It has more mantissa bits than fp16."]
    assert second[mis["more_mantissa"]] == 1 and second[kp["dynamic_range"]] == 2
    assert not by_text["Pizza is nice."].any()
    # A sentence pair containing the first span states the point too (the grader pools over units).
    pair = next(u for u in units if u.text.startswith("bf16 keeps") and "mantissa" in u.text)
    assert by_text[pair.text][kp["exponent_width"]] == 1


def test_claim_signals_summarise_the_strongest_unit_per_item(bank):
    q = bank.get("ch13-1")
    n_kp, n_mis = len(q.key_points), len(q.misconceptions)
    probs = np.zeros((2, n_kp + n_mis, len(CLASSES)))
    probs[..., 0] = 1.0
    probs[0, 0] = [0.1, 0.8, 0.1]  # unit 0 states the required point
    probs[1, 0] = [0.3, 0.1, 0.6]  # unit 1 denies it
    probs[1, n_kp] = [0.2, 0.7, 0.1]  # and holds the first misconception
    s = claim_signals(q, probs)
    assert set(s) == set(CLAIM_SIGNALS)
    assert s["claim_req_state"] == pytest.approx(0.8)
    assert s["claim_req_deny"] == pytest.approx(0.6) and s["claim_kp_deny"] == pytest.approx(0.6)
    assert s["claim_mis_hold"] == pytest.approx(0.7) and s["claim_mis_sum"] == pytest.approx(0.7)
    assert s["claim_sup_state"] == pytest.approx(0.0)


def _denies(item: int, n_items: int, p: float) -> ClaimModel:
    """A scripted pair model: every unit denies one rubric item with probability p, and nothing else."""

    def predict(x: np.ndarray) -> np.ndarray:
        out = np.tile([1.0, 0.0, 0.0], (len(x), 1))
        out[item::n_items] = [1 - p, 0.0, p]  # rows are (unit, item) pairs, items fastest
        return out

    return ClaimModel(predict)


def test_a_confident_denial_is_named_and_the_point_is_not_covered(bank):
    q = bank.get("ch19-3")
    answer = (
        "The rare tail events do not disappear; each generation keeps the full diversity of the real data."
    )
    k = next(i for i, kp in enumerate(q.key_points) if kp.id == "tails_lost")
    for p_deny, named in ((0.9, True), (0.2, False)):
        claims = _denies(k, len(q.key_points) + len(q.misconceptions), p_deny)
        g = EmbeddingGrader(claims=claims).grade(q, answer)
        ids = [m.id for m in g.misconceptions]
        assert ("contradicts:tails_lost" in ids) is named
        if named:
            assert "tails_lost" not in [c.id for c in g.covered]
            assert any(m.id == "tails_lost" and m.reason == "contradicted" for m in g.missed)
            assert g.signals["claim_kp_deny"] == pytest.approx(0.9)


def test_shipped_pair_model_loads_and_feeds_the_grade(grader, bank):
    model = LearnedModel.load()
    probs = model.claims.probs(np.zeros((2, 3, len(PAIR_FEATURES)), np.float32))
    assert probs.shape == (2, 3, len(CLASSES)) and np.allclose(probs.sum(axis=-1), 1.0, atol=1e-5)
    g = grader.grade(bank.get("ch13-1"), "bf16 keeps fp32's 8-bit exponent, so it has the same range.")
    assert set(CLAIM_SIGNALS) <= set(g.signals)
    # The embedding grader on its own has no pair model and no claim signals.
    alone = EmbeddingGrader().grade(bank.get("ch13-1"), "bf16 keeps fp32's 8-bit exponent.")
    assert not set(CLAIM_SIGNALS) & set(alone.signals)
