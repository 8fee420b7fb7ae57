"""The rows of a `tutor grade-batch` input file, read as a stream and checked one by one.

A row names a bank question, ``{"id", "question_id", "answer"}``, or carries its own question in the form
`tutor eval` accepts for the external sets, ``{"id", "question_id", "question", "reference_answers",
"answer"}``. Other fields are ignored, except ``label``, which is copied to the output so a graded file
can be scored (`tutor eval IN --graded OUT`). A line that cannot be graded becomes a `RowError` with its
line number and the reason; reading never stops at a bad line.
"""

from __future__ import annotations

import codecs
import hashlib
import json
from array import array
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr, ValidationError, field_validator

from tutor.evals.dataset import external_question
from tutor.models import Question
from tutor.rubric import QuestionBank, UnknownQuestion

# "label" may hold anything a dataset uses (a verdict, "contradictory", a number, null), so "no label" needs
# its own marker.
NO_LABEL: Any = object()

_EXPECTED = {
    "id": "a non-empty string or an integer",
    "question_id": "a non-empty string or an integer",
    "answer": "a string",
    "question": "a string",
    "reference_answers": "a list of strings",
}


class InputRow(BaseModel):
    """The fields of one input row that grading reads. Strict types: an answer that is a number or a list
    is a mistake in the file, and coercing it would grade something nobody wrote."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: StrictStr | StrictInt
    question_id: StrictStr | StrictInt
    answer: StrictStr
    question: StrictStr | None = None
    reference_answers: list[StrictStr] | None = None

    @field_validator("id", "question_id")
    @classmethod
    def _not_blank(cls, v: str | int) -> str | int:
        if isinstance(v, str) and not v.strip():
            raise ValueError("blank")
        return v


def id_key(value: Any) -> str:
    """How ids are compared: 7 and "7" are the same id (the eval loader also reads ids as strings)."""
    return str(value)


@dataclass(frozen=True)
class Item:
    """A row ready to grade."""

    line: int
    id: str | int
    question: Question
    answer: str
    label: Any = NO_LABEL
    text: str = field(default="", repr=False)  # the row as read, for engines that send rows elsewhere

    @property
    def key(self) -> str:
        return id_key(self.id)


@dataclass(frozen=True)
class RowError:
    """A line that cannot be graded: where it is and why. `id` when the line had a usable one."""

    line: int
    reason: str
    id: str | int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "line": self.line, "error": self.reason}


Row = Item | RowError


class Questions:
    """Finds each row's question: in the bank by id, or built from the row's inline question. Inline
    questions are kept per distinct content (a dataset has a few hundred, each row repeats one), in a
    bounded cache so that memory does not grow with the file."""

    def __init__(self, bank: QuestionBank | None, max_inline: int = 4096):
        self.bank = bank
        self.max_inline = max_inline
        self._inline: OrderedDict[tuple[str, str, tuple[str, ...]], Question] = OrderedDict()

    def resolve(self, row: InputRow) -> Question:
        """The row's question; ValueError saying what is wrong otherwise."""
        qid = str(row.question_id)
        if row.question is not None or row.reference_answers is not None:
            refs = tuple(r for r in row.reference_answers or () if r.strip())
            if row.question is None or not row.question.strip() or not refs:
                raise ValueError(
                    "rows with their own question need a string 'question' and a non-empty list "
                    "'reference_answers'"
                )
            key = (qid, row.question, refs)
            q = self._inline.get(key)
            if q is None:
                q = self._inline[key] = external_question(qid, row.question, refs, "inline")
                if len(self._inline) > self.max_inline:
                    self._inline.popitem(last=False)
            else:
                self._inline.move_to_end(key)
            return q
        if self.bank is None:
            raise ValueError(f"row names bank question {qid!r} but no question bank is loaded")
        try:
            return self.bank.get(qid)
        except UnknownQuestion as e:
            raise ValueError(str(e)) from None


def _describe(err: ValidationError) -> str:
    missing = [str(e["loc"][0]) for e in err.errors() if e["type"] == "missing"]
    if missing:
        return f"missing field(s): {', '.join(dict.fromkeys(missing))}"
    fields = dict.fromkeys(str(e["loc"][0]) for e in err.errors() if e["loc"])
    return "; ".join(f"field {f!r} must be {_EXPECTED.get(f, 'valid')}" for f in fields) or str(err)


