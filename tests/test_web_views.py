"""The web pages' presentation helpers: locating the grader's quotes in the answer, charts, the judge."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

from tutor.models import CoveredPoint, FoundMisconception, Grade, JudgeCall, JudgeReply, JudgeReport
from tutor.web import views


def grade(covered: Sequence[str] = (), misconceptions: Sequence[str] = ()) -> Grade:
    return Grade(
        question_id="ch13-1",
        score=0.5,
        verdict="partial",
        feedback="",
        grader="test",
        covered=[
            CoveredPoint(id=f"k{i}", text="point", sentence=s, similarity=0.8) for i, s in enumerate(covered)
        ],
        misconceptions=[
            FoundMisconception(id=f"m{i}", statement="wrong", correction="right", sentence=s, similarity=0.8)
            for i, s in enumerate(misconceptions)
        ],
    )


def test_locate_finds_the_quote_despite_normalised_whitespace_and_case() -> None:
    answer = "First point here.\r\n\r\nSecond   point\tspans  lines.  Third."
    assert views.locate(answer, "First point here.") == (0, 17)
    start, end = views.locate(answer, "Second point spans lines.")  # type: ignore[misc]
    assert answer[start:end] == "Second   point\tspans  lines."
    start, end = views.locate(answer, "third.")  # type: ignore[misc]
    assert answer[start:end] == "Third."
    assert views.locate(answer, "Not in the answer at all.") is None
    assert views.locate(answer, "   ") is None


def test_highlight_marks_overlapping_sentences_and_labels_where_they_end() -> None:
    answer = "Alpha one. Beta two. Gamma three."
    h = views.highlight(answer, grade(["Alpha one.", "Alpha one. Beta two."], ["Gamma three."]))
    assert "".join(s.text for s in h.segments) == answer  # nothing lost or duplicated
    by_text = {s.text: s for s in h.segments}
    assert by_text["Alpha one."].kinds == ("covered",) and by_text["Alpha one."].refs == ("1",)
    assert by_text[" Beta two."].refs == ("2",)
    assert by_text["Gamma three."].kinds == ("misconception",) and by_text["Gamma three."].refs == ("M1",)
    assert by_text[" "].kinds == ()
    assert h.located == {"1", "2", "M1"}


def test_a_quote_not_in_the_answer_is_left_out_of_the_highlights() -> None:
    h = views.highlight("Only this.", grade(["Something the grader rewrote."]))
    assert [(s.text, s.kinds) for s in h.segments] == [("Only this.", ())] and h.located == frozenset()
    assert views.highlight("", grade()).segments == []


def test_forecast_chart_scales_bars_and_labels_days() -> None:
    days = [(date(2025, 3, 1) + timedelta(days=i), n) for i, n in enumerate([2, 0, 4, 1])]
    chart = views.forecast_chart(days, width=400, height=200)
    assert [b.value for b in chart.bars] == [2, 0, 4, 1] and chart.max_value == 4
    tallest = max(chart.bars, key=lambda b: b.h)
    assert tallest.value == 4 and tallest.y + tallest.h == chart.baseline and chart.bars[1].h == 0
    assert chart.bars[0].h == tallest.h / 2
    assert [b.label for b in chart.bars] == ["today", "Sun", "Mon", "Tue"] and chart.bars[2].sublabel == "3"
    assert views.forecast_chart([(date(2025, 3, 1), 0)]).bars[0].h == 0  # nothing due: no division by zero


def test_mastery_chart_stacks_levels_in_order() -> None:
    row = {
        "chapter": 13,
        "title": "t",
        "questions": 4,
        "mastery": {"new": 1, "learning": 0, "familiar": 2, "mastered": 1},
    }
    chart = views.mastery_chart([row], width=456)
    assert [(b.level, b.value) for b in chart.bars] == [("new", 1), ("familiar", 2), ("mastered", 1)]
    assert [b.w for b in chart.bars] == [98.0, 196.0, 98.0]  # 392 px of bar for 4 questions
    assert chart.bars[1].x == chart.bars[0].x + chart.bars[0].w


def test_when_says_how_far_off_in_words() -> None:
    now = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    assert views.when(now + timedelta(minutes=10), now, UTC) == "Sat 1 Mar 2025, 09:10 (in 10 min)"
    assert views.when(now - timedelta(minutes=5), now, UTC).endswith("(due now)")
    assert views.when(now - timedelta(days=2), now, UTC).endswith("(overdue)")


def test_judge_summary_says_when_the_readings_disagree() -> None:
    def call(order: str, verdict: str) -> JudgeCall:
        reply = JudgeReply(verdict=verdict, score=5)  # type: ignore[arg-type]
        return JudgeCall(order=order, status="ok", reply=reply)  # type: ignore[arg-type]

    report = JudgeReport(
        judge="fake",
        backend="fake",
        model="m",
        calls=[call("B", "correct"), call("A", "partial")],
        consistent=False,
        preferred_position="first",
        embedding_score=0.5,
        embedding_verdict="partial",
        judge_weight=0.4,
        rule="inconsistent",
    )
    lines = views.judge_summary(report)
    assert lines[0] == (
        "The LLM judge (fake) read your answer twice: reading the reference first it said partial; "
        "reading your answer first it said correct."
    )
    assert (
        lines[1].startswith("The two readings disagree")
        and lines[2] == "It rated your answer higher when it saw it first."
    )
    fused = report.model_copy(
        update={"rule": "fused", "consistent": True, "calls": [call("A", "correct"), call("B", "correct")]}
    )
    assert "Both readings agree" in views.judge_summary(fused)[1]
    down = report.model_copy(update={"rule": "fallback", "calls": [JudgeCall(order="A", status="error")]})
    assert views.judge_summary(down) == [
        "The LLM judge could not grade this answer; this is the embedding grader's grade."
    ]
