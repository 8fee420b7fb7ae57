"""A study session: serve questions, read answers, grade, save, show feedback; plus progress reports.

The session is written against a rich ``Console`` and a ``read_line(prompt)`` function (``input`` by
default), so it works the same in a terminal, in a pseudo-terminal under test, and on piped stdin (an
end of input quits; it never waits for input that cannot come).

Order of events for one answer, so that nothing typed is lost:
1. the answer is committed as an ungraded attempt (``Store.save_answer``);
2. it is graded (the model has been loading in the background since the session started);
3. grade + next FSRS card are committed together (``Store.record_grade``);
4. only then is feedback shown.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from fsrs import Card
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel

from tutor.models import Grade, Question
from tutor.rubric import QuestionBank
from tutor.schedule import (
    MASTERY_LEVELS,
    Clock,
    Mastery,
    Planned,
    mastery,
    next_due,
    plan_session,
    utc_now,
)
from tutor.store import Attempt, Store

GradeFn = Callable[[Question, str], Grade]
ReadLine = Callable[[str], str]

VERDICT_STYLE = {"correct": "bold green", "partial": "bold yellow", "incorrect": "bold red"}
HELP = (
    "Type your answer; finish with an empty line (or Ctrl-D).  "
    "[bold]?[/] next hint · [bold]s[/] skip · [bold]q[/] quit (progress is kept)"
)


# ---------------------------------------------------------------------------------------------- warm-up


class Warmup:
    """Loads the grading model in a background thread, started with the session.

    ``load`` runs first; when it returns, grading may start (``wait`` returns). The ``then`` steps run
    afterwards in the same thread (embedding the later questions' rubrics) without holding anyone up.
    ``stop`` lets the current step finish and skips the rest: the process must not exit while the thread
    is inside torch (that aborts with "terminate called without an active exception").
    """

    def __init__(self, load: Callable[[], Any], then: Sequence[Callable[[], Any]] = ()):
        self._load = load
        self._then = list(then)
        self._error: BaseException | None = None
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tutor-warmup", daemon=True)

    def start(self) -> Warmup:
        if not self._thread.is_alive() and not self._ready.is_set():
            self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self._load()
        except BaseException as e:  # re-raised in the main thread by wait()
            self._error = e
            return
        finally:
            self._ready.set()
        for step in self._then:
            if self._stop.is_set():
                return
            # Only an optimisation: a failure here resurfaces when that question is graded.
            with contextlib.suppress(Exception):
                step()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def busy(self) -> bool:
        return self._thread.is_alive()

    def wait(self, console: Console | None = None) -> None:
        if not self._ready.is_set() and console is not None:
            with console.status("Loading the grading model…"):
                self._ready.wait()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def stop(self, timeout: float | None = None) -> bool:
        """Skip the remaining steps and wait for the current one; True if the thread has finished."""
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout)
        return not self._thread.is_alive()


def default_warmup(questions: Sequence[Question]) -> Warmup:
    """Model + the first question's rubric before grading may start; each later question's rubric after."""

    def load() -> None:
        from tutor.grader import get_grader  # heavy import (torch): done in the background thread

        g = get_grader()
        g.embedder.encode(["warm up"])
        g.warm(questions[:1])

    def warm_one(q: Question) -> Callable[[], None]:
        def step() -> None:
            from tutor.grader import get_grader

            get_grader().warm([q])

        return step

    return Warmup(load, [warm_one(q) for q in questions[1:]])


def default_grade_fn() -> GradeFn:
    def grade(q: Question, answer: str) -> Grade:
        from tutor.grader import get_grader

        return get_grader().grade(q, answer)

    return grade


# ---------------------------------------------------------------------------------------------- rendering


def judge_note(g: Grade) -> str | None:
    """What the learner should know about the LLM judge's part in this grade, if anything."""
    j = g.judge
    if j is None:
        return None
    if j.rule == "inconsistent" and (g.verdict, g.score) == (j.embedding_verdict, j.embedding_score):
        return (
            "The LLM judge gave different verdicts depending on the order it read the reference and your "
            "answer, so this is the embedding grader's grade. Dispute it with ! if it looks wrong."
        )
    if j.rule == "inconsistent":
        return (
            "This grade is uncertain: the LLM judge gave different verdicts depending on the order it read "
            "the reference and your answer, so the more cautious verdict is shown. Dispute it with ! if it "
            "looks wrong."
        )
    if j.rule == "disputed":
        return (
            "The LLM judge rated this answer higher, but the grader found a misconception it did not "
            "mention (see 'Watch out'), so the more cautious verdict is shown. Dispute it with ! if the "
            "grader misread you."
        )
    if j.rule == "one_order":
        return (
            "This grade is less certain: the LLM judge could only grade it once, so it is graded cautiously."
        )
    if j.rule == "fallback":
        return "The LLM judge could not grade this answer; this is the embedding grader's grade."
    return None


def humanize_delta(delta: timedelta) -> str:
    s = delta.total_seconds()
    if s < 60:
        return "now"
    if s < 3600:
        return f"in {round(s / 60)} min"
    if s < 86400 * 1.5:
        return f"in {round(s / 3600)} h"
    return f"in {round(s / 86400)} days"


def render_feedback(console: Console, g: Grade, q: Question) -> None:
    style = VERDICT_STYLE[g.verdict]
    console.print(f"\n[{style}]{g.verdict.upper()}[/]  score {g.score:.2f}")
    note = judge_note(g)
    if note:
        console.print(f"[yellow]{escape(note)}[/]")
    if g.covered:
        console.print("[bold]Covered[/]")
        for c in g.covered:
            console.print(f"  [green]✓[/] {escape(c.text)}\n      [dim]you wrote: “{escape(c.sentence)}”[/]")
    if g.missed:
        console.print("[bold]Missed[/]")
        for m in g.missed:
            why = " [dim](you said the opposite)[/]" if m.reason == "contradicted" else ""
            console.print(f"  [red]✗[/] {escape(m.text)}{why}")
    if g.misconceptions:
        console.print("[bold]Misconceptions[/]")
        for mc in g.misconceptions:
            console.print(
                f"  [magenta]![/] you wrote: “{escape(mc.sentence)}”\n"
                f"      [bold]Correction:[/] {escape(mc.correction)}"
            )
    if g.numeric is not None:
        mark = "[green]✓[/]" if g.numeric.correct else "[red]✗[/]"
        found = ", ".join(g.numeric.found) or "no number with a unit"
        console.print(f"  {mark} number: {escape(found)} (expected {escape(g.numeric.expected)})")
    if g.feedback:
        console.print(f"\n{escape(g.feedback)}")
    console.print(
        Panel(escape(q.reference), title="Reference explanation", title_align="left", border_style="blue"),
        soft_wrap=False,
    )


# ---------------------------------------------------------------------------------------------- session


@dataclass
class SessionResult:
    answered: int = 0
    skipped: int = 0
    flagged: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)
    quit_early: bool = False


