"""Domain types, in one place.

Everything that crosses a module boundary (rubric content, grades, judge reports) is a pydantic
model. Models read from files use ``extra="forbid"`` so a typo in a rubric is an error, not a
silently ignored field.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Verdict = Literal["correct", "partial", "incorrect"]
VERDICTS: tuple[Verdict, ...] = ("incorrect", "partial", "correct")  # ordinal order, worst first

QUESTION_ID = re.compile(r"^ch(1[1-9]|20)-[1-9]$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- rubric content (rubrics/*.yaml)


KeyPointRole = Literal["required", "supporting"]


class KeyPoint(Strict):
    """A short, self-contained claim an answer can make.

    ``required`` points are the question's core claim: a correct answer must make them (LABELING.md).
    ``supporting`` points add depth; a correct answer may skip them.
    """

    id: str = Field(pattern=r"^[a-z0-9_]+$")
    role: KeyPointRole = Field(
        description="required: a correct answer must make this point; supporting: adds depth, may be skipped."
    )
    text: str = Field(min_length=10)
    alternatives: list[str] = Field(
        default_factory=list, description="Other phrasings of the same claim, matched like `text`."
    )

    @property
    def phrasings(self) -> list[str]:
        return [self.text, *self.alternatives]


class Misconception(Strict):
    """A wrong belief, stated as a learner would state it, with the correction to show."""

    id: str = Field(pattern=r"^[a-z0-9_]+$")
    statement: str = Field(min_length=10)
    alternatives: list[str] = Field(default_factory=list)
    correction: str = Field(min_length=10)

    @property
    def phrasings(self) -> list[str]:
        return [self.statement, *self.alternatives]


class NumericCheck(Strict):
    """For questions whose answer is a number: the value, its unit and a relative tolerance."""

    value: float
    unit: str = Field(
        description="Unit of `value`, e.g. 'TB', 'GB'. Answers in other units of the "
        "same kind (GB vs TB, GiB) are converted before comparing."
    )
    tolerance: float = Field(gt=0, lt=1, description="Relative tolerance, 0.1 = within 10%.")
    also_accept: list[float] = Field(
        default_factory=list, description="Other correct values in the same unit (e.g. a packed encoding)."
    )


class QuestionEntry(Strict):
    """One question as written in a chapter file."""

    id: str
    question: str = Field(min_length=15)
    reference: str = Field(min_length=80, description="Reference explanation, shown after grading.")
    key_points: list[KeyPoint] = Field(min_length=2, max_length=4)
    misconceptions: list[Misconception] = Field(min_length=1, max_length=3)
    hints: list[str] = Field(min_length=1, max_length=2)
    numeric: NumericCheck | None = None
    note: str | None = Field(
        default=None, description="Editorial note, e.g. where and why this question corrects the seed."
    )

    @field_validator("id")
    @classmethod
    def _id_format(cls, v: str) -> str:
        if not QUESTION_ID.match(v):
            raise ValueError(f"question id {v!r} must look like 'ch13-1' (chapter 11-20, position 1-9)")
        return v

    @property
    def required_points(self) -> list[KeyPoint]:
        return [k for k in self.key_points if k.role == "required"]

    @model_validator(mode="after")
    def _unique_ids(self) -> QuestionEntry:
        if not self.required_points:
            raise ValueError(
                "no key point has role 'required': mark the point(s) a correct answer must make "
                "(the core claim) with `role: required`"
            )
        for kind, items in (("key point", self.key_points), ("misconception", self.misconceptions)):
            ids = [i.id for i in items]
            dupes = sorted({i for i in ids if ids.count(i) > 1})
            if dupes:
                raise ValueError(f"duplicate {kind} id(s): {', '.join(dupes)}")
        return self


class ChapterFile(Strict):
    chapter: int = Field(ge=11, le=20)
    title: str = Field(min_length=3)
    questions: list[QuestionEntry] = Field(min_length=1)

    @model_validator(mode="after")
    def _ids_match_chapter(self) -> ChapterFile:
        for i, q in enumerate(self.questions, start=1):
            expected = f"ch{self.chapter}-{i}"
            if q.id != expected:
                raise ValueError(
                    f"question #{i} has id {q.id!r}, expected {expected!r} "
                    "(ids follow the fact's position in its chapter in the seed)"
                )
        return self


class Question(QuestionEntry):
    """A question with its chapter, as the rest of the program sees it."""

    chapter: int
    chapter_title: str


# ---------------------------------------------------------------- grades


class CoveredPoint(BaseModel):
    id: str
    text: str
    required: bool = Field(False, description="A point a correct answer must make (rubric role 'required').")
    sentence: str = Field(description="The learner's sentence or clause that made the point.")
    similarity: float


class MissedPoint(BaseModel):
    id: str
    text: str
    required: bool = Field(False, description="A point a correct answer must make (rubric role 'required').")
    reason: str = Field(default="not stated", description="'not stated' or why a close match was refused.")


class FoundMisconception(BaseModel):
    id: str = Field(description="The misconception's id, or 'contradicts:<key point id>'.")
    statement: str
    correction: str
    sentence: str
    similarity: float = Field(
        description="How strongly the learner's unit matches: its similarity to the misconception or key "
        "point, or, for a contradiction the learned grader's pair model named, its P(contradicts); 0 for "
        "one the LLM judge named."
    )


class NumericResult(BaseModel):
    expected: str
    found: list[str] = Field(default_factory=list, description="Numbers with units read from the answer.")
    correct: bool


# ---------------------------------------------------------------- LLM judge reports

JudgeOrder = Literal["A", "B"]  # A: reference then answer; B: answer then reference, lists reversed
JudgeStatus = Literal["ok", "unscored", "error"]


class JudgeReply(BaseModel):
    """What the judge model must return (also the JSON schema sent to it, narrowed per question)."""

    key_points_covered: list[str] = Field(default_factory=list, description="Ids of key points made.")
    misconceptions_found: list[str] = Field(default_factory=list, description="Ids of misconceptions held.")
    verdict: Verdict
    score: int = Field(ge=0, le=10)
    reason: str = Field(default="", description="One sentence.")


class JudgeCall(BaseModel):
    """One judge call (one order): its parsed reply or why there is none, and what it cost."""

    order: JudgeOrder
    status: JudgeStatus = Field(
        description="ok; unscored = reply unparseable after one re-ask; error = "
        "the backend failed after retries (timeouts, 429, 5xx) or was refused."
    )
    reply: JudgeReply | None = None
    error: str | None = None
    raw: str | None = Field(default=None, description="The last raw reply when it could not be parsed.")
    requests: int = Field(0, description="Backend requests made, retries and the re-ask included.")
    cached: bool = False
    latency_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0


class JudgeReport(BaseModel):
    """Both orders of one judged answer, and how they were fused with the embedding grade."""

    judge: str = Field(description="Spec of the judge, e.g. 'local' or 'openai:gpt-4o-mini'.")
    backend: str
    model: str
    calls: list[JudgeCall] = Field(default_factory=list)
    consistent: bool | None = Field(
        default=None, description="Same verdict in both orders; None when fewer than two orders parsed."
    )
    preferred_position: Literal["first", "second"] | None = Field(
        default=None,
        description="When inconsistent: the answer got the better verdict when shown first "
        "(order B) or second (order A).",
    )
    verdict: Verdict | None = Field(default=None, description="The judge's own verdict when consistent.")
    score: float | None = Field(default=None, description="The judge's own score in [0, 1] (mean of orders).")
    embedding_score: float
    embedding_verdict: Verdict
    judge_weight: float
    rule: Literal["fused", "disputed", "inconsistent", "one_order", "fallback", "skipped"] = Field(
        description="fused: both orders agree, score = weighted mix; disputed: the orders agree but the "
        "embeddings found a misconception the judge missed; disputed / inconsistent / one_order: the more "
        "conservative of the embedding and judge verdicts; fallback: no usable judge reply, embedding grade; "
        "skipped: nothing to judge (empty or 'don't know')."
    )
    note: str = ""
    latency_s: float = Field(0.0, description="Wall time of the judge step (orders run concurrently).")
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Grade(BaseModel):
    question_id: str
    score: float = Field(ge=0, le=1)
    verdict: Verdict
    covered: list[CoveredPoint] = Field(default_factory=list)
    missed: list[MissedPoint] = Field(default_factory=list)
    misconceptions: list[FoundMisconception] = Field(default_factory=list)
    feedback: str
    flags: list[str] = Field(
        default_factory=list,
        description="Why credit was withheld or input changed: empty, dont_know, off_topic, "
        "copied_question, keyword_salad, grader_instruction, truncated; not_english (graded, less reliably).",
    )
    numeric: NumericResult | None = None
    signals: dict[str, float] = Field(
        default_factory=dict,
        description="The embedding grader's raw measurements the score was computed from (coverage, "
        "similarities, counts), for debugging and for fitting other ways to combine them.",
    )
    grader: str = Field(description="What produced the grade, e.g. 'embedding:all-MiniLM-L6-v2'.")
    judge: JudgeReport | None = Field(default=None, description="LLM judge details when a judge was used.")
