"""Spaced review with FSRS: how a grade becomes a rating, which questions a session serves, mastery levels.

Rating map (``rating_for``):

==============================================================  ==========
grade                                                           FSRS rating
==============================================================  ==========
incorrect                                                       Again
partial                                                         Hard
correct                                                         Good
correct, no hints used and score >= ``EASY_SCORE`` (0.9)        Easy
==============================================================  ==========

Scheduler settings: one 10-minute learning step and one 10-minute relearning step instead of FSRS's
default 1 min + 10 min. These are free-response explanations and the reference is shown after every
grade, so re-asking after one minute would test copying, not memory. Fuzzing is off so that the same
history always gives the same schedule (and tests can use a fixed clock); with 40 questions there is
no review pile-up for fuzz to spread out.

Mastery levels (``mastery``), from the FSRS card and the learner's last verdicts:

- **new**: never answered.
- **learning**: the card is in FSRS Learning or Relearning, or the last verdict was incorrect.
- **mastered**: in Review, stability >= ``MASTERED_STABILITY_DAYS`` (21 days: FSRS expects >= 90%
  recall three weeks out) and the last ``MASTERED_STREAK`` (2) verdicts were all correct.
- **familiar**: everything else in Review (answered well enough to leave Learning, not yet mastered).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Literal

from fsrs import Card, Rating, Scheduler, State

from tutor.models import Question, Verdict

EASY_SCORE = 0.9
MASTERED_STABILITY_DAYS = 21.0
MASTERED_STREAK = 2

Mastery = Literal["new", "learning", "familiar", "mastered"]
MASTERY_LEVELS: tuple[Mastery, ...] = ("new", "learning", "familiar", "mastered")

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def make_scheduler() -> Scheduler:
    return Scheduler(
        learning_steps=(timedelta(minutes=10),),
        relearning_steps=(timedelta(minutes=10),),
        enable_fuzzing=False,
    )


def rating_for(verdict: Verdict, score: float, hints_used: int) -> Rating:
    """The FSRS rating for one graded attempt (the table in the module docstring)."""
    if verdict == "incorrect":
        return Rating.Again
    if verdict == "partial":
        return Rating.Hard
    if hints_used == 0 and score >= EASY_SCORE:
        return Rating.Easy
    return Rating.Good


def new_card(question_id: str, now: datetime) -> Card:
    # A card id derived from the question keeps card JSON deterministic (fsrs uses wall-clock ms).
    chapter, n = question_id.removeprefix("ch").split("-")
    return Card(card_id=int(chapter) * 100 + int(n), due=now)


def review(
    card: Card | None, question_id: str, rating: Rating, now: datetime, scheduler: Scheduler | None = None
) -> Card:
    """The card after one review at ``now`` (``card`` None means first time seen)."""
    sched = scheduler or make_scheduler()
    card = card or new_card(question_id, now)
    reviewed, _log = sched.review_card(card, rating, review_datetime=now.astimezone(UTC))
    return reviewed


def mastery(card: Card | None, recent_verdicts: Sequence[str]) -> Mastery:
    """Mastery level; ``recent_verdicts`` are graded verdicts, newest first."""
    if card is None or not recent_verdicts:
        return "new"
    if card.state in (State.Learning, State.Relearning) or recent_verdicts[0] == "incorrect":
        return "learning"
    streak = recent_verdicts[:MASTERED_STREAK]
    if (
        (card.stability or 0.0) >= MASTERED_STABILITY_DAYS
        and len(streak) == MASTERED_STREAK
        and all(v == "correct" for v in streak)
    ):
        return "mastered"
    return "familiar"


@dataclass(frozen=True)
class Planned:
    question: Question
    kind: Literal["review", "new"]
    due: datetime | None = None


def plan_session(
    questions: Iterable[Question],
    cards: dict[str, Card],
    now: datetime,
    new_limit: int,
    chapter: int | None = None,
) -> list[Planned]:
    """Due reviews first (most overdue first), then up to ``new_limit`` unseen questions in chapter order."""
    qs = [q for q in questions if chapter is None or q.chapter == chapter]
    due = sorted(
        (Planned(q, "review", cards[q.id].due) for q in qs if q.id in cards and cards[q.id].due <= now),
        key=lambda p: (p.due, p.question.chapter, p.question.id),
    )
    order = sorted((q for q in qs if q.id not in cards), key=lambda q: (q.chapter, int(q.id.split("-")[1])))
    fresh = [Planned(q, "new") for q in order[: max(new_limit, 0)]]
    return due + fresh


def next_due(cards: dict[str, Card], now: datetime) -> datetime | None:
    """When the next review falls due after ``now`` (to tell the learner when to come back)."""
    later = [c.due for c in cards.values() if c.due > now]
    return min(later) if later else None


def review_forecast(
    cards: Iterable[Card], now: datetime, days: int = 14, tz: tzinfo | None = None
) -> list[tuple[date, int]]:
    """Reviews falling due on each of the next ``days`` calendar days (in ``tz``, default the local time
    zone), today first. Today's count includes every review already overdue: all of them can be done today."""
    local_now = now.astimezone(tz)
    today = local_now.date()
    counts = dict.fromkeys((today + timedelta(days=i) for i in range(days)), 0)
    for card in cards:
        day = max(card.due.astimezone(tz).date(), today)
        if day in counts:
            counts[day] += 1
    return list(counts.items())
