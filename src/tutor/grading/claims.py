"""Which unit of an answer states, contradicts or holds which rubric item: a model of the writers' sentence
annotations.

The embedding grader decides "this unit makes key point k" with fixed rules: cosine above a cut-off, and a
polarity heuristic (negation scope, antonym pairs) to refuse a unit that says the opposite. Both are
weakest exactly where an examiner is strictest: a negated key point has nearly the same embedding as the
point ("the rare tails do not disappear"), and a sentence can sit close to a misconception while saying
something else. Every answer in the writer batches names, per quoted span, the key points it states or
contradicts and the misconceptions it holds (evals/writers/README.md). This module learns from those
annotations, per (unit, rubric item) pair, P(neither), P(asserts: states the key point / holds the
misconception), P(denies: contradicts the key point), from measurements of the pair that the rules use too
(similarities, margins over the other items, negation cues and their scope, antonyms) but weighs them by
data instead of by hand. Its answer-level summary (`claim_signals`) is part of the learned verdict model's
features, and a confident "denies" names the contradicted key point in the feedback.

The model is small trees (`claims.onnx` beside the verdict model), trained by `tutor train`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tutor import text as T
from tutor.models import Question

if TYPE_CHECKING:  # pragma: no cover
    from tutor.grading.embedding import _Targets

CLASSES = ("neither", "asserts", "denies")
PAIR_FEATURES: tuple[str, ...] = (
    "item_kind",  # 0 required key point, 1 supporting key point, 2 misconception
    "cos",  # best cosine over the item's phrasings
    "hybrid",  # cosine + lexical bonus, as the grader matches
    "lex",  # distinctive-term overlap with the best phrasing
    "margin_all",  # cos minus the best cosine of any other item for this unit
    "margin_kp",  # cos minus the best cosine of any other key point
    "margin_mis",  # cos minus the best cosine of any other misconception (-1 if none)
    "is_best",  # the unit is closer to this item than to any other
    "contra_any",  # the polarity heuristic flags some phrasing as contradicted
    "contra_best",  # ... the best-matching phrasing
    "unit_negated",
    "item_negated",
    "neg_scope_hits",  # unit's negated terms the phrasing asserts, and the reverse
    "antonym",
    "order_flip",
    "shared_terms",  # content terms shared with the phrasing, not counting the question's
    "unit_words",
    "unit_is_clause",
    "unit_question_cos",
    "unit_reference_cos",
    "unit_best_item_cos",  # how on-rubric the unit is at all
)
# Answer-level summaries: what the verdict model reads (added to Grade.signals).
CLAIM_SIGNALS = (
    "claim_req_state",  # the weakest required point's best P(asserts)
    "claim_req_deny",  # the strongest P(denies) of a required point
    "claim_kp_deny",  # ... of any key point
    "claim_sup_state",  # mean over supporting points of their best P(asserts)
    "claim_mis_hold",  # the strongest P(asserts) of a misconception
    "claim_mis_sum",  # expected number of misconceptions held
)
# A unit whose P(denies) reaches this is reported as contradicting the key point. Chosen on writer-grouped
# out-of-fold predictions over the 1,996 training-batch answers (`tutor train` records them): at 0.6 a
# contradiction is named in 72 answers (60 labeled incorrect, 6 partial, 6 correct: 0.8% of the correct
# ones); at 0.5 in 129 (2.3% of the correct ones). Telling a right learner they said the opposite costs
# more than missing one more wrong answer.
DENY_REPORT = 0.6


def item_owners(q: Question) -> list[tuple[str, int]]:
    return [("kp", i) for i in range(len(q.key_points))] + [("mis", i) for i in range(len(q.misconceptions))]


def pair_features(
    q: Question,
    units: Sequence[T.Unit],
    pol: Sequence[T.Polarity],
    uvec: np.ndarray,
    tg: _Targets,
    cos: np.ndarray,
    lex: np.ndarray,
    contra: np.ndarray,
    lexical_weight: float,
) -> np.ndarray:
    """(units, items, PAIR_FEATURES) for every unit against every key point and misconception, in
    `item_owners` order. `cos`, `lex` and `contra` are the grader's (units, phrasings) matrices."""
    owners = item_owners(q)
    n_u, n_i = len(units), len(owners)
    cols = [[j for j, o in enumerate(tg.owner) if o == own] for own in owners]
    hyb = cos + lexical_weight * lex
    best_col = np.stack([np.asarray(c)[cos[:, c].argmax(axis=1)] for c in cols], axis=1)  # (u, items)
    c_item = np.take_along_axis(cos, best_col, axis=1)  # (u, items): each item's best cosine
    kinds = np.array(
        [(0 if q.key_points[i].role == "required" else 1) if kind == "kp" else 2 for kind, i in owners],
        dtype=np.float32,
    )
    is_kp = kinds < 2

    # The numeric columns for all units at once, one item at a time; a Python loop over (unit, item)
    # pairs cost most of the pair model's time per answer.
    def best_of_others(j: int, among: np.ndarray) -> np.ndarray | None:
        mask = among & (np.arange(n_i) != j)
        return c_item[:, mask].max(axis=1) if mask.any() else None

    col: dict[str, np.ndarray] = {name: np.zeros((n_u, n_i), np.float32) for name in PAIR_FEATURES}
    for j in range(n_i):
        mine = c_item[:, j]
        other = best_of_others(j, np.ones(n_i, bool))
        kp_other = best_of_others(j, is_kp)
        mis_other = best_of_others(j, ~is_kp)
        col["item_kind"][:, j] = kinds[j]
        col["cos"][:, j] = mine
        col["hybrid"][:, j] = hyb[:, cols[j]].max(axis=1)
        col["margin_all"][:, j] = mine - (other if other is not None else -1.0)
        col["margin_kp"][:, j] = mine - (kp_other if kp_other is not None else -1.0)
        col["margin_mis"][:, j] = mine - mis_other if mis_other is not None else -1.0
        col["contra_any"][:, j] = contra[:, cols[j]].any(axis=1)
    best_item = c_item.max(axis=1)
    col["lex"][:] = np.take_along_axis(lex, best_col, axis=1)
    col["is_best"][:] = c_item >= best_item[:, None]
    col["contra_best"][:] = np.take_along_axis(contra, best_col, axis=1)
    col["unit_negated"][:] = np.array([up.negated for up in pol], dtype=np.float32)[:, None]
    col["unit_words"][:] = np.log1p([len(u.text.split()) for u in units])[:, None]
    col["unit_is_clause"][:] = np.array([u.text != u.sentence for u in units], dtype=np.float32)[:, None]
    col["unit_question_cos"][:] = (uvec @ tg.question)[:, None]
    col["unit_reference_cos"][:] = (uvec @ tg.reference)[:, None]
    col["unit_best_item_cos"][:] = best_item[:, None]
    # What needs the texts' polarity: per pair, against the item's best-matching phrasing.
    for u, up in enumerate(pol):
        for j in range(n_i):
            tp = tg.polarity[int(best_col[u, j])]
            col["item_negated"][u, j] = tp.negated
            col["neg_scope_hits"][u, j] = len(up.negated_terms & (tp.terms - tp.negated_terms)) + len(
                tp.negated_terms & (up.terms - up.negated_terms)
            )
            col["antonym"][u, j] = T.antonym_clash(up, tp)
            col["order_flip"][u, j] = T.order_flip(up, tp)
            col["shared_terms"][u, j] = len((up.terms & tp.terms) - tg.question_terms)
    return np.stack([col[name] for name in PAIR_FEATURES], axis=-1)