class Quit(Exception):
    pass


class StudySession:
    def __init__(
        self,
        bank: QuestionBank,
        store: Store,
        console: Console,
        *,
        read_line: ReadLine | None = None,
        grade_fn: GradeFn | None = None,
        warmup: Callable[[Sequence[Question]], Warmup] | None = None,
        clock: Clock = utc_now,
        chapter: int | None = None,
        new_limit: int = 5,
    ):
        self.bank = bank
        self.store = store
        self.console = console
        self.read_line = read_line or (lambda prompt: console.input(prompt))
        self.grade_fn = grade_fn or default_grade_fn()
        self.make_warmup = warmup
        self.warmup: Warmup | None = None
        self.clock = clock
        self.chapter = chapter
        self.new_limit = new_limit
        self.result = SessionResult()

    def plan(self) -> list[Planned]:
        return plan_session(
            self.bank.questions, self.store.cards(), self.clock(), self.new_limit, self.chapter
        )

    def run(self) -> SessionResult:
        c = self.console
        plan = self.plan()
        if not plan:
            when = next_due(self.store.cards(), self.clock())
            later = f" The next review is due {humanize_delta(when - self.clock())}." if when else ""
            c.print(
                f"Nothing to study right now: no reviews are due and no new questions were asked for.{later} "
                "Use --new K to learn K new questions."
            )
            return self.result
        reviews = sum(p.kind == "review" for p in plan)
        c.print(f"[bold]Study session[/]: {reviews} review(s) due, {len(plan) - reviews} new question(s).")
        c.print(f"[dim]{HELP}[/]")
        if self.make_warmup is not None:
            self.warmup = self.make_warmup([p.question for p in plan]).start()
        try:
            for i, item in enumerate(plan, start=1):
                self.ask(item, i, len(plan))
        except Quit:
            self.result.quit_early = True
        except KeyboardInterrupt:  # Ctrl-C while grading: the answer is already saved (ungraded)
            self.console.print(
                "\n[dim]Interrupted. Your last answer was saved (ungraded; `tutor history` shows it).[/]"
            )
            self.result.quit_early = True
        self.summary()
        if self.warmup is not None:
            self.warmup.stop(timeout=0)  # the caller decides how long to wait (see cli_study)
        return self.result

    def _read(self, prompt: str) -> str:
        try:
            return self.read_line(prompt)
        except EOFError:
            raise Quit from None
        except KeyboardInterrupt:
            self.console.print()
            raise Quit from None

    def read_answer(self, q: Question, hints_used: int) -> tuple[str, int] | None:
        """The learner's answer and the hints used; None for skip. Raises Quit."""
        lines: list[str] = []
        while True:
            prompt = "[bold cyan]> [/]" if not lines else "[cyan]… [/]"
            try:
                line = self.read_line(prompt)
            except EOFError:
                if lines:
                    break
                raise Quit from None
            except KeyboardInterrupt:
                self.console.print()
                raise Quit from None
            except UnicodeDecodeError:
                self.console.print("[red]That line was not valid UTF-8 and was dropped; type it again.[/]")
                continue
            if not lines:
                cmd = line.strip().lower()
                if cmd == "?":
                    if hints_used < len(q.hints):
                        hints_used += 1
                        self.console.print(
                            f"[yellow]Hint {hints_used}/{len(q.hints)}:[/] {escape(q.hints[hints_used - 1])}"
                        )
                    else:
                        self.console.print("[dim]No more hints for this question.[/]")
                    continue
                if cmd == "s":
                    return None
                if cmd == "q":
                    raise Quit
                if cmd == "":
                    continue  # blank lines before the answer starts do not submit it
            elif line.strip() == "":
                break
            lines.append(line)
        return "\n".join(lines).strip(), hints_used

    def ask(self, item: Planned, index: int, total: int) -> None:
        q, c = item.question, self.console
        label = "review" if item.kind == "review" else "new"
        c.print()
        title = f"[{index}/{total}] {q.id} · {label} · ch{q.chapter} {escape(q.chapter_title)}"
        # soft_wrap off: the CLI console soft-wraps, which would cut a panel's text at the terminal edge.
        c.print(
            Panel(escape(q.question), title=title, title_align="left", border_style="cyan"), soft_wrap=False
        )
        started = self.clock()
        got = self.read_answer(q, 0)
        if got is None:
            self.result.skipped += 1
            c.print("[dim]Skipped.[/]")
            return
        answer, hints_used = got
        attempt_id = self.store.save_answer(q.id, answer, hints_used, started, self.clock())
        c.print("[dim]Answer saved. Grading…[/]")
        if self.warmup is not None:
            self.warmup.wait(c)
        grade = self.grade_fn(q, answer)
        card = self.store.record_grade(attempt_id, grade, self.bank.version, self.clock())
        self.result.answered += 1
        self.result.verdicts[grade.verdict] += 1
        render_feedback(c, grade, q)
        hint_note = f" · {hints_used} hint(s) used" if hints_used else ""
        c.print(f"[dim]Saved. Next review of {q.id} {humanize_delta(card.due - self.clock())}{hint_note}.[/]")
        self.after_grade(attempt_id)

    def after_grade(self, attempt_id: int) -> None:
        line = self._read("[dim]Enter: next question · ! dispute this grade · q quit[/] ").strip()
        if line.startswith("!"):
            comment = line[1:].strip()
            if not comment:
                comment = self._read("Why is the grade wrong? ").strip()
            self.store.flag(attempt_id, comment or "(no comment)")
            self.result.flagged += 1
            self.console.print(
                "[green]Flagged.[/] [dim]`tutor flags export FILE` collects disputed grades for review.[/]"
            )
            line = self._read("[dim]Enter: next question · q quit[/] ").strip()
        if line.lower() == "q":
            raise Quit

    def summary(self) -> None:
        r, c = self.result, self.console
        v = r.verdicts
        c.print(
            f"\n[bold]Session over.[/] Answered {r.answered} ({v['correct']} correct, "
            f"{v['partial']} partial, {v['incorrect']} incorrect), skipped {r.skipped}, disputed {r.flagged}."
            " Progress is saved."
        )
        when = next_due(self.store.cards(), self.clock())
        if when is not None:
            c.print(
                f"Next review due {humanize_delta(when - self.clock())}. "
                "`tutor progress` shows your standing."
            )


