"""The study session loop with a scripted learner and a stub grader (no model): hints, skip, quit,
dispute, judge notes, piped input, progress report and flag export."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from tutor.grader import Thresholds
from tutor.models import FoundMisconception, Grade, Question
from tutor.store import Store
from tutor.study import StudySession, flag_candidates, grade_attempt, progress_report, question_statuses

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


class Script:
    """read_line that replays lines, then behaves like an exhausted pipe (EOFError)."""

    def __init__(self, lines: list[str]):
        self.lines: Iterator[str] = iter(lines)
        self.prompts: list[str] = []

    def __call__(self, prompt: str) -> str:
        self.prompts.append(prompt)
        try:
            return next(self.lines)
        except StopIteration:
            raise EOFError from None


def stub_grade(q: Question, answer: str) -> Grade:
    if "wrong" in answer:
        m = q.misconceptions[0]
        return Grade(
            question_id=q.id,
            score=0.1,
            verdict="incorrect",
            feedback="Not yet right.",
            grader="stub",
            misconceptions=[
                FoundMisconception(
                    id=m.id, statement=m.statement, correction=m.correction, sentence=answer, similarity=0.8
                )
            ],
        )
    return Grade(question_id=q.id, score=0.95, verdict="correct", feedback="Correct.", grader="stub")


def run(bank, lines: list[str], clock=lambda: T0, **kw) -> tuple[str, Store, StudySession]:
    buf = io.StringIO()
    console = Console(file=buf, width=100, force_terminal=False, highlight=False, soft_wrap=True)
    store = Store(clock=clock)
    s = StudySession(bank, store, console, read_line=Script(lines), grade_fn=stub_grade, clock=clock, **kw)
    s.run()
    return buf.getvalue(), store, s


def test_hint_answer_dispute_quit(tutor_home: Path, bank) -> None:
    q1 = bank.questions[0]
    lines = ["?", "?", "?", "this is wrong", "second line", "", "! I said it right", "q"]
    screen, store, s = run(bank, lines, new_limit=3)
    assert f"Hint 1/{len(q1.hints)}" in screen and q1.hints[0] in screen
    # three "?": every hint is shown, then "No more hints" once the question has fewer than three
    assert all(h in screen for h in q1.hints[:3]) and ("No more hints" in screen) == (len(q1.hints) < 3)
    m = q1.misconceptions[0]
    assert "INCORRECT" in screen and f"Correction: {m.correction}" in screen  # the whole correction
    assert "you wrote: “this is wrong\nsecond line”" in screen  # the sentence it was found in
    assert "Reference explanation" in screen and "Flagged" in screen
    assert s.result.quit_early and s.result.answered == 1
    [a] = store.attempts()
    assert a.answer == "this is wrong\nsecond line" and a.hints_used == len(q1.hints)
    assert a.verdict == "incorrect" and a.flagged and a.flag_comment == "I said it right"
    card = store.card(q1.id)
    assert card is not None and card.due == T0 + timedelta(minutes=10)  # Again -> 10-minute step


def test_skip_and_eof_on_a_pipe(tutor_home: Path, bank) -> None:
    # A pipe that ends in the middle of an answer: the answer is graded, then the session ends.
    screen, store, s = run(bank, ["s", "a fine answer"], new_limit=3)
    assert s.result.skipped == 1 and s.result.answered == 1 and s.result.quit_early
    [a] = store.attempts()
    assert a.question_id == bank.questions[1].id and a.verdict == "correct"
    assert "Session over" in screen


def test_empty_stdin_quits_immediately(tutor_home: Path, bank) -> None:
    screen, store, s = run(bank, [], new_limit=3)
    assert s.result.answered == 0 and store.attempts() == [] and "Session over" in screen


def test_reviews_come_back_when_due(tutor_home: Path, bank) -> None:
    run(bank, ["an answer that is wrong", "", "q"], new_limit=1)
    later = T0 + timedelta(minutes=11)
    screen, _, _ = run(bank, ["q"], clock=lambda: later, new_limit=0)
    assert "1 review(s) due, 0 new" in screen
    nothing, _, _ = run(bank, [], new_limit=0)  # at T0 the review is not due yet
    assert "Nothing to study right now" in nothing and "in 10 min" in nothing


def test_progress_report_and_flag_export(tutor_home: Path, bank) -> None:
    run(bank, ["this is wrong", "", "!", "the grader missed my point", "", "a good one", "", ""], new_limit=2)
    store = Store(clock=lambda: T0)
    rows = progress_report(bank, store)
    ch = rows[0]
    assert ch["seen"] == 2 and ch["mastery"]["learning"] == 1 and ch["mastery"]["familiar"] == 1
    assert ch["mastery"]["new"] == ch["questions"] - 2
    # incorrect -> due in 10 min; correct with no hint and score 0.95 -> Easy -> about 8 days out
    assert ch["due_now"] == 0 and ch["due_next_7_days"] == 1
    [top] = ch["top_misconceptions"]
    assert top["count"] == 1 and top["statement"] == bank.questions[0].misconceptions[0].statement
    [flag] = flag_candidates(store)
    assert flag["label"] is None and flag["grader_verdict"] == "incorrect"
    assert flag["learner_claim"] == "the grader missed my point" and flag["answer"] == "this is wrong"
    assert {"id", "question_id", "answer", "label"} <= set(flag)


# ------------------------------------------------------------------------- CLI (stub grader, no model)


class StubEmbedder:
    name = "stub"

    def encode(self, texts):
        import numpy as np

        return np.zeros((len(texts), 384), dtype=np.float32)


class StubGrader:
    t = Thresholds()
    name = "embedding:stub"
    embedder = StubEmbedder()

    def grade(self, q: Question, answer: str) -> Grade:
        return Grade(
            question_id=q.id, score=0.5, verdict="partial", feedback="Partly right.", grader=self.name
        )

    def warm(self, questions) -> None:
        pass


@pytest.fixture
def stub_grader(monkeypatch: pytest.MonkeyPatch) -> StubGrader:
    import tutor.grader

    g = StubGrader()
    monkeypatch.setattr(tutor.grader, "get_grader", lambda: g)
    return g


def test_cli_study_with_inconsistent_judge(tutor_home: Path, stub_grader: StubGrader) -> None:
    from tutor.cli import app

    r = CliRunner().invoke(
        app, ["study", "--new", "1", "--judge", "fake:partial,bias=first"], input="my answer\n\nq\n"
    )
    assert r.exit_code == 0, r.output
    # The judge's orders disagree (partial / correct); the stub's partial 0.5 stands.
    assert "depending on the order" in r.output and "embedding grader's grade" in r.output
    assert "Reference explanation" in r.output
    with Store() as s:
        [a] = s.attempts()
        assert a.judge is not None and a.judge["rule"] == "inconsistent"
        assert s.card(a.question_id) is not None


def test_cli_bad_judge_spec(tutor_home: Path) -> None:
    from tutor.cli import app

    r = CliRunner().invoke(app, ["study", "--judge", "nonsense:x"], input="")
    assert r.exit_code == 2 and "unknown judge 'nonsense:x'" in r.output and "Traceback" not in r.output


def test_cli_progress_history_flags(tutor_home: Path, bank, stub_grader: StubGrader) -> None:
    from tutor.cli import app

    runner = CliRunner()
    qid = bank.questions[0].id
    r = runner.invoke(app, ["study", "--new", "1"], input="an answer\n\n! it deserved more\nq\n")
    assert r.exit_code == 0, r.output
    p = runner.invoke(app, ["progress", "--json"])
    assert json.loads(p.output)[0]["seen"] == 1
    assert "learning" in runner.invoke(app, ["progress"]).output
    h = runner.invoke(app, ["history", qid])
    assert "an answer" in h.output and "disputed: it deserved more" in h.output
    out = tutor_home / "flags.jsonl"
    f = runner.invoke(app, ["flags", "export", str(out)])
    assert f.exit_code == 0 and "1 disputed" in f.output
    [row] = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["question_id"] == qid and row["label"] is None and row["learner_claim"] == "it deserved more"
    assert runner.invoke(app, ["history", "ch99-1"]).exit_code == 2


@pytest.mark.parametrize(
    ("rule", "says"),
    [
        ("inconsistent", "depending on the order"),
        ("disputed", "found a misconception it did not mention"),
        ("one_order", "only grade it once"),
        ("fallback", "could not grade"),
        ("fused", None),
    ],
)
def test_judge_note_explains_each_fusion_rule(rule: str, says: str | None) -> None:
    from tutor.models import JudgeReport
    from tutor.study import judge_note

    report = JudgeReport(
        judge="fake",
        backend="fake",
        model="fake",
        embedding_score=0.5,
        embedding_verdict="partial",
        judge_weight=0.6,
        rule=rule,  # type: ignore[arg-type]
    )
    g = Grade(question_id="ch13-1", score=0.4, verdict="partial", feedback="", grader="x", judge=report)
    note = judge_note(g)
    assert (note is None) if says is None else (note is not None and says in note)
    if rule == "inconsistent":  # the judge abstained: the grade is the embedding grade
        same = g.model_copy(update={"score": 0.5})
        assert "embedding grader's grade" in (judge_note(same) or "")


def test_grade_attempt_grades_a_saved_answer_once(tutor_home: Path, bank) -> None:
    with Store(clock=lambda: T0) as store:
        aid = store.save_answer("ch11-1", "this is wrong", 1, T0)
        grade, card = grade_attempt(store, bank, aid, stub_grade, clock=lambda: T0)
        a = store.attempt(aid)
        assert (grade.verdict, a.verdict, a.hints_used) == ("incorrect", "incorrect", 1)
        assert store.card("ch11-1") == card and card.due == T0 + timedelta(minutes=10)  # Again: relearn
        with pytest.raises(ValueError, match="already graded"):
            grade_attempt(store, bank, aid, stub_grade)
        assert store.review_count("ch11-1") == 1


def test_grade_attempt_that_fails_leaves_the_answer_saved(tutor_home: Path, bank) -> None:
    def broken(q: Question, answer: str) -> Grade:
        raise RuntimeError("model gone")

    with Store(clock=lambda: T0) as store:
        aid = store.save_answer("ch11-1", "kept", 0, T0)
        with pytest.raises(RuntimeError):
            grade_attempt(store, bank, aid, broken)
        a = store.attempt(aid)
        assert a.answer == "kept" and not a.graded and store.card("ch11-1") is None


def test_question_statuses(tutor_home: Path, bank) -> None:
    with Store(clock=lambda: T0) as store:
        for answer in ("this is wrong", "right now"):
            aid = store.save_answer("ch12-2", answer, 0, T0)
            grade_attempt(store, bank, aid, stub_grade, clock=lambda: T0)
        store.save_answer("ch11-1", "never graded", 0, T0)
        rows = {r.question.id: r for r in question_statuses(bank, store)}
    assert [r.question.id for r in question_statuses(bank, Store(clock=lambda: T0))] == [
        q.id for q in bank.questions
    ]
    r = rows["ch12-2"]
    assert (r.attempts, r.last_verdict, r.last_score, r.mastery) == (2, "correct", 0.95, "familiar")
    assert r.due is not None and r.due > T0
    u = rows["ch11-1"]
    assert (u.attempts, u.last_verdict, u.due, u.mastery) == (1, None, None, "new")
    assert rows["ch13-1"].attempts == 0