def claim_signals(q: Question, probs: np.ndarray) -> dict[str, float]:
    """Answer-level summaries of (units, items, CLASSES) probabilities."""
    best = probs.max(axis=0)  # (items, classes): each item's strongest unit per class
    n_kp = len(q.key_points)
    req = [i for i, k in enumerate(q.key_points) if k.role == "required"]
    sup = [i for i, k in enumerate(q.key_points) if k.role != "required"]
    mis = best[n_kp:, 1]
    return {
        "claim_req_state": float(best[req, 1].min()) if req else 0.0,
        "claim_req_deny": float(best[req, 2].max()) if req else 0.0,
        "claim_kp_deny": float(best[:n_kp, 2].max()) if n_kp else 0.0,
        "claim_sup_state": float(best[sup, 1].mean()) if sup else 0.0,
        "claim_mis_hold": float(mis.max()) if len(mis) else 0.0,
        "claim_mis_sum": float(mis.sum()),
    }


def tree_session(path: Path) -> Any:
    """An onnxruntime session for a trees model (this pair model, the verdict model): a few hundred small
    trees, where threads cost more than they save."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class ClaimModel:
    """The pair classifier (ONNX trees, or any object with predict_proba in training)."""

    def __init__(self, predict: Any):
        self._predict = predict

    @classmethod
    def from_onnx(cls, path: Path) -> ClaimModel:
        session = tree_session(path)

        def predict(x: np.ndarray) -> np.ndarray:
            return np.asarray(session.run(["probabilities"], {"X": x.astype(np.float32)})[0], np.float64)

        return cls(predict)

    def probs(self, feats: np.ndarray) -> np.ndarray:
        """(units, items, F) -> (units, items, CLASSES)."""
        n_u, n_i, f = feats.shape
        if n_u * n_i == 0:
            return np.zeros((n_u, n_i, len(CLASSES)))
        return self._predict(feats.reshape(-1, f)).reshape(n_u, n_i, len(CLASSES))


# ------------------------------------------------------------------------------------------ labels

_WORD = re.compile(r"[a-z0-9]+")


def _tokens(s: str) -> set[str]:
    return set(_WORD.findall(s.lower()))


def pair_labels(q: Question, units: Sequence[T.Unit], annotations: Sequence[dict[str, Any]]) -> np.ndarray:
    """(units, items) class ids from a writer's annotations. A unit takes the labels of every annotated
    span it lies within or contains (by words, 80%): the grader pools over units, so a sentence pair that
    contains a stated point states it too."""
    owners = item_owners(q)
    kp_index = {k.id: i for i, k in enumerate(q.key_points)}
    mis_index = {m.id: len(q.key_points) + i for i, m in enumerate(q.misconceptions)}
    y = np.zeros((len(units), len(owners)), np.int64)
    spans = [(_tokens(a["quote"]), a) for a in annotations]
    for u, unit in enumerate(units):
        ut = _tokens(unit.text)
        if not ut:
            continue
        for qt, a in spans:
            if not qt:
                continue
            shared = len(ut & qt)
            if shared < 0.8 * len(ut) and shared < 0.8 * len(qt):
                continue
            for kp in a.get("contradicts", []):
                if kp in kp_index and y[u, kp_index[kp]] == 0:
                    y[u, kp_index[kp]] = 2
            for kp in a.get("states", []):
                if kp in kp_index:
                    y[u, kp_index[kp]] = 1
            for m in a.get("holds", []):
                if m in mis_index:
                    y[u, mis_index[m]] = 1
    return y
