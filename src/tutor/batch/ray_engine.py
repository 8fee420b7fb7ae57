"""The Ray Data engine of `tutor grade-batch` (optional extra: ``pip install 'tutor[scale]'``).

    read_json(rows to grade) -> map_batches(a grader actor per worker, loaded once) -> the driver appends
    each graded batch to OUT

The driver keeps every guarantee of the local engine, because it alone reads the input and writes OUT:
it checks each row (error rows with line numbers, ids already in OUT skipped), stages the rows left to
grade in a JSONL file beside OUT (`ray.data.read_json` on the raw input would stop at the first bad line
and knows no line numbers), and writes the graded rows with the same append-and-fsync contract, so a
killed run resumes the same way. Rows come back in the order the actors finish them, not input order.

Every actor grades with the same code as the local engine (`Scorer`: one `grade_many` per batch) and is
handed the driver's rubric and calibration, so the grades are identical whichever engine ran them. Ray
connects to the cluster at RAY_ADDRESS when it is set; otherwise it starts a local one for this run.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tutor.batch.engine import Prepared, Progress, Summary, _Dedup
from tutor.batch.rows import Item, Questions, RowError, iter_rows, parse
from tutor.batch.scoring import Scorer, error_row, make_judge

if TYPE_CHECKING:
    from tutor.rubric import QuestionBank

# Settings that decide how an actor grades or where its judge is, passed on from the driver's environment.
# TUTOR_HOME and the paths only make sense on the same machine, so they go to a local cluster only. Secrets
# (OPENAI_API_KEY) are not shipped: a cluster's workers need them in their own environment.
_ENV_ALWAYS = (
    "TUTOR_GRADER",
    "TUTOR_EMBEDDER",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "OPENAI_BASE_URL",
    "OLLAMA_HOST",
    "TUTOR_JUDGE_CONCURRENCY",
)
_ENV_LOCAL = ("TUTOR_HOME", "TUTOR_MODELS", "TUTOR_RUBRICS", "TUTOR_JUDGE_MODEL")
# pyarrow's JSON reader needs each row inside one block; answers are cut at 5,000 characters when graded,
# but a row may carry more (a long answer, meta fields).
_BLOCK_BYTES = 16 << 20


class RayUnavailable(RuntimeError):
    """Ray Data is not installed (or cannot start)."""


def _import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise RayUnavailable(
            f"--engine ray needs Ray Data ({e}); install the extra: pip install 'tutor[scale]'"
        ) from e
    return ray


class GradeActor:
    """One per Ray worker: loads the grader once, then grades the batches Ray Data hands it."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        os.environ.update(cfg["env"])
        from tutor.grader import get_grader
        from tutor.models import Question
        from tutor.rubric import QuestionBank

        grader = get_grader()
        ours, theirs = getattr(grader, "t", None), cfg["thresholds"]
        if ours is not None and theirs is not None and ours.model_dump() != theirs:
            raise RuntimeError(
                f"this Ray worker grades with calibration {ours.version!r}, the driver with "
                f"{theirs.get('version')!r}: install the same tutor (and calibration) on every node"
            )
        if grader.name != cfg["grader"]:
            raise RuntimeError(
                f"this Ray worker grades with {grader.name!r}, the driver with {cfg['grader']!r}: install the "
                "same tutor (and trained model) on every node"
            )
        bank = (
            QuestionBank([Question.model_validate(q) for q in cfg["questions"]]) if cfg["questions"] else None
        )
        self.questions = Questions(bank)
        judge = make_judge(cfg["judge"], cfg["judge_concurrency"]) if cfg["judge"] else None
        self.scorer = Scorer(grader, judge)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = [
            parse(int(n), str(t).encode("utf-8"), self.questions)
            for n, t in zip(batch["line"], batch["row"], strict=True)
        ]
        return {
            "out": np.array(self.scorer.out_lines(rows), dtype=object),
            "graded": np.array([isinstance(r, Item) for r in rows], dtype=bool),
        }


