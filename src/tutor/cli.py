"""The `tutor` command: parse arguments, call the library, render. No grading logic lives here."""

from __future__ import annotations

import json
import sys
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from tutor.models import Grade, Question
from tutor.rubric import QuestionBank, RubricError, UnknownQuestion, default_bank, json_schema


class TutorGroup(TyperGroup):
    """The root command group. A data dir (TUTOR_HOME) that cannot be created or written is the learner's
    environment, not a bug: whichever command meets it ends with a one-line error naming the variable and
    the path (exit 2), never a traceback."""

    def resolve_command(self, ctx, args):  # type: ignore[no-untyped-def]
        name, cmd, rest = super().resolve_command(ctx, args)
        ctx.meta["tutor.help_only"] = "--help" in rest  # help needs no data dir
        return name, cmd, rest

    def invoke(self, ctx):  # type: ignore[no-untyped-def]
        from tutor.paths import DataDirError

        try:
            return super().invoke(ctx)
        except DataDirError as e:
            fail(str(e))


app = typer.Typer(
    cls=TutorGroup,
    help="A free-response tutor for LLM training, fine-tuning and alignment.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# emoji=False: learner text and ids like "nope:x" must print as typed, not as emoji codes.
out = Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)

VERDICT_STYLE = {"correct": "bold green", "partial": "bold yellow", "incorrect": "bold red"}


# Commands that never read or write the data dir; every other one checks it before doing anything.
NO_DATA_DIR = frozenset({"questions", "schema", "validate", "models"})


@app.callback()
def _check_data_dir(ctx: typer.Context) -> None:
    """A free-response tutor for LLM training, fine-tuning and alignment."""
    if ctx.invoked_subcommand not in NO_DATA_DIR and not ctx.meta.get("tutor.help_only"):
        from tutor.paths import tutor_home

        tutor_home()  # DataDirError -> TutorGroup's one-line error, before any work is done


def fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


def load_bank() -> QuestionBank:
    try:
        return default_bank()
    except (RubricError, FileNotFoundError) as e:
        fail(str(e))


def get_question(bank: QuestionBank, qid: str) -> Question:
    try:
        return bank.get(qid)
    except UnknownQuestion as e:
        fail(str(e))


def read_answer(answer: str) -> str:
    """ANSWER or '-' for stdin. Bytes that are not UTF-8 are an error, never a crash."""
    if answer != "-":
        return answer
    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        fail(f"the answer on standard input is not valid UTF-8 (byte {e.start}); save it as UTF-8 and retry")


