"""What the learned verdict model reads, defined once for training and for grading so the two cannot drift.

Three kinds of evidence about one answer:
- the embedding grader's measurements (``Grade.signals``: key-point coverage, similarities, misconceptions,
  the numeric check) and its flags;
- the pair model's summary of which sentence states, contradicts or holds which rubric item
  (``tutor.grading.claims``, ``CLAIM_SIGNALS``);
- labeled answers to the same question (*exemplars*): how close the answer is to the nearest correct,
  partial and incorrect answers written by other people. The rubric itself always adds a few: its
  reference explanation is a correct answer, each phrasing of a misconception an incorrect one. So a
  question with no labeled answers (a rubric a user adds) still has exemplars; training sees every row
  a second time with the rubric's exemplars alone, so the model knows that case too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tutor.grading.claims import CLAIM_SIGNALS
from tutor.models import VERDICTS, Grade

SIGNALS = (
    "coverage",
    "credit_min",
    "credit_required",
    "kp_sim_mean",
    "ref_sim",
    "mis_margin",
    "misconceptions",
    "contradictions",
    "words",
    "numeric_right",
    "numeric_wrong",
    "numeric_missing",
    "mis_number",
    "mis_share",
    "mis_sim",
    "kp_sim_max",
)
FLAGS = ("not_english", "grader_instruction", "keyword_salad", "copied_question", "truncated")
EXEMPLAR = (
    *(f"ex_max_{v}" for v in VERDICTS),
    *(f"ex_top3_{v}" for v in VERDICTS),
    *(f"ex_p_{v}" for v in VERDICTS),
    "ex_mean_label",
    "ex_log_n",
)
FEATURES: tuple[str, ...] = (
    *SIGNALS,
    "is_numeric",
    "emb_score",
    "emb_verdict",
    "answer_ref_cos",
    "answer_question_cos",
    *(f"flag_{f}" for f in FLAGS),
    *EXEMPLAR,
    *CLAIM_SIGNALS,
)
# Neighbours vote with weights exp(cos / T): sharp enough that a near-duplicate outvotes ten loose matches.
EXEMPLAR_TEMPERATURE = 0.05


@dataclass(frozen=True)
class Exemplars:
    """Labeled answers as whole-answer embeddings (L2-normalised rows), with label (0 incorrect, 1 partial,
    2 correct), question id and writer group per row."""

    vecs: np.ndarray
    labels: np.ndarray
    qids: np.ndarray
    groups: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def select(self, qid: str, exclude_group: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The exemplars of one question; in training, without the row's own writer (a learner's answer is
        never graded against answers by the same writer, so training must not see that either)."""
        mask = self.qids == qid
        if exclude_group is not None:
            mask &= self.groups != exclude_group
        return self.vecs[mask], self.labels[mask]

    def questions(self) -> set[str]:
        return set(self.qids.tolist())


def exemplar_features(vec: np.ndarray, ex_vecs: np.ndarray, ex_labels: np.ndarray) -> list[float]:
    if len(ex_labels) == 0:
        return [float("nan")] * len(EXEMPLAR)
    sims = ex_vecs.astype(np.float32) @ vec.astype(np.float32)
    maxes, top3 = [], []
    for c in range(len(VERDICTS)):
        s = np.sort(sims[ex_labels == c])[::-1]
        maxes.append(float(s[0]) if len(s) else float("nan"))
        top3.append(float(s[:3].mean()) if len(s) else float("nan"))
    w = np.exp((sims - sims.max()) / EXEMPLAR_TEMPERATURE)
    w /= w.sum()
    p = np.bincount(ex_labels.astype(np.int64), weights=w, minlength=len(VERDICTS))
    return [*maxes, *top3, *map(float, p), float((w * ex_labels).sum()), float(np.log1p(len(ex_labels)))]


def feature_row(
    grade: Grade,
    answer_vec: np.ndarray,
    reference_vec: np.ndarray,
    question_vec: np.ndarray,
    is_numeric: bool,
    exemplars: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
    """One answer's features, in FEATURES order (float32; NaN = not available)."""
    s = grade.signals
    row = [float(s.get(k, 0.0)) for k in SIGNALS]
    row += [
        float(is_numeric),
        grade.score,
        float(VERDICTS.index(grade.verdict)),
        float(answer_vec @ reference_vec),
        float(answer_vec @ question_vec),
    ]
    row += [float(f in grade.flags) for f in FLAGS]
    row += exemplar_features(answer_vec, *exemplars)
    row += [float(s.get(k, float("nan"))) for k in CLAIM_SIGNALS]
    assert len(row) == len(FEATURES)
    return np.asarray(row, dtype=np.float32)


def rubric_exemplars(
    reference_vec: np.ndarray, misconception_vecs: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The rubric's own labeled answers: the reference is correct, every misconception phrasing incorrect."""
    vecs = (
        np.vstack([reference_vec[None, :], misconception_vecs])
        if len(misconception_vecs)
        else reference_vec[None, :]
    )
    labels = np.array([VERDICTS.index("correct")] + [VERDICTS.index("incorrect")] * len(misconception_vecs))
    return vecs.astype(np.float32), labels


def merge(*parts: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    vecs = [v for v, lab in parts if len(lab)]
    labels = [lab for _, lab in parts if len(lab)]
    if not labels:
        return np.zeros((0, 1), np.float32), np.zeros(0, np.int64)
    return np.vstack(vecs), np.concatenate(labels)


def feature_names() -> Sequence[str]:
    return FEATURES
