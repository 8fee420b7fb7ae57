"""OUT, the graded file: one JSON object per line, appended a batch at a time, safe to kill at any point.

The contract that makes a rerun finish an interrupted run:
- A row is appended only once it is complete, and each batch's rows go to the file in one write, then to
  disk (fsync). A kill -9 can therefore cut at most the last line short.
- A line counts only if it ends with a newline and parses as a row this program writes. On the next run a
  cut-short last line is removed before anything is appended, so it is never taken for a grade and never
  glued to the next row.
- Graded rows (those with a "verdict") are final: their ids are skipped on a rerun. Error rows are not: a
  rerun drops them and reads those lines again, so a line fixed in the meantime gets graded and the error
  rows always describe the input as it is now.
- One run writes to an OUT at a time (a lock file beside it), or two runs would grade the same ids twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tutor.batch.rows import id_key


class OutFileError(Exception):
    """OUT cannot be used (not a file this program wrote, locked by another run, unwritable)."""


@dataclass
class Resume:
    """What an existing OUT already holds."""

    done: set[str] = field(default_factory=set)  # id keys graded
    dropped_errors: int = 0  # error rows removed, to be read again
    torn_bytes: int = 0  # bytes of a cut-short last line removed


def recover(path: Path) -> Resume:
    """Read OUT, drop a cut-short last line and the error rows, and return the graded ids. OUT is changed
    only when something has to go, and atomically (a kill during recovery leaves the old file)."""
    res = Resume()
    if not path.exists():
        return res
    good_end = 0  # byte offset just past the last complete line
    with path.open("rb") as f:
        for n, line in enumerate(f, start=1):
            if not line.endswith(b"\n"):
                res.torn_bytes = len(line)
                break
            kind = _kind(line)
            if kind is None:
                raise OutFileError(
                    f"{path}:{n}: not a row written by `tutor grade-batch`; pass another --out, "
                    "or move this file away to start over"
                )
            if kind == "error":
                res.dropped_errors += 1
            else:
                res.done.add(kind)
            good_end += len(line)
    if res.dropped_errors:
        _rewrite_without_errors(path)
    elif res.torn_bytes:
        with path.open("r+b") as f:
            f.truncate(good_end)
            os.fsync(f.fileno())
    return res


def _kind(line: bytes) -> str | None:
    """The id key of a graded row, "error" for an error row, None for anything else."""
    try:
        obj = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(obj, dict) or "id" not in obj:
        return None
    if "error" in obj and "line" in obj:
        return "error"
    if "verdict" in obj and obj["id"] is not None:
        return id_key(obj["id"])
    return None


def _rewrite_without_errors(path: Path) -> None:
    tmp = path.with_name(f".{path.name}.compact")
    with path.open("rb") as src, tmp.open("wb") as dst:
        for line in src:
            if line.endswith(b"\n") and _kind(line) not in (None, "error"):
                dst.write(line)
        dst.flush()
        os.fsync(dst.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(d: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be opened for this
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


class OutFile:
    """OUT opened for appending, under a lock. Use as a context manager:

    with OutFile(path) as out:
        resume = out.resume        # what a previous run left
        out.append(['{"id": ...}'])
    """

    def __init__(self, path: Path):
        self.path = path
        self.resume = Resume()
        self._lock_fd: int | None = None
        self._fd: int | None = None

    def __enter__(self) -> OutFile:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(lock_path(self.path), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise OutFileError(f"{self.path}: cannot write here ({e.strerror}); pass a writable --out") from e
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise OutFileError(
                f"{self.path}: another `tutor grade-batch` is writing this file; wait for it or pass "
                "another --out"
            ) from None
        try:
            self.resume = recover(self.path)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as e:
            self.__exit__(None, None, None)
            raise OutFileError(f"{self.path}: cannot write here ({e.strerror}); pass a writable --out") from e
        except OutFileError:
            self.__exit__(None, None, None)
            raise
        return self

    def append(self, lines: Iterable[str]) -> None:
        """Append complete rows (JSON text without newlines) in one write, then flush them to disk."""
        assert self._fd is not None, "OutFile used outside its `with` block"
        data = "".join(f"{line}\n" for line in lines).encode("utf-8")
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        if data:
            os.fsync(self._fd)

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                lock_path(self.path).unlink()
            os.close(self._lock_fd)
            self._lock_fd = None