# ---------------------------------------------------------------------------------------------- reports


def _misconception_label(bank: QuestionBank, qid: str, mid: str, fallback: str) -> str:
    q = bank.by_id.get(qid)
    if q is None:
        return fallback
    if mid.startswith("contradicts:"):
        kp = next((k for k in q.key_points if k.id == mid.split(":", 1)[1]), None)
        return f"the opposite of: {kp.text}" if kp else fallback
    m = next((m for m in q.misconceptions if m.id == mid), None)
    return m.statement if m else fallback


def progress_report(
    bank: QuestionBank, store: Store, now: datetime | None = None, top: int = 3
) -> list[dict[str, Any]]:
    """Per chapter: questions seen, mastery level counts, due now / within 7 days, top misconceptions."""
    now = now or store.clock()
    cards = store.cards()
    verdicts = store.verdicts()
    attempts = store.attempts()
    mis: dict[int, Counter[tuple[str, str]]] = {}
    mis_text: dict[tuple[str, str], str] = {}
    for a in attempts:
        q = bank.by_id.get(a.question_id)
        if a.grade is None or q is None:
            continue
        for m in a.grade.misconceptions:
            mis.setdefault(q.chapter, Counter())[(a.question_id, m.id)] += 1
            mis_text.setdefault((a.question_id, m.id), m.statement)
    attempted = {a.question_id for a in attempts}
    week = now + timedelta(days=7)
    rows = []
    for ch, title in sorted(bank.chapters.items()):
        qs = bank.chapter(ch)
        levels = Counter({lvl: 0 for lvl in MASTERY_LEVELS})
        for q in qs:
            levels[mastery(cards.get(q.id), verdicts.get(q.id, []))] += 1
        due_now = sum(1 for q in qs if q.id in cards and cards[q.id].due <= now)
        due_week = sum(1 for q in qs if q.id in cards and now < cards[q.id].due <= week)
        rows.append(
            {
                "chapter": ch,
                "title": title,
                "questions": len(qs),
                "seen": sum(1 for q in qs if q.id in attempted),
                "mastery": {lvl: levels[lvl] for lvl in MASTERY_LEVELS},
                "due_now": due_now,
                "due_next_7_days": due_week,
                "top_misconceptions": [
                    {
                        "question_id": qid,
                        "id": mid,
                        "count": n,
                        "statement": _misconception_label(bank, qid, mid, mis_text[(qid, mid)]),
                    }
                    for (qid, mid), n in mis.get(ch, Counter()).most_common(top)
                ],
            }
        )
    return rows


