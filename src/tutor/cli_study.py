"""`tutor study`, `tutor progress`, `tutor history`, `tutor flags export`: parse, call tutor.study, render.

Imported by tutor.cli (one line at its end), which registers these commands on the main app.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from tutor.cli import app, fail, get_question, load_bank, out
from tutor.models import Grade, Question
from tutor.store import Store, StoreError
from tutor.study import (
    GradeFn,
    StudySession,
    Warmup,
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
    """A grade function that asks the LLM judge ``spec`` (e.g. ``ollama:qwen2.5:0.5b``)."""
    try:
        from tutor import judge as judge_mod
    except ImportError:
        fail(
            "the LLM judge is not available in this installation (module tutor.judge is missing); "
            "run `tutor study` without --judge to use the embedding grader"
        )
    try:
        judge = judge_mod.resolve_judge(spec)
    except Exception as e:  # the registry's errors already say which spec is wrong and what exists
        fail(f"--judge {spec}: {e}")

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
    qs = bank.chapter(chapter) if chapter is not None else bank.questions
    _enable_line_editing()
    session = StudySession(
        bank,
        store,
        out,
        grade_fn=grade_fn,
        warmup=Warmup(default_warmup(qs)),
        chapter=chapter,
        new_limit=new,
    )
    try:
        session.run()
    finally:
        store.close()
    if session.warmup is not None and not session.warmup.done:
        # Quit before the model finished loading: everything is committed, so do not wait for it.
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
    t = Table(title="Progress")
    for col in ("ch", "seen", "new", "learning", "familiar", "mastered", "due now", "due ≤7d"):
        t.add_column(col, justify="right", no_wrap=True)
    t.add_column("title", no_wrap=True, overflow="ellipsis", max_width=40)
    for r in rows:
        m = r["mastery"]
        t.add_row(
            str(r["chapter"]),
            f"{r['seen']}/{r['questions']}",
            str(m["new"]),
            str(m["learning"]),
            str(m["familiar"]),
            str(m["mastered"]),
            str(r["due_now"]),
            str(r["due_next_7_days"]),
            escape(r["title"]),
        )
    out.print(t, soft_wrap=False)
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
    t = Table(show_lines=True)
    for col in ("#", "submitted", "verdict", "score", "hints", "answer"):
        t.add_column(col)
    for a in attempts:
        verdict = a.verdict or "[dim]not graded (session ended first)[/]"
        if a.flagged:
            verdict += f"\n[magenta]disputed:[/] {escape(a.flag_comment or '')}"
        score = f"{a.score:.2f}" if a.score is not None else "-"
        t.add_row(
            str(a.id),
            a.submitted_at.replace("T", " ")[:16],
            verdict,
            score,
            str(a.hints_used),
            escape(a.answer),
        )
    out.print(t, soft_wrap=False)
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
