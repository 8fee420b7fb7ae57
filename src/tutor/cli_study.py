"""`tutor study`, `tutor progress`, `tutor history`, `tutor flags export`: parse, call tutor.study, render.

Imported by tutor.cli (one line at its end), which registers these commands on the main app.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.padding import Padding

from tutor.cli import app, fail, get_question, load_bank, out
from tutor.models import Grade, Question
from tutor.paths import GraderUnavailable
from tutor.store import Store, StoreError
from tutor.study import (
    GradeFn,
    StudySession,
    default_grade_fn,
    default_warmup,
    flag_candidates,
    progress_report,
)


def open_store() -> Store:
    try:
        return Store()
    except StoreError as e:
        fail(str(e))


def judge_grade_fn(spec: str) -> GradeFn:
    """Embedding grade sharpened by the LLM judge ``spec`` (e.g. ``local``, ``ollama:MODEL``)."""
    from tutor import judge as judge_mod

    try:
        judge = judge_mod.resolve_judge(spec)
    except Exception as e:  # spec and setup errors say what is wrong and which forms exist
        fail(f"--judge: {e}")

    def grade(q: Question, answer: str) -> Grade:
        from tutor.grader import get_grader

        return judge_mod.grade_with_judge(q, answer, judge, get_grader())

    return grade


def _enable_line_editing() -> None:
    if sys.stdin.isatty():
        with contextlib.suppress(ImportError):  # not on every platform
            import readline  # noqa: F401  (arrow keys and history in input())


@app.command()
def study(
    chapter: Annotated[int | None, typer.Option(help="Only questions from this chapter (11-20).")] = None,
    new: Annotated[
        int, typer.Option("--new", min=0, help="At most K new questions after the due reviews.")
    ] = 5,
    judge: Annotated[
        str | None,
        typer.Option(
            help="Grade with an LLM judge as well, e.g. 'ollama:qwen2.5:0.5b' (default: embedding grader)."
        ),
    ] = None,
) -> None:
    """Study: due reviews first, then new questions. Answers, grades and the schedule are saved."""
    bank = load_bank()
    if chapter is not None and chapter not in bank.chapters:
        fail(f"no chapter {chapter}; chapters are {', '.join(str(c) for c in sorted(bank.chapters))}")
    grade_fn = judge_grade_fn(judge) if judge else default_grade_fn()
    store = open_store()
    _enable_line_editing()
    # A progress bar from the model loader would scribble over the question the learner is reading.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    session = StudySession(
        bank,
        store,
        out,
        grade_fn=grade_fn,
        warmup=default_warmup,
        chapter=chapter,
        new_limit=new,
    )
    try:
        session.run()
    except sqlite3.Error as e:  # e.g. disk full, or another process holding a lock for over 30 s
        fail(f"{store.path}: could not save progress ({e}). Answers saved before this point are kept.")
    except GraderUnavailable as e:  # raised when grading starts; the answer was saved before
        fail(f"{e} Your answers are saved (the last one ungraded; `tutor history` shows it).")
    finally:
        store.close()
    if session.warmup is not None and not session.warmup.stop(timeout=1):
        # Still loading the model (the learner quit early). Everything is committed and closed; exiting
        # normally would wait for the load, or abort inside torch while the interpreter shuts down.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


@app.command()
def progress(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON list, one object per chapter.")
    ] = False,
) -> None:
    """Per chapter: questions seen, mastery levels, reviews due, most frequent misconceptions."""
    bank = load_bank()
    store = open_store()
    rows = progress_report(bank, store)
    store.close()
    if as_json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    # Plain fixed-width lines: rich tables drop narrow columns on an 80-column terminal.
    cols = ("ch", "seen", "new", "learning", "familiar", "mastered", "due now", "due ≤7d")
    widths = [len(c) for c in cols]
    out.print("[bold]" + "  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=True)) + "  title[/]")
    room = max(out.width - sum(widths) - 2 * len(widths), 12)
    for r in rows:
        m = r["mastery"]
        cells = (
            r["chapter"],
            f"{r['seen']}/{r['questions']}",
            m["new"],
            m["learning"],
            m["familiar"],
            m["mastered"],
            r["due_now"],
            r["due_next_7_days"],
        )
        title = r["title"] if len(r["title"]) <= room else r["title"][: room - 1] + "…"
        line = "  ".join(str(v).rjust(w) for v, w in zip(cells, widths, strict=True))
        out.print(f"{line}  {escape(title)}", soft_wrap=False)
    out.print(
        "[dim]Levels: learning = still in short-term steps or last answer incorrect; mastered = FSRS "
        "stability ≥ 21 days and the last two answers correct; familiar = in between.[/]"
    )
    shown = [r for r in rows if r["top_misconceptions"]]
    if shown:
        out.print("\n[bold]Misconceptions you have shown most often[/]")
        for r in shown:
            for m in r["top_misconceptions"]:
                out.print(f"  {m['question_id']}  ×{m['count']}  {escape(m['statement'])}")


@app.command()
def history(
    question_id: Annotated[str, typer.Argument(help="Question id, e.g. ch13-1.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list of attempts.")] = False,
) -> None:
    """Past attempts at one question, oldest first."""
    bank = load_bank()
    q = get_question(bank, question_id)
    store = open_store()
    attempts = store.attempts(q.id)
    card = store.card(q.id)
    store.close()
    if as_json:
        print(
            json.dumps(
                [
                    {
                        "id": a.id,
                        "submitted_at": a.submitted_at,
                        "answer": a.answer,
                        "hints_used": a.hints_used,
                        "verdict": a.verdict,
                        "score": a.score,
                        "grader": a.grader,
                        "flagged": a.flagged,
                        "flag_comment": a.flag_comment,
                        "misconceptions": [m.id for m in a.grade.misconceptions] if a.grade else [],
                    }
                    for a in attempts
                ],
                indent=2,
                ensure_ascii=False,
            )
        )
        return
    out.print(f"[bold]{q.id}[/] {escape(q.question)}\n")
    if not attempts:
        out.print("No attempts yet.")
        return
    from tutor.study import VERDICT_STYLE

    for a in attempts:
        when = a.submitted_at.replace("T", " ")[:16]
        if a.verdict is not None:
            result = f"[{VERDICT_STYLE.get(a.verdict, 'bold')}]{a.verdict}[/] {a.score or 0:.2f}"
        else:
            result = "[dim]not graded (the session ended before grading)[/]"
        hints = f" · {a.hints_used} hint(s)" if a.hints_used else ""
        out.print(f"[bold]#{a.id}[/] {when} UTC · {result}{hints}")
        out.print(Padding(escape(a.answer), (0, 0, 0, 4)), soft_wrap=False)
        if a.grade is not None:
            for m in a.grade.misconceptions:
                out.print(f"    [magenta]misconception:[/] {escape(m.statement)}", soft_wrap=False)
        if a.flagged:
            out.print(f"    [magenta]disputed:[/] {escape(a.flag_comment or '')}", soft_wrap=False)
    if card is not None:
        out.print(f"Next review: {card.due.astimezone().strftime('%Y-%m-%d %H:%M')}")


flags_app = typer.Typer(help="Disputed grades (flagged with ! during study).", no_args_is_help=True)
app.add_typer(flags_app, name="flags")


@flags_app.command("export")
def flags_export(
    file: Annotated[Path, typer.Argument(help="JSONL file to write ('-' for standard output).")],
) -> None:
    """Write disputed grades as golden-set candidates (JSONL; `label` is null, for a person to fill in)."""
    store = open_store()
    rows = flag_candidates(store)
    store.close()
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if str(file) == "-":
        sys.stdout.write(text)
        return
    try:
        file.write_text(text, encoding="utf-8")
    except OSError as e:
        fail(f"{file}: cannot write ({e.strerror})")
    out.print(f"wrote {len(rows)} disputed grade(s) to {file}")