@app.command()
def questions(
    chapter: Annotated[int | None, typer.Option(help="Only this chapter (11-20).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
) -> None:
    """List the question bank."""
    bank = load_bank()
    if chapter is not None and chapter not in bank.chapters:
        fail(f"no chapter {chapter}; chapters are {min(bank.chapters)}-{max(bank.chapters)}")
    qs = bank.chapter(chapter) if chapter is not None else bank.questions
    if as_json:
        rows = [
            {"id": q.id, "chapter": q.chapter, "chapter_title": q.chapter_title, "question": q.question}
            for q in qs
        ]
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    current = None
    for q in qs:
        if q.chapter != current:
            current = q.chapter
            out.print(f"\n[bold]Chapter {q.chapter}: {escape(q.chapter_title)}[/]")
        out.print(f"  [cyan]{q.id:7}[/] {escape(q.question)}")


def render_grade(g: Grade, q: Question, show_reference: bool = True) -> None:
    style = VERDICT_STYLE[g.verdict]
    out.print(f"[{style}]{g.verdict.upper()}[/]  score {g.score:.2f}")
    for c in g.covered:
        out.print(f"  [green]✓[/] {escape(c.text)}\n      [dim]you wrote: “{escape(c.sentence)}”[/]")
    for m in g.missed:
        why = " [dim](contradicted)[/]" if m.reason == "contradicted" else ""
        out.print(f"  [red]✗[/] {escape(m.text)}{why}")
    for mc in g.misconceptions:
        out.print(
            f"  [magenta]![/] you wrote: “{escape(mc.sentence)}”\n      [bold]{escape(mc.correction)}[/]"
        )
    if g.numeric is not None:
        mark = "[green]✓[/]" if g.numeric.correct else "[red]✗[/]"
        found = ", ".join(g.numeric.found) or "no number with a unit"
        out.print(f"  {mark} number: {escape(found)} (expected {escape(g.numeric.expected)})")
    out.print(f"\n{escape(g.feedback)}")
    if show_reference:
        out.print(f"\n[bold]Reference explanation[/]\n{escape(q.reference)}")


@app.command()
def grade(
    question_id: Annotated[str, typer.Argument(help="Question id, e.g. ch13-1.")],
    answer: Annotated[str, typer.Argument(help="Your answer, or - to read it from standard input.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    judge: Annotated[
        str | None,
        typer.Option(
            "--judge",
            metavar="SPEC",
            help="Also grade with an LLM judge: local, openai:MODEL, ollama:MODEL, fake.",
        ),
    ] = None,
) -> None:
    """Grade one answer to one question."""
    bank = load_bank()
    q = get_question(bank, question_id)
    text = read_answer(answer)
    judge_obj = None
    if judge is not None:
        from tutor.judge import JudgeSpecError, resolve_judge

        try:
            judge_obj = resolve_judge(judge)
        except JudgeSpecError as e:
            fail(str(e))
    from tutor.grader import get_grader  # heavy: only commands that grade pay for it
    from tutor.paths import GraderUnavailable

    try:
        grader = get_grader()
    except GraderUnavailable as e:
        fail(str(e))
    if judge_obj is not None:
        from tutor.judge.fuse import grade_with_judge

        g = grade_with_judge(q, text, judge_obj, grader)
    else:
        g = grader.grade(q, text)
    if as_json:
        print(g.model_dump_json(indent=2))
    else:
        out.print(f"[bold]{q.id}[/] {escape(q.question)}\n")
        render_grade(g, q)
        if g.judge is not None:
            from tutor.cli_judge import render_judge

            render_judge(g)


@app.command()
def schema() -> None:
    """Print the JSON Schema of a rubric chapter file."""
    print(json.dumps(json_schema(), indent=2))


@app.command()
def validate(
    directory: Annotated[str | None, typer.Argument(help="Rubric directory (default: the bank).")] = None,
) -> None:
    """Check rubric files; errors name the file, the question and the field."""
    from pathlib import Path

    try:
        bank = QuestionBank.load(Path(directory) if directory else None)
    except (RubricError, FileNotFoundError) as e:
        fail(str(e))
    out.print(f"ok: {len(bank)} questions in {len(bank.chapters)} chapters ({bank.source})")


models_app = typer.Typer(help="The embedding model files (the ONNX export).", no_args_is_help=True)
app.add_typer(models_app, name="models")


@models_app.command("build")
def models_build(
    force: Annotated[bool, typer.Option("--force", help="Export again even if the files exist.")] = False,
) -> None:
    """Export the embedding model to ONNX (fp32 and int8) once; `make setup` runs this."""
    from tutor.embed_onnx import OnnxUnavailable, build, build_info_path

    try:
        paths = build(force=force)
    except OnnxUnavailable as e:
        fail(f"{e}. Grading still works with sentence-transformers (slower start).", code=1)
    for precision, path in paths.items():
        out.print(f"{precision}: {path}")
    out.print(f"build info: {build_info_path()}")


import tutor.cli_batch  # noqa: E402  (registers grade-batch)
import tutor.cli_eval  # noqa: E402  (registers eval, calibrate)
import tutor.cli_judge  # noqa: E402  (registers judge setup, judge serve)
import tutor.cli_study  # noqa: E402  (registers study, progress, history, flags)
import tutor.cli_train  # noqa: E402  (registers train)
import tutor.cli_web  # noqa: E402, F401  (registers web)

if __name__ == "__main__":  # pragma: no cover
    app()
