"""Grading one batch of rows, the same way in every engine: one `grade_many` call for the embedding grades
of the whole batch, then, with a judge, each answer through the usual fusion on a bounded thread pool."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from tutor.batch.rows import NO_LABEL, Item, Row, RowError
from tutor.models import Grade, Question


def make_judge(spec: str, concurrency: int | None = None) -> Any:
    """A JudgeEngine (one reply cache) for `spec`, allowing `concurrency` requests at a time to the judge
    server from this process. JudgeSpecError for a bad spec."""
    from tutor.judge import resolve_judge
    from tutor.judge.engine import JudgeEngine

    judge = resolve_judge(spec)
    if concurrency is not None and concurrency != judge.settings.max_concurrency:
        # Built again rather than patched, so the backend's other defaults and its limiter stay consistent.
        judge = resolve_judge(spec, dataclasses.replace(judge.settings, max_concurrency=concurrency))
    return JudgeEngine(judge)


class _Precomputed:
    """Hands `grade_with_judge` the embedding grade already made for the whole batch, so the judge path
    runs the fusion code unchanged instead of a copy of it."""

    def __init__(self, grade: Grade, thresholds: Any):
        self._grade = grade
        self.t = thresholds

    def grade(self, question: Question, answer: str) -> Grade:
        return self._grade


class Scorer:
    """Grades batches of Items. `grader` is anything with `grade_many` (default: `get_grader()`)."""

    def __init__(self, grader: Any = None, judge: Any = None):
        if grader is None:
            from tutor.grader import get_grader

            grader = get_grader()
        self.grader = grader
        self.judge = judge  # a JudgeEngine or None
        self.judge_threads = judge.judge.settings.max_concurrency if judge is not None else 0

    def grade(self, items: Sequence[Item]) -> list[Grade]:
        grades: list[Grade] = self.grader.grade_many([(it.question, it.answer) for it in items])
        if self.judge is None or not items:
            return grades
        from tutor.judge.fuse import grade_with_judge

        t = getattr(self.grader, "t", None)

        def judged(pair: tuple[Item, Grade]) -> Grade:
            it, base = pair
            return grade_with_judge(it.question, it.answer, self.judge, cast(Any, _Precomputed(base, t)))

        # Each answer sends its two orders at once; the judge's own limiter caps the requests in flight at
        # max_concurrency, so this many answers keep it busy without queueing the whole batch on it.
        with ThreadPoolExecutor(max(1, self.judge_threads), thread_name_prefix="batch-judge") as pool:
            return list(pool.map(judged, zip(items, grades, strict=True)))

    def out_lines(self, rows: Sequence[Row]) -> list[str]:
        """The OUT lines of a batch, in its order: a grade row for each Item (all graded in one `grade`
        call), the error row for each RowError."""
        grades = iter(self.grade([r for r in rows if isinstance(r, Item)]))
        return [graded_row(r, next(grades)) if isinstance(r, Item) else error_row(r) for r in rows]


def graded_row(item: Item, grade: Grade) -> str:
    """The OUT line of a graded row: the object `tutor grade --json` prints, plus the row's id (first)
    and its label when it had one."""
    row: dict[str, Any] = {"id": item.id, **grade.model_dump(mode="json")}
    if item.label is not NO_LABEL:
        row["label"] = item.label
    return json.dumps(row, ensure_ascii=False)


def error_row(err: RowError) -> str:
    return json.dumps(err.to_json(), ensure_ascii=False)
