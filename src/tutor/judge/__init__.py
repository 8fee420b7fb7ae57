"""An optional LLM judge that sharpens the embedding grade.

    from tutor.judge import grade_with_judge
    grade = grade_with_judge(question, answer, "local")          # or "openai:MODEL", "ollama:MODEL"

Every answer is judged twice with the reference and the answer in swapped positions (see `fuse.py` for
how disagreement is handled); replies are cached on disk; failures fall back to the embedding grade.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# Set to False (tests do) to make every real backend refuse to send a request. Tests that talk to a real
# local server turn it back on explicitly.
ALLOW_MODEL_REQUESTS = True

from tutor.judge.base import (  # noqa: E402
    Judge,
    JudgeError,
    JudgeRequest,
    JudgeSettings,
    JudgeSpecError,
    ModelRequestsDisabled,
    TransientJudgeError,
)
from tutor.judge.registry import resolve_judge, valid_forms  # noqa: E402

if TYPE_CHECKING:
    from tutor.judge.engine import JudgeEngine
    from tutor.judge.fuse import grade_with_judge

__all__ = [
    "ALLOW_MODEL_REQUESTS",
    "Judge",
    "JudgeEngine",
    "JudgeError",
    "JudgeRequest",
    "JudgeSettings",
    "JudgeSpecError",
    "ModelRequestsDisabled",
    "TransientJudgeError",
    "grade_with_judge",
    "resolve_judge",
    "valid_forms",
]


def __getattr__(name: str) -> Any:
    # The grading entry points import the embedding grader (and so torch); load them on first use.
    if name == "grade_with_judge":
        from tutor.judge.fuse import grade_with_judge

        return grade_with_judge
    if name == "JudgeEngine":
        from tutor.judge.engine import JudgeEngine

        return JudgeEngine
    raise AttributeError(f"module 'tutor.judge' has no attribute {name!r}")