def flag_candidates(store: Store) -> list[dict[str, Any]]:
    """Disputed grades as golden-set candidates: the golden-set fields, with ``label`` left for a person."""
    out = []
    for a in store.flagged():
        out.append(
            {
                "id": f"flag-{a.id}",
                "question_id": a.question_id,
                "answer": a.answer,
                "label": None,
                "grader_verdict": a.verdict,
                "grader_score": a.score,
                "grader": a.grader,
                "learner_claim": a.flag_comment,
                "flagged_at": a.flagged_at,
                "submitted_at": a.submitted_at,
                "rubric_version": a.rubric_version,
            }
        )
    return out


def history_rows(store: Store, question_id: str) -> list[Attempt]:
    return store.attempts(question_id)


def grade_attempt(
    store: Store, bank: QuestionBank, attempt_id: int, grade_fn: GradeFn, clock: Clock = utc_now
) -> tuple[Grade, Card]:
    """Steps 2 and 3 of one answer (module docstring) for an attempt already saved with ``save_answer``:
    grade it, then commit the grade and the next card. Feedback may be shown once this returns; if grading
    raises, the attempt stays saved, ungraded, and can be graded again later."""
    a = store.attempt(attempt_id)
    if a.graded:
        raise ValueError(f"attempt {attempt_id} is already graded")
    q = bank.get(a.question_id)
    grade = grade_fn(q, a.answer)
    card = store.record_grade(attempt_id, grade, bank.version, clock())
    return grade, card


@dataclass(frozen=True)
class QuestionStatus:
    """Where the learner stands on one question (the web app's lists and history table)."""

    question: Question
    mastery: Mastery
    attempts: int
    last_verdict: str | None
    last_score: float | None
    due: datetime | None  # None: never graded (new)


def question_statuses(bank: QuestionBank, store: Store) -> list[QuestionStatus]:
    """Every question in bank order with its mastery level, attempt count, last grade and next review."""
    cards = store.cards()
    verdicts = store.verdicts()
    counts: Counter[str] = Counter()
    last: dict[str, Attempt] = {}
    for a in store.attempts():
        counts[a.question_id] += 1
        if a.graded:
            last[a.question_id] = a
    out = []
    for q in bank.questions:
        card = cards.get(q.id)
        latest = last.get(q.id)
        out.append(
            QuestionStatus(
                question=q,
                mastery=mastery(card, verdicts.get(q.id, [])),
                attempts=counts[q.id],
                last_verdict=latest.verdict if latest else None,
                last_score=latest.score if latest else None,
                due=card.due if card else None,
            )
        )
    return out