def parse(line: int, raw: bytes, questions: Questions) -> Row:
    """One input line (without its newline) -> an Item, or a RowError saying why it cannot be graded."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return RowError(line, f"not UTF-8 text (byte {e.start + 1}); save the file as UTF-8")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        return RowError(line, f"not valid JSON ({e.msg} at column {e.colno})")
    if not isinstance(obj, dict):
        return RowError(line, "a row must be a JSON object")
    raw_id = obj.get("id")
    usable_id = raw_id if isinstance(raw_id, str | int) and not isinstance(raw_id, bool) else None
    try:
        row = InputRow.model_validate(obj)
    except ValidationError as e:
        return RowError(line, _describe(e), usable_id)
    try:
        q = questions.resolve(row)
    except ValueError as e:
        return RowError(line, str(e), row.id)
    return Item(line, row.id, q, row.answer, obj.get("label", NO_LABEL), text)


def read_lines(source: Path | Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    """(line number, line) for every non-blank line, newline removed. A file is read a line at a time and
    split at b"\\n" only: a JSON string may hold U+2028 and other characters str.splitlines() breaks at.
    A UTF-8 byte-order mark (Windows editors) is not part of the first row."""
    if isinstance(source, Path):
        with source.open("rb") as f:
            yield from read_lines(f)
        return
    for n, raw in enumerate(source, start=1):
        if n == 1:
            raw = raw.removeprefix(codecs.BOM_UTF8)
        raw = raw.rstrip(b"\r\n")
        if raw.strip():
            yield n, raw


def iter_rows(source: Path | Iterable[bytes], questions: Questions) -> Iterator[Row]:
    for n, raw in read_lines(source):
        yield parse(n, raw, questions)


def id_hash(key: str) -> int:
    """64 bits of an id key, for the index of a whole file's ids (8 bytes per row instead of a string)."""
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "little")


def _id_of(raw: bytes) -> str | None:
    try:
        obj = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    value = obj.get("id") if isinstance(obj, dict) else None
    if not isinstance(value, str | int) or isinstance(value, bool) or not str(value).strip():
        return None
    return id_key(value)


@dataclass
class Scan:
    """What a first pass over the input found: how many rows, a sorted index of their ids' hashes (memory
    stays small however long the file is), and the ids that appear more than once."""

    rows: int = 0
    hashes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    duplicates: dict[str, list[int]] = field(default_factory=dict)  # key -> every line it is on

    def count_known(self, keys: Iterable[str]) -> int:
        """How many of `keys` are ids of the input (by hash: an estimate for progress and warnings)."""
        wanted = np.fromiter((id_hash(k) for k in keys), np.uint64)
        if not len(wanted) or not len(self.hashes):
            return 0
        pos = np.minimum(np.searchsorted(self.hashes, wanted), len(self.hashes) - 1)
        return int((self.hashes[pos] == wanted).sum())


def scan_ids(path: Path) -> Scan:
    """Read only the ids (lines that are not JSON objects with an id are left to the grading pass, which
    reports them). Duplicates must be known before grading starts: which of two rows with one id would
    the output's single row describe? Equal hashes are checked against the ids themselves in a second
    pass, so a hash collision is never reported as a duplicate."""
    s = Scan()
    hashes = array("Q")
    for _, raw in read_lines(path):
        s.rows += 1
        key = _id_of(raw)
        if key is not None:
            hashes.append(id_hash(key))
    s.hashes = np.sort(np.frombuffer(hashes, dtype=np.uint64)) if hashes else s.hashes
    repeated = s.hashes[1:][s.hashes[1:] == s.hashes[:-1]]
    if len(repeated):
        suspects = {int(h) for h in repeated}
        lines: dict[str, list[int]] = {}
        for n, raw in read_lines(path):
            key = _id_of(raw)
            if key is not None and id_hash(key) in suspects:
                lines.setdefault(key, []).append(n)
        s.duplicates = {k: v for k, v in lines.items() if len(v) > 1}
    return s
