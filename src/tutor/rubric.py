"""Load and validate the question bank (``rubrics/ch*.yaml``).

A broken file raises :class:`RubricError` whose message names the file, the question id and the
field, so the CLI can print it without a traceback.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import ValidationError

from tutor.models import ChapterFile, Question
from tutor.paths import rubrics_dir

_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class RubricError(Exception):
    """A rubric file cannot be used; the message says where and how to fix it."""


class UnknownQuestion(KeyError):
    def __init__(self, qid: str, suggestions: list[str]):
        self.qid = qid
        self.suggestions = suggestions
        hint = f" Did you mean: {', '.join(suggestions)}?" if suggestions else ""
        super().__init__(f"unknown question id {qid!r}.{hint} (`tutor questions` lists them)")

    def __str__(self) -> str:
        return str(self.args[0])


def _describe(err: ValidationError, data: object) -> list[str]:
    """Turn pydantic errors into 'question ch13-1, field key_points[0].text: ...' lines."""
    lines = []
    for e in err.errors():
        loc = list(e["loc"])
        where = ""
        if len(loc) >= 2 and loc[0] == "questions" and isinstance(loc[1], int):
            idx = loc[1]
            qid = None
            if isinstance(data, dict) and isinstance(data.get("questions"), list):
                qs = data["questions"]
                if idx < len(qs) and isinstance(qs[idx], dict):
                    qid = qs[idx].get("id")
            where = f"question {qid or f'#{idx + 1}'}, "
            loc = loc[2:]
        field = ""
        for part in loc:
            field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else str(part))
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; see rubrics/rubric.schema.json)"
        lines.append(f"{where}field {field or '(top level)'}: {msg}")
    return lines


def load_chapter_file(path: Path) -> ChapterFile:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise RubricError(f"{path}: cannot read rubric file: {e}") from None
    try:
        # libyaml parses the bank ~15x faster than pure-Python PyYAML (same safe subset, same result); it
        # was the largest share of `tutor grade`'s start-up time.
        data = yaml.load(text, Loader=_SafeLoader)
    except yaml.YAMLError as e:
        raise RubricError(f"{path}: not valid YAML: {e}") from None
    try:
        return ChapterFile.model_validate(data)
    except ValidationError as e:
        details = "\n  ".join(_describe(e, data))
        raise RubricError(f"{path}: invalid rubric:\n  {details}") from None


class QuestionBank:
    """All questions, in chapter order, looked up by id."""

    def __init__(self, questions: Iterable[Question], source: str = ""):
        self.questions = list(questions)
        self.by_id = {q.id: q for q in self.questions}
        self.source = source

    @classmethod
    def load(cls, directory: Path | None = None) -> QuestionBank:
        directory = directory or rubrics_dir()
        files = sorted(directory.glob("ch*.yaml"))
        if not files:
            raise RubricError(f"{directory}: no rubric files (ch*.yaml) found")
        questions: list[Question] = []
        seen_chapters: dict[int, Path] = {}
        for path in files:
            chapter = load_chapter_file(path)
            if chapter.chapter in seen_chapters:
                raise RubricError(
                    f"{path}: chapter {chapter.chapter} is already defined in {seen_chapters[chapter.chapter]}"
                )
            seen_chapters[chapter.chapter] = path
            for entry in chapter.questions:
                questions.append(
                    Question(chapter=chapter.chapter, chapter_title=chapter.title, **entry.model_dump())
                )
        questions.sort(key=lambda q: (q.chapter, int(q.id.split("-")[1])))
        return cls(questions, source=str(directory))

    def get(self, qid: str) -> Question:
        try:
            return self.by_id[qid.strip().lower()]
        except KeyError:
            close = difflib.get_close_matches(qid.strip().lower(), list(self.by_id), n=3, cutoff=0.5)
            raise UnknownQuestion(qid, close) from None

    def chapter(self, n: int) -> list[Question]:
        return [q for q in self.questions if q.chapter == n]

    @property
    def chapters(self) -> dict[int, str]:
        return {q.chapter: q.chapter_title for q in self.questions}

    @property
    def version(self) -> str:
        """A content hash: changes whenever any rubric text changes (used in cache keys)."""
        blob = json.dumps([q.model_dump() for q in self.questions], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.questions)


@lru_cache(maxsize=4)
def default_bank(directory: str | None = None) -> QuestionBank:
    return QuestionBank.load(Path(directory) if directory else None)


def json_schema() -> dict:
    """JSON Schema of a chapter file, published as rubrics/rubric.schema.json."""
    schema = ChapterFile.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "tutor rubric chapter file"
    return schema