def _driver_pass(
    in_path: Path, prep: Prepared, stage: Path, summary: Summary, progress: Progress | None
) -> int:
    """Check every input row; write error rows to OUT, stage the rows to grade. Returns how many."""
    dedup = _Dedup(prep.out.resume.done, check_duplicates=False)  # the file was scanned for them
    staged = 0
    errors: list[str] = []
    done_here = 0

    def flush() -> None:
        nonlocal done_here
        prep.out.append(errors)
        summary.errors += len(errors)
        errors.clear()
        if progress is not None and done_here:
            progress(done_here)
        done_here = 0

    with stage.open("w", encoding="utf-8") as f:
        for row in iter_rows(in_path, prep.questions):
            summary.rows += 1
            r = dedup(row)
            if r is None:
                summary.skipped += 1
                done_here += 1
            elif isinstance(r, RowError):
                errors.append(error_row(r))
                done_here += 1
            else:
                f.write(json.dumps({"line": r.line, "row": r.text}, ensure_ascii=False) + "\n")
                staged += 1
            if done_here >= 1000:
                flush()
    flush()
    return staged


def _start(ray: Any, num_actors: int, cpus_per_actor: int) -> bool:
    """Connect to RAY_ADDRESS, or start a local Ray sized for the actors. True if this call started it."""
    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS"):
        ray.init(logging_level=logging.WARNING)
    else:
        cpus = max(os.cpu_count() or 1, num_actors * cpus_per_actor)
        ray.init(num_cpus=cpus, include_dashboard=False, logging_level=logging.WARNING)
    return True


def _iter_graded(
    ray: Any, stage: Path, config: dict[str, Any], batch_size: int, num_actors: int, cpus_per_actor: int
) -> Iterator[dict[str, np.ndarray]]:
    import pyarrow.json as pj

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the CLI shows one bar for the whole job
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    # Reading takes no CPU slot: with every slot held by an actor, a read task that needs one never runs.
    ds = ray.data.read_json(str(stage), num_cpus=0, read_options=pj.ReadOptions(block_size=_BLOCK_BYTES))
    ds = ds.map_batches(
        GradeActor,
        fn_constructor_kwargs={"cfg": config},
        compute=ray.data.ActorPoolStrategy(size=num_actors),
        batch_size=batch_size,
        num_cpus=cpus_per_actor,
        batch_format="numpy",
    )
    yield from ds.iter_batches(batch_size=None, batch_format="numpy")


def actor_config(
    bank: QuestionBank | None,
    judge: str | None,
    judge_concurrency: int | None,
    cpus_per_actor: int,
    remote: bool,
) -> dict[str, Any]:
    """What every actor needs to grade as the driver would: its settings, grader, calibration and rubric."""
    from tutor.grader import get_grader

    grader = get_grader()
    thresholds = getattr(grader, "t", None)
    env = {k: os.environ[k] for k in (*_ENV_ALWAYS, *(() if remote else _ENV_LOCAL)) if k in os.environ}
    # One onnxruntime thread per CPU the actor holds: two actors on two cores, not four threads fighting.
    env["TUTOR_ONNX_THREADS"] = str(cpus_per_actor)
    return {
        "env": env,
        "grader": grader.name,
        "thresholds": thresholds.model_dump() if thresholds is not None else None,
        "questions": [q.model_dump() for q in bank.questions] if bank is not None else [],
        "judge": judge,
        "judge_concurrency": judge_concurrency,
    }


def run_ray(
    in_path: Path,
    prep: Prepared,
    summary: Summary,
    judge: str | None,
    judge_concurrency: int | None,
    batch_size: int,
    num_actors: int,
    progress: Progress | None = None,
    cpus_per_actor: int = 1,
) -> Summary:
    ray = _import_ray()
    remote = bool(os.environ.get("RAY_ADDRESS")) and not ray.is_initialized()
    config = actor_config(prep.questions.bank, judge, judge_concurrency, cpus_per_actor, remote)
    stage = prep.out.path.with_name(f".{prep.out.path.name}.pending.jsonl")
    try:
        if _driver_pass(in_path, prep, stage, summary, progress) == 0:
            return summary
        started = _start(ray, num_actors, cpus_per_actor)
        try:
            for batch in _iter_graded(ray, stage, config, batch_size, num_actors, cpus_per_actor):
                lines = [str(x) for x in batch["out"]]
                prep.out.append(lines)
                graded = int(batch["graded"].sum())
                summary.graded += graded
                summary.errors += len(lines) - graded
                if progress is not None:
                    progress(len(lines))
        finally:
            if started:
                ray.shutdown()
    finally:
        stage.unlink(missing_ok=True)
    return summary
