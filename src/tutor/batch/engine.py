"""`tutor grade-batch` as a library: grade a JSONL file (or any stream of lines) into OUT, resumably.

    summary = grade_file(Path("answers.jsonl"), Path("graded.jsonl"))           # local engine
    summary = grade_file(..., engine="ray", num_actors=4)                       # Ray Data (tutor[scale])

Memory stays flat whatever the size of the input: rows are read, graded and written a batch at a time
(two batches at most in memory). What grows with the input is an 8-byte hash per row (the index that
finds duplicate ids before grading) and, when resuming, the ids OUT already holds.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from tutor.batch.outfile import OutFile
from tutor.batch.rows import Item, Questions, Row, RowError, Scan, iter_rows, scan_ids
from tutor.batch.scoring import Scorer, make_judge
from tutor.rubric import QuestionBank

Engine = Literal["local", "ray"]
ENGINES: tuple[Engine, ...] = ("local", "ray")
DEFAULT_BATCH_SIZE = 256

Progress = Callable[[int], None]  # called with the number of input rows just dealt with


class DuplicateIds(ValueError):
    """The input names an id more than once; found before anything is graded or written."""

    def __init__(self, path: Path, duplicates: dict[str, list[int]]):
        self.duplicates = duplicates
        shown = "; ".join(
            f"{key!r} on lines {', '.join(map(str, lines))}" for key, lines in list(duplicates.items())[:10]
        )
        more = f" (and {len(duplicates) - 10} more)" if len(duplicates) > 10 else ""
        super().__init__(
            f"{path}: {len(duplicates)} id(s) appear more than once: {shown}{more}. Every row needs its own "
            "id (OUT has one row per id); nothing was graded"
        )


class Summary(BaseModel):
    """What one run did. `rows` counts every non-blank input line this run read."""

    engine: str
    rows: int = 0
    graded: int = 0
    errors: int = 0
    skipped: int = 0  # already graded in OUT by an earlier run
    seconds: float = 0.0
    out: str = ""

    @property
    def answers_per_s(self) -> float:
        return self.graded / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        return (
            f"{self.rows:,} rows: {self.graded:,} graded, {self.errors:,} errors, {self.skipped:,} already in "
            f"OUT; {self.seconds:.1f} s, {self.answers_per_s:.1f} answers/s ({self.engine}) -> {self.out}"
        )


@dataclass
class Prepared:
    """A run that passed its checks: OUT locked and recovered, the input scanned."""

    out: OutFile
    scan: Scan | None
    questions: Questions

    @property
    def pending(self) -> int | None:
        """Rows still to deal with (for a progress bar), when the input was scanned."""
        if self.scan is None:
            return None
        return self.scan.rows - self.scan.count_known(self.out.resume.done)

    @property
    def foreign(self) -> int:
        """Ids graded in OUT that the input does not have (OUT from another input?)."""
        done = self.out.resume.done
        return len(done) - self.scan.count_known(done) if self.scan is not None else 0


def _batched(rows: Iterable[Row], n: int) -> Iterator[list[Row]]:
    it = iter(rows)
    while chunk := list(itertools.islice(it, n)):
        yield chunk


class _Dedup:
    """Skips ids OUT already holds. A scanned file has no duplicate ids left (they were refused); a stream
    that cannot be read twice is checked as it goes, a second row with an id becoming an error row, at the
    cost of remembering every id."""

    def __init__(self, done: set[str], check_duplicates: bool):
        self.done = done
        self.seen: dict[str, int] | None = {} if check_duplicates else None

    def __call__(self, row: Row) -> Row | None:
        if isinstance(row, RowError):
            return row
        if row.key in self.done:
            return None
        if self.seen is not None:
            first = self.seen.setdefault(row.key, row.line)
            if first != row.line:
                return RowError(row.line, f"duplicate id {row.id!r} (first on line {first})", row.id)
        return row


# Batches graded at once. Two keep both cores busy: while one batch is in the encoder (onnxruntime, which
# releases the GIL), the other is in the grader's Python steps (guards before, matching after), which would
# otherwise leave a core idle. Memory holds at most this many batches.
IN_FLIGHT = 2


def run_local(
    rows: Iterable[Row],
    out: OutFile,
    scorer: Scorer,
    summary: Summary,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Progress | None = None,
    check_duplicates: bool = True,
) -> Summary:
    """Grade `rows` a batch at a time, appending each batch to OUT in input order once it is graded.
    `check_duplicates=False` when the input was scanned for duplicate ids already."""
    dedup = _Dedup(out.resume.done, check_duplicates)
    queue: deque[tuple[int, list[Row], Future[list[str]]]] = deque()

    def write_oldest() -> None:
        n, kept, lines = queue.popleft()
        out.append(lines.result())
        n_items = sum(isinstance(r, Item) for r in kept)
        summary.graded += n_items
        summary.errors += len(kept) - n_items
        if progress is not None:
            progress(n)

    with ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix="tutor-batch") as pool:
        try:
            for chunk in _batched(rows, batch_size):
                summary.rows += len(chunk)
                kept = [r for r in map(dedup, chunk) if r is not None]
                summary.skipped += len(chunk) - len(kept)
                queue.append((len(chunk), kept, pool.submit(scorer.out_lines, kept)))
                if len(queue) >= IN_FLIGHT:
                    write_oldest()
            while queue:
                write_oldest()
        finally:
            for _, _, lines in queue:  # interrupted: do not start batches that will never be written
                lines.cancel()
    return summary


@contextlib.contextmanager
def open_run(out_path: Path, bank: QuestionBank | None, in_path: Path | None = None) -> Iterator[Prepared]:
    """Check the input for duplicate ids (DuplicateIds, before OUT is touched), then lock and recover OUT
    (OutFileError when it cannot be used) for the duration of the block."""
    scan = None
    if in_path is not None:
        scan = scan_ids(in_path)
        if scan.duplicates:
            raise DuplicateIds(in_path, scan.duplicates)
    with OutFile(out_path) as out:
        yield Prepared(out, scan, Questions(bank))


def grade_stream(
    lines: Iterable[bytes],
    out_path: Path,
    *,
    bank: QuestionBank | None = None,
    scorer: Scorer | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Progress | None = None,
) -> Summary:
    """Grade a stream of JSONL lines (read once, never held whole) into OUT with the local engine."""
    t0 = time.perf_counter()
    summary = Summary(engine="local", out=str(out_path))
    with open_run(out_path, bank) as prep:
        rows = iter_rows(lines, prep.questions)
        run_local(rows, prep.out, scorer or Scorer(), summary, batch_size, progress)
    summary.seconds = time.perf_counter() - t0
    return summary


def grade_file(
    in_path: Path,
    out_path: Path,
    *,
    bank: QuestionBank | None = None,
    engine: Engine = "local",
    scorer: Scorer | None = None,
    judge: str | None = None,
    judge_concurrency: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    num_actors: int = 2,
    on_start: Callable[[Prepared], None] | None = None,
    progress: Progress | None = None,
) -> Summary:
    """Grade IN into OUT. The local engine grades with `scorer` (default: the shared grader, plus `judge`
    if given); the Ray engine builds one per actor from `judge` and `judge_concurrency`. `on_start` sees
    the prepared run (rows pending, ids from another input) before the first row is graded."""
    t0 = time.perf_counter()
    summary = Summary(engine=engine, out=str(out_path))
    with open_run(out_path, bank, in_path) as prep:
        if on_start is not None:
            on_start(prep)
        if engine == "ray":
            from tutor.batch.ray_engine import run_ray

            run_ray(in_path, prep, summary, judge, judge_concurrency, batch_size, num_actors, progress)
        else:
            if scorer is None:
                scorer = Scorer(judge=make_judge(judge, judge_concurrency) if judge else None)
            rows = iter_rows(in_path, prep.questions)
            run_local(rows, prep.out, scorer, summary, batch_size, progress, check_duplicates=False)
    summary.seconds = time.perf_counter() - t0
    return summary


def describe(prep: Prepared) -> dict[str, Any]:
    """What the CLI tells the user before grading starts."""
    r = prep.out.resume
    return {
        "pending": prep.pending,
        "already_graded": len(r.done),
        "dropped_errors": r.dropped_errors,
        "torn_bytes": r.torn_bytes,
        "foreign": prep.foreign,
    }
