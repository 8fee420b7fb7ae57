"""Grading: from a learner's answer to a score, a verdict and feedback.

- ``rules`` live in ``tutor.text``: guards and text measurements (negation, numbers, keyword lists, ...).
- ``embedding``: the embedding grader. Matches the answer's sentences to the rubric's key points and
  misconceptions; needs no labeled answers, so it grades any rubric. It writes all feedback.
- ``claims``: a pair model trained on the writers' sentence annotations: which unit states, contradicts or
  holds which rubric item. It feeds the learned model and names contradicted points in the feedback.
- ``features`` / ``learned``: a model trained on labeled answers (``make train``, ``train``) that turns the
  embedding grader's measurements and the nearest labeled answers into the verdict and score.
- ``tutor.judge.fuse``: the optional LLM judge, fused with either grader.

``TUTOR_GRADER`` chooses the grader: ``learned`` (default) or ``embedding`` (no trained model involved).
"""

from __future__ import annotations

import os
import threading
from typing import Protocol

from tutor.models import Grade, Question
from tutor.paths import GraderUnavailable

GRADERS = ("learned", "embedding")


class Grader(Protocol):
    name: str

    def grade(self, question: Question, answer: str) -> Grade: ...


def grader_kind() -> str:
    kind = os.environ.get("TUTOR_GRADER", "learned").strip().lower() or "learned"
    if kind not in GRADERS:
        raise GraderUnavailable(
            f"TUTOR_GRADER={kind!r} is not a grader; use one of: {', '.join(GRADERS)} (or leave it unset)"
        )
    return kind


def make_grader(kind: str | None = None, embedder=None, thresholds=None):  # type: ignore[no-untyped-def]
    """A new grader of the given kind (default: TUTOR_GRADER). Loading the model is the slow part."""
    kind = kind or grader_kind()
    if kind == "embedding":
        from tutor.grading.embedding import EmbeddingGrader

        return EmbeddingGrader(embedder=embedder, thresholds=thresholds)
    from tutor.grading.learned import LearnedGrader

    return LearnedGrader(embedder=embedder, thresholds=thresholds)


_shared: dict[str, object] = {}
_shared_lock = threading.Lock()


def get_grader():  # type: ignore[no-untyped-def]
    """The process-wide grader of the configured kind (model and rubric embeddings are loaded once)."""
    kind = grader_kind()
    with _shared_lock:
        if kind not in _shared:
            _shared[kind] = make_grader(kind)
        return _shared[kind]
