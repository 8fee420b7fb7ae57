"""The grade -> FSRS rating map, session planning and mastery levels, with a fixed clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from fsrs import Rating, State

from tutor.schedule import (
    MASTERED_STABILITY_DAYS,
    mastery,
    new_card,
    next_due,
    plan_session,
    rating_for,
    review,
    review_forecast,
)

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("verdict", "score", "hints", "rating"),
    [
        ("incorrect", 0.1, 0, Rating.Again),
        ("incorrect", 0.3, 2, Rating.Again),
        ("partial", 0.5, 0, Rating.Hard),
        ("partial", 0.95, 0, Rating.Hard),
        ("correct", 0.75, 0, Rating.Good),
        ("correct", 0.95, 1, Rating.Good),  # a hint was needed: not Easy
        ("correct", 0.9, 0, Rating.Easy),
        ("correct", 0.97, 0, Rating.Easy),
    ],
)
def test_rating_map(verdict: str, score: float, hints: int, rating: Rating) -> None:
    assert rating_for(verdict, score, hints) == rating  # type: ignore[arg-type]


def test_first_reviews_follow_the_documented_steps() -> None:
    again = review(None, "ch11-1", Rating.Again, T0)
    assert again.state == State.Learning and again.due == T0 + timedelta(minutes=10)
    hard = review(None, "ch11-1", Rating.Hard, T0)
    assert hard.state == State.Learning and hard.due == T0 + timedelta(minutes=15)
    good = review(None, "ch11-1", Rating.Good, T0)
    assert good.state == State.Review and good.due - T0 >= timedelta(days=1)
    easy = review(None, "ch11-1", Rating.Easy, T0)
    assert easy.state == State.Review and easy.due > good.due


def test_schedule_is_deterministic() -> None:
    a = review(review(None, "ch12-3", Rating.Good, T0), "ch12-3", Rating.Good, T0 + timedelta(days=3))
    b = review(review(None, "ch12-3", Rating.Good, T0), "ch12-3", Rating.Good, T0 + timedelta(days=3))
    assert a.to_dict() == b.to_dict()
    assert a.card_id == 1203


def test_plan_serves_due_reviews_first_then_new_in_chapter_order(bank) -> None:
    qs = bank.questions
    seen = {q.id for q in qs[:3]}
    cards = {
        qs[0].id: new_card(qs[0].id, T0 - timedelta(days=1)),  # overdue by a day
        qs[1].id: new_card(qs[1].id, T0 + timedelta(days=2)),  # not due yet
        qs[2].id: new_card(qs[2].id, T0 - timedelta(days=3)),  # most overdue
    }
    plan = plan_session(qs, cards, T0, new_limit=2)
    assert [(p.kind, p.question.id) for p in plan] == [
        ("review", qs[2].id),
        ("review", qs[0].id),
        ("new", qs[3].id),
        ("new", qs[4].id),
    ]
    assert not seen & {p.question.id for p in plan if p.kind == "new"}


def test_plan_respects_chapter_and_zero_new(bank) -> None:
    ch = sorted(bank.chapters)[-1]
    plan = plan_session(bank.questions, {}, T0, new_limit=10, chapter=ch)
    assert [p.question.id for p in plan] == [q.id for q in bank.chapter(ch)]
    assert plan_session(bank.questions, {}, T0, new_limit=0) == []


def test_next_due() -> None:
    cards = {"ch11-1": new_card("ch11-1", T0 + timedelta(hours=5)), "ch11-2": new_card("ch11-2", T0)}
    assert next_due(cards, T0) == T0 + timedelta(hours=5)
    assert next_due({}, T0) is None


def test_mastery_levels() -> None:
    assert mastery(None, []) == "new"
    learning = review(None, "ch11-1", Rating.Again, T0)
    assert mastery(learning, ["incorrect"]) == "learning"
    good = review(None, "ch11-1", Rating.Good, T0)
    assert good.state == State.Review
    assert mastery(good, ["correct"]) == "familiar"
    assert mastery(good, ["incorrect", "correct"]) == "learning"
    # Correct answers spaced out over weeks build stability past the mastered threshold.
    card, t = good, T0
    for _ in range(4):
        t = card.due
        card = review(card, "ch11-1", Rating.Good, t)
    assert (card.stability or 0) >= MASTERED_STABILITY_DAYS
    assert mastery(card, ["correct", "correct"]) == "mastered"
    assert mastery(card, ["correct", "partial"]) == "familiar"
    assert mastery(card, ["correct"]) == "familiar"  # one correct answer is not a streak


def test_review_forecast_counts_per_day_with_overdue_today() -> None:
    cards = [
        new_card("ch11-1", T0 - timedelta(days=3)),  # overdue: counts today
        new_card("ch11-2", T0 + timedelta(hours=2)),  # later today
        new_card("ch11-3", T0 + timedelta(days=1)),
        new_card("ch11-4", T0 + timedelta(days=1, hours=1)),
        new_card("ch12-1", T0 + timedelta(days=13)),  # last day shown
        new_card("ch12-2", T0 + timedelta(days=14)),  # beyond the window
    ]
    days = review_forecast(cards, T0, days=14, tz=UTC)
    assert len(days) == 14 and days[0] == (date(2025, 3, 1), 2) and days[1] == (date(2025, 3, 2), 2)
    assert days[13] == (date(2025, 3, 14), 1) and sum(n for _, n in days) == 5


def test_review_forecast_uses_the_given_time_zone() -> None:
    from datetime import timezone

    plus10 = timezone(timedelta(hours=10))
    # 20:00 UTC on 1 March is 06:00 on 2 March at UTC+10: "today" there is 2 March.
    now = datetime(2025, 3, 1, 20, 0, tzinfo=UTC)
    card = new_card("ch11-1", datetime(2025, 3, 2, 15, 0, tzinfo=UTC))  # 01:00 on 3 March at UTC+10
    assert review_forecast([card], now, days=2, tz=plus10) == [(date(2025, 3, 2), 0), (date(2025, 3, 3), 1)]
