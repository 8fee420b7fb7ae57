"""Judge prompt templates (files in ``prompts/``), checked at load, and the two orders built from them.

Templates use ``{name}`` fields (``{{`` / ``}}`` for literal braces). Each template declares the variables
it must use; a template that lacks one, or uses one nobody provides, fails at load with the name, so a
typo in a prompt file cannot silently drop the learner's answer from the prompt.
"""

from __future__ import annotations

import hashlib
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tutor.models import JudgeOrder, Question
from tutor.paths import prompts_dir

ANSWER_OPEN, ANSWER_CLOSE = "<learner_answer>", "</learner_answer>"
_TAG = re.compile(r"<\s*/?\s*learner_answer\s*>", re.IGNORECASE)

# template file -> the variables it must use (and may only use)
TEMPLATES: dict[str, frozenset[str]] = {
    "judge_system": frozenset(),
    "judge_order_a": frozenset({"question", "reference", "key_points", "misconceptions", "answer"}),
    "judge_order_b": frozenset({"question", "reference", "key_points", "misconceptions", "answer"}),
    "judge_reask": frozenset({"error"}),
}


class PromptError(Exception):
    """A prompt template is missing, malformed, or its variables do not match; the message names them."""


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    text: str
    variables: frozenset[str]

    @classmethod
    def parse(cls, name: str, text: str, required: frozenset[str], where: str = "") -> PromptTemplate:
        where = where or name
        used: set[str] = set()
        try:
            for _literal, field, spec, conv in string.Formatter().parse(text):
                if field is None:
                    continue
                if not field.isidentifier() or spec or conv:
                    raise PromptError(f"{where}: field {{{field}}} must be a plain name like {{answer}}")
                used.add(field)
        except ValueError as e:  # unbalanced braces
            raise PromptError(f"{where}: {e} (write literal braces as {{{{ and }}}})") from None
        unknown = sorted(used - required)
        if unknown:
            raise PromptError(
                f"{where}: unknown variable(s) {', '.join(unknown)}; this template may use: "
                f"{', '.join(sorted(required)) or '(none)'}"
            )
        missing = sorted(required - used)
        if missing:
            raise PromptError(f"{where}: required variable(s) {', '.join(missing)} not used in the template")
        return cls(name, text, frozenset(used))

    def render(self, **values: str) -> str:
        missing = sorted(self.variables - values.keys())
        extra = sorted(values.keys() - self.variables)
        if missing or extra:
            raise PromptError(
                f"template {self.name}: missing variable(s) {', '.join(missing) or '-'}; "
                f"unknown variable(s) {', '.join(extra) or '-'}"
            )
        return self.text.format(**values)


@dataclass(frozen=True)
class JudgePrompts:
    system: PromptTemplate
    order_a: PromptTemplate
    order_b: PromptTemplate
    reask: PromptTemplate

    @classmethod
    def load(cls, directory: Path | None = None) -> JudgePrompts:
        directory = directory or prompts_dir()
        loaded = {}
        for name, required in TEMPLATES.items():
            path = directory / f"{name}.txt"
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as e:
                raise PromptError(f"{path}: cannot read prompt template: {e.strerror or e}") from None
            loaded[name] = PromptTemplate.parse(name, text, required, where=str(path))
        return cls(
            loaded["judge_system"], loaded["judge_order_a"], loaded["judge_order_b"], loaded["judge_reask"]
        )

    @property
    def hash(self) -> str:
        """Changes whenever any template changes: part of every judge cache key."""
        h = hashlib.sha256()
        for t in (self.system, self.order_a, self.order_b, self.reask):
            h.update(t.name.encode() + b"\0" + t.text.encode() + b"\0")
        return h.hexdigest()[:16]

    def messages(self, q: Question, answer: str, order: JudgeOrder) -> list[dict[str, str]]:
        """Order A: reference before the answer. Order B: answer first, then the reference, with the key
        points and misconceptions listed in reverse."""
        kps = [f"- {k.id}{' (core point)' if k.role == 'required' else ''}: {k.text}" for k in q.key_points]
        mis = [f"- {m.id}: {m.statement}" for m in q.misconceptions]
        if order == "B":
            kps, mis = kps[::-1], mis[::-1]
        template = self.order_a if order == "A" else self.order_b
        user = template.render(
            question=q.question.strip(),
            reference=q.reference.strip(),
            key_points="\n".join(kps),
            misconceptions="\n".join(mis),
            answer=delimit_answer(answer),
        )
        return [{"role": "system", "content": self.system.render()}, {"role": "user", "content": user}]

    def reask_message(self, error: str) -> dict[str, str]:
        return {"role": "user", "content": self.reask.render(error=error[:300])}


def delimit_answer(answer: str) -> str:
    """The learner's text, unable to close its own delimiter: tag look-alikes inside it are defused."""
    return _TAG.sub("[tag removed]", answer.strip())


def reply_schema(q: Question, order: JudgeOrder = "A") -> dict[str, Any]:
    """The reply's JSON schema for this question: one true/false per misconception and per key point (a
    1.5B model asked for a list of ids tends to list them all), then verdict, score, reason. Ids follow
    the order the prompt lists them in."""
    kp_ids = [k.id for k in q.key_points]
    mis_ids = [m.id for m in q.misconceptions]
    if order == "B":
        kp_ids, mis_ids = kp_ids[::-1], mis_ids[::-1]

    def flags(ids: list[str]) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {i: {"type": "boolean"} for i in ids},
            "required": ids,
            "additionalProperties": False,
        }

    return {
        "type": "object",
        "properties": {
            # Misconceptions first: once a small model has written "all key points true" it rarely
            # finds a wrong belief afterwards.
            "misconceptions_found": flags(mis_ids),
            "key_points_covered": flags(kp_ids),
            "verdict": {"type": "string", "enum": ["incorrect", "partial", "correct"]},
            "score": {"type": "integer", "minimum": 0, "maximum": 10},
            "reason": {"type": "string", "maxLength": 240},
        },
        "required": ["misconceptions_found", "key_points_covered", "verdict", "score", "reason"],
        "additionalProperties": False,
    }
