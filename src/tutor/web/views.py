"""Presentation for the web pages: where the learner's sentences sit in their answer, chart geometry,
dates in words, the judge's part in a grade. No grading or storage: inputs come from the library."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from typing import Any, Literal

from tutor.models import Grade, JudgeReport
from tutor.schedule import MASTERY_LEVELS
from tutor.study import humanize_delta

MarkKind = Literal["covered", "misconception"]

# ---------------------------------------------------------------------------------------------- highlighting


@dataclass(frozen=True)
class Mark:
    start: int
    end: int
    kind: MarkKind
    ref: str  # "1", "2"... for key points, "M1"... for misconceptions: the same labels as the lists below


@dataclass(frozen=True)
class Segment:
    text: str
    kinds: tuple[MarkKind, ...] = ()  # empty: plain text
    refs: tuple[str, ...] = ()  # labels of the marks that end with this segment (shown after it)


@dataclass(frozen=True)
class Highlighted:
    segments: list[Segment]
    located: frozenset[str] = field(default_factory=frozenset)  # refs found in the answer


def locate(answer: str, sentence: str) -> tuple[int, int] | None:
    """Where ``sentence`` (as the grader quoted it) sits in ``answer`` (as the learner typed it).

    The grader quotes the answer after normalising it (runs of spaces and blank lines collapsed, clauses
    stripped of edge punctuation), so an exact search can miss; the fallback matches the same words with
    any whitespace between them, then ignoring case. None if the words are not there in order.
    """
    sentence = sentence.strip()
    if not sentence:
        return None
    i = answer.find(sentence)
    if i >= 0:
        return i, i + len(sentence)
    pattern = r"\s+".join(re.escape(w) for w in sentence.split())
    m = re.search(pattern, answer) or re.search(pattern, answer, re.IGNORECASE)
    return (m.start(), m.end()) if m else None


def key_point_ref(i: int) -> str:
    return str(i + 1)


def misconception_ref(i: int) -> str:
    return f"M{i + 1}"


def highlight(answer: str, grade: Grade) -> Highlighted:
    """The answer cut into segments, each marked with the key points / misconceptions whose sentence it
    belongs to. Overlapping sentences (a sentence and a clause of it) split into nested-looking runs."""
    marks: list[Mark] = []
    for i, c in enumerate(grade.covered):
        span = locate(answer, c.sentence)
        if span:
            marks.append(Mark(*span, "covered", key_point_ref(i)))
    for i, m in enumerate(grade.misconceptions):
        span = locate(answer, m.sentence)
        if span:
            marks.append(Mark(*span, "misconception", misconception_ref(i)))
    cuts = sorted({0, len(answer), *(m.start for m in marks), *(m.end for m in marks)})
    segments = []
    for a, b in itertools.pairwise(cuts):
        active = [m for m in marks if m.start <= a and b <= m.end]
        kinds = tuple(k for k in ("misconception", "covered") if any(m.kind == k for m in active))
        refs = tuple(m.ref for m in marks if m.end == b and m in active)
        segments.append(Segment(answer[a:b], kinds, refs))  # type: ignore[arg-type]
    return Highlighted(segments, frozenset(m.ref for m in marks))


# ---------------------------------------------------------------------------------------------- dates


def local(t: datetime, tz: tzinfo | None = None) -> datetime:
    return t.astimezone(tz)


def when(t: datetime, now: datetime, tz: tzinfo | None = None) -> str:
    """'Tue 2 Dec 14:30 (in 10 min)' in the server's local time: the learner's own computer."""
    lt = local(t, tz)
    ahead = (t - now).total_seconds()
    rel = humanize_delta(t - now) if ahead >= 60 else "due now" if ahead > -3600 else "overdue"
    return f"{lt:%a} {lt.day} {lt:%b %Y, %H:%M} ({rel})"


def stamp(iso: str, tz: tzinfo | None = None) -> str:
    """An ISO time from the store as 'Tue 2 Dec 2025, 14:30'."""
    t = local(datetime.fromisoformat(iso), tz)
    return f"{t:%a} {t.day} {t:%b %Y, %H:%M}"


# ---------------------------------------------------------------------------------------------- charts
# Server-rendered SVG. Every bar carries its number as text and every mastery level its own fill pattern,
# so the charts read without colour (and in a black-and-white printout).


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    w: float
    h: float
    value: int
    label: str = ""
    sublabel: str = ""
    level: str = ""


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    rows: list[dict[str, Any]] = field(default_factory=list)
    baseline: float = 0.0
    max_value: int = 0


def mastery_chart(progress: Sequence[dict[str, Any]], width: int = 640) -> Chart:
    """One stacked horizontal bar per chapter: questions per mastery level (new, learning, familiar,
    mastered), left to right."""
    label_w, row_h, gap, top = 56, 26, 10, 6
    inner = width - label_w - 8
    rows: list[dict[str, Any]] = []
    bars: list[Bar] = []
    for i, r in enumerate(progress):
        y = top + i * (row_h + gap)
        total = max(r["questions"], 1)
        x = float(label_w)
        for level in MASTERY_LEVELS:
            n = r["mastery"][level]
            if n == 0:
                continue
            w = inner * n / total
            bars.append(Bar(x, y, w, row_h, n, level=level))
            x += w
        rows.append({"y": y + row_h / 2, "label": f"ch{r['chapter']}", "title": r["title"]})
    height = top + len(progress) * (row_h + gap)
    return Chart(width, height, bars, rows)


def forecast_chart(days: Sequence[tuple[date, int]], width: int = 640, height: int = 200) -> Chart:
    """Reviews due per day: one vertical bar per day, its count above it, the day below."""
    top, bottom, left = 22, 40, 6
    n = max(len(days), 1)
    slot = (width - left * 2) / n
    peak = max((c for _, c in days), default=0)
    scale = (height - top - bottom) / peak if peak else 0.0
    baseline = float(height - bottom)
    bars = []
    for i, (day, count) in enumerate(days):
        h = count * scale
        label = "today" if i == 0 else f"{day:%a}"
        bars.append(
            Bar(left + i * slot + slot * 0.15, baseline - h, slot * 0.7, h, count, label, str(day.day))
        )
    return Chart(width, height, bars, baseline=baseline, max_value=peak)


# ---------------------------------------------------------------------------------------------- the judge

ORDER_WORDS = {"A": "reading the reference first", "B": "reading your answer first"}


def judge_summary(report: JudgeReport) -> list[str]:
    """The LLM judge's part in a grade, in plain sentences (the page shows them under the verdict)."""
    lines: list[str] = []
    said = [
        f"{ORDER_WORDS[c.order]} it said {c.reply.verdict}"
        for c in sorted(report.calls, key=lambda c: c.order)
        if c.status == "ok" and c.reply is not None
    ]
    failed = [c for c in report.calls if c.status != "ok"]
    if said:
        lines.append(f"The LLM judge ({report.judge}) read your answer twice: " + "; ".join(said) + ".")
    if report.rule == "fused":
        lines.append(
            "Both readings agree, so the verdict is the judge's and the score mixes the judge's score with "
            "the embedding grader's."
        )
    elif report.rule == "inconsistent":
        lines.append(
            "The two readings disagree: the judge's verdict depended on the order in which it read the "
            "reference and your answer, so it is not trusted on its own."
        )
        if report.consistent is False and report.preferred_position:
            pos = "first" if report.preferred_position == "first" else "second"
            lines.append(f"It rated your answer higher when it saw it {pos}.")
    elif report.rule == "disputed":
        lines.append(
            "The judge rated the answer higher, but the grader found a misconception the judge did not "
            "mention, so the more cautious verdict is shown."
        )
    elif report.rule == "one_order":
        lines.append("Only one of the two readings gave a usable answer, so the grade is cautious.")
    elif report.rule == "fallback":
        lines.append("The LLM judge could not grade this answer; this is the embedding grader's grade.")
    elif report.rule == "skipped":
        lines.append("There was nothing for the LLM judge to read, so it was not asked.")
    if failed and report.rule != "fallback":
        lines.append(f"{len(failed)} of the judge's readings failed.")
    return lines
