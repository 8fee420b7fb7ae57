"""`tutor grade-batch`: parse, call tutor.batch, render. Registered by one import in cli.py."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from tutor.batch import DEFAULT_BATCH_SIZE, ENGINES
from tutor.cli import app, err, fail, out


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.1f} rows/s" if speed else "– rows/s", style="progress.data.speed")


def _progress_bar(enabled: bool) -> Progress:
    console = Console(stderr=True)
    return Progress(
        TextColumn("[bold]grading"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not (enabled and console.is_terminal),
    )


@app.command("grade-batch")
def grade_batch(
    in_file: Annotated[
        Path,
        typer.Argument(
            metavar="IN",
            help='JSONL rows {"id", "question_id", "answer"}, or with "question" and "reference_answers" '
            "for questions outside the bank.",
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--out",
            metavar="OUT",
            help="Graded JSONL: one row per input row. An existing OUT is resumed: ids graded there are skipped.",
        ),
    ],
    judge: Annotated[
        str | None,
        typer.Option(
            metavar="SPEC", help="Also grade with an LLM judge: local, openai:MODEL, ollama:MODEL, fake."
        ),
    ] = None,
    engine: Annotated[
        str,
        typer.Option(
            help=f"Where to grade: {' or '.join(ENGINES)} (Ray Data, pip install 'tutor\\[scale]')."
        ),
    ] = "local",
    batch_size: Annotated[
        int, typer.Option(min=1, help="Answers per batch: embedded together, written together.")
    ] = DEFAULT_BATCH_SIZE,
    num_actors: Annotated[
        int,
        typer.Option(
            min=1, help="--engine ray: grader actors (one CPU each); RAY_ADDRESS picks the cluster."
        ),
    ] = 2,
    judge_concurrency: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Judge requests in flight per process (per actor with --engine ray); default "
            "TUTOR_JUDGE_CONCURRENCY or 2.",
        ),
    ] = None,
    strict: Annotated[bool, typer.Option(help="Exit with code 1 if any row could not be graded.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar (on a terminal).")] = True,
) -> None:
    """Grade a JSONL file of answers into OUT: resumable, streaming, on this machine or on Ray."""
    from tutor.batch import DuplicateIds, OutFileError, grade_file
    from tutor.batch.engine import Prepared, describe

    if engine not in ENGINES:
        fail(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if in_file.is_dir():
        fail(f"{in_file}: is a directory; pass a JSONL file")
    if not in_file.is_file():
        fail(f"{in_file}: no such file")
    if output.exists() and output.resolve() == in_file.resolve():
        fail("--out must not be the input file")
    if output.is_dir():
        fail(f"--out {output} is a directory; pass a file path such as {output / 'graded.jsonl'}")
    bank = _bank()
    grader = _grader()  # an unusable grader is a clear error before OUT is touched (Ray's driver uses it too)
    scorer = None
    if engine == "ray":
        from tutor.batch.ray_engine import RayUnavailable, _import_ray

        try:
            _import_ray()
        except RayUnavailable as e:
            fail(str(e))
        if judge is not None:
            _judge(judge, judge_concurrency)  # a bad spec is refused here, not in every actor
    else:
        from tutor.batch.scoring import Scorer

        scorer = Scorer(grader, _judge(judge, judge_concurrency) if judge is not None else None)

    bar = _progress_bar(progress)
    task = bar.add_task("grading", total=None)

    def on_start(prep: Prepared) -> None:
        info = describe(prep)
        if info["torn_bytes"]:
            err.print(
                f"OUT: removed a cut-short last line ({info['torn_bytes']} bytes) left by an interrupted run"
            )
        if info["already_graded"]:
            err.print(f"OUT: {info['already_graded']:,} ids already graded; they are skipped")
        if info["dropped_errors"]:
            err.print(f"OUT: {info['dropped_errors']:,} error rows from the last run are checked again")
        if info["foreign"]:
            err.print(
                f"[yellow]warning:[/] OUT holds {info['foreign']:,} graded ids that are not in {escape(str(in_file))}"
            )
        bar.update(task, total=info["pending"])
        bar.start()

    try:
        summary = grade_file(
            in_file,
            output,
            bank=bank,
            engine=engine,  # type: ignore[arg-type]  # checked against ENGINES above
            scorer=scorer,
            judge=judge,
            judge_concurrency=judge_concurrency,
            batch_size=batch_size,
            num_actors=num_actors,
            on_start=on_start,
            progress=lambda n: bar.advance(task, n),
        )
    except (DuplicateIds, OutFileError) as e:
        fail(str(e))
    except KeyboardInterrupt:
        bar.stop()
        err.print(
            f"interrupted: the rows graded so far are in {escape(str(output))}; run the same command again "
            "to grade the rest"
        )
        raise typer.Exit(130) from None
    finally:
        bar.stop()
    out.print(summary.line())
    if strict and summary.errors:
        err.print(
            f"[bold red]error:[/] {summary.errors} row(s) could not be graded (--strict); see the error rows in OUT"
        )
        raise typer.Exit(1)


def _bank() -> Any:
    from tutor.rubric import RubricError, default_bank

    try:
        return default_bank()
    except (RubricError, FileNotFoundError) as e:
        err.print(
            f"[yellow]warning:[/] question bank not loaded ({escape(str(e))}); rows naming bank questions "
            "become error rows"
        )
        return None


def _judge(spec: str, concurrency: int | None) -> Any:
    from tutor.batch.scoring import make_judge
    from tutor.judge import JudgeSpecError

    try:
        return make_judge(spec, concurrency)
    except JudgeSpecError as e:
        fail(f"--judge {spec!r}: {e}")
    except Exception as e:  # model not set up, SDK missing: say so before grading anything
        fail(f"--judge {spec!r}: cannot start the judge: {e}")


def _grader() -> Any:
    from tutor.grader import get_grader
    from tutor.paths import GraderUnavailable

    try:
        return get_grader()
    except GraderUnavailable as e:  # TUTOR_GRADER unknown, trained model missing or damaged, bad calibration
        fail(str(e))
