"""The grading entry point the CLI, study sessions, evals and the judge use. The code is in ``tutor.grading``."""

from tutor.grading import GRADERS, Grader, get_grader, grader_kind, make_grader
from tutor.grading.embedding import (
    EmbeddingGrader,
    InconsistentRule,
    Thresholds,
    feedback_text,
    load_thresholds,
)

__all__ = [
    "GRADERS",
    "EmbeddingGrader",
    "Grader",
    "InconsistentRule",
    "Thresholds",
    "feedback_text",
    "get_grader",
    "grader_kind",
    "load_thresholds",
    "make_grader",
]
