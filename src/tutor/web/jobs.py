"""What the web app keeps beside the request handlers: one database connection per thread, and the LLM
judge's grades being computed in the background."""

from __future__ import annotations

import contextlib
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Literal

from tutor.judge.base import Judge
from tutor.models import Grade, Question
from tutor.rubric import QuestionBank
from tutor.schedule import Clock
from tutor.store import Store
from tutor.study import GradeFn

log = logging.getLogger("tutor.web")


class Stores:
    """One ``Store`` per thread. Handlers run on a pool of threads; a SQLite connection's transactions must
    not interleave, and WAL + ``BEGIN IMMEDIATE`` already serialise writers across connections (and across
    processes: the CLI on the same TUTOR_HOME)."""

    def __init__(self, path: Path, clock: Clock):
        self.path = path
        self.clock = clock
        self._local = threading.local()
        self._all: list[Store] = []
        self._lock = threading.Lock()
        self._generation = 0  # bumped by close_all: a thread's store from before is closed

    def get(self) -> Store:
        store: Store | None = getattr(self._local, "store", None)
        if store is None or self._local.generation != self._generation:
            store = Store(self.path, clock=self.clock)
            with self._lock:
                self._all.append(store)
                self._local.store, self._local.generation = store, self._generation
        return store

    def close_all(self) -> None:
        with self._lock:
            self._generation += 1
            for s in self._all:
                s.close()
            self._all.clear()


JobState = Literal["none", "running", "done", "failed"]


def judged_grade_fn(judge: Judge) -> GradeFn:
    """The grade ``tutor study --judge`` gives: the embedding grade sharpened by the judge."""

    def grade(q: Question, answer: str) -> Grade:
        from tutor.grader import get_grader
        from tutor.judge.fuse import grade_with_judge

        return grade_with_judge(q, answer, judge, get_grader())

    return grade


class JudgeJobs:
    """Judged grades computed off the request path: the page shows the embedding grade at once and polls
    until the judged grade has replaced it in the store (``Store.replace_grade``).

    Jobs live in memory: after a restart an unfinished job is gone, and the attempt keeps the embedding
    grade it was recorded with."""

    def __init__(self, grade_fn: GradeFn, bank: QuestionBank, stores: Stores, workers: int = 2):
        self.grade_fn = grade_fn
        self.bank = bank
        self.stores = stores
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tutor-web-judge")
        self._jobs: dict[int, Future[None]] = {}
        self._lock = threading.Lock()

    def submit(self, attempt_id: int, q: Question, answer: str) -> None:
        with self._lock:
            self._jobs[attempt_id] = self._pool.submit(self._run, attempt_id, q, answer)

    def _run(self, attempt_id: int, q: Question, answer: str) -> None:
        try:
            grade = self.grade_fn(q, answer)
            self.stores.get().replace_grade(attempt_id, grade, self.bank.version)
        except Exception:  # the embedding grade stands; the page says the judge failed
            log.exception("judging attempt %s failed", attempt_id)
            raise

    def state(self, attempt_id: int) -> JobState:
        with self._lock:
            job = self._jobs.get(attempt_id)
        if job is None:
            return "none"
        if not job.done():
            return "running"
        return "failed" if job.cancelled() or job.exception() is not None else "done"

    def wait(self, attempt_id: int, timeout: float | None = None) -> JobState:
        """Block until the job ends (tests and the benchmark use it); returns its state."""
        with self._lock:
            job = self._jobs.get(attempt_id)
        if job is not None:
            with contextlib.suppress(Exception):
                job.exception(timeout)
        return self.state(attempt_id)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
