"""Eval rows from JSONL: golden rows naming a bank question, or external rows carrying their own question.

Golden row:   {"id", "question_id", "answer", "label", optional "split"}  (label: correct/partial/incorrect)
External row: {"id", "question_id", "question", "reference_answers", "answer", "label", "score", "meta"}
              (the format of ../shared/benchmarks/*/*.jsonl)

Dataset labels are mapped to the three verdicts by a preset (chosen from the file path, or named) or by an
explicit label map. A line that cannot be used is reported with file:line and skipped, never dropped silently.
"""

from __future__ import annotations

import codecs
import json
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tutor import text as T
from tutor.models import VERDICTS, KeyPoint, Question, Verdict
from tutor.rubric import QuestionBank, UnknownQuestion

# Ordinal value of each verdict, for QWK / Spearman / distances.
ORDINAL: dict[str, int] = {v: i for i, v in enumerate(VERDICTS)}


@dataclass(frozen=True)
class Preset:
    """How one dataset's labels become verdicts (and a 2-way gold), and how its numeric scores scale."""

    name: str
    label_map: Mapping[str, Verdict] = field(default_factory=dict)  # keys lower-cased
    label_field: str = "label"  # dotted path into the row, e.g. "meta.label_5way"
    numeric_cuts: tuple[float, float] | None = None  # (partial, correct) on score/score_max, numeric labels
    score_max: float | None = None  # None: per question, the largest score seen for that question
    description: str = ""


_IDENTITY: dict[str, Verdict] = {"correct": "correct", "partial": "partial", "incorrect": "incorrect"}

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("golden", _IDENTITY, description="our golden set: labels are already verdicts"),
        Preset(
            "scientsbank",
            {"correct": "correct", "contradictory": "incorrect", "incorrect": "incorrect"},
            description="SemEval-2013 3-way (correct/contradictory/incorrect); no 5-way labels, so only "
            "correct vs not maps onto verdicts. The official 3-way scoring is in benchmarks/external.py.",
        ),
        Preset(
            "beetle",
            {
                "correct": "correct",
                "partially_correct_incomplete": "partial",
                "contradictory": "incorrect",
                "irrelevant": "incorrect",
                "non_domain": "incorrect",
            },
            label_field="meta.label_5way",
            description="SemEval-2013 Beetle 5-way label: partially_correct_incomplete -> partial, "
            "contradictory/irrelevant/non_domain -> incorrect",
        ),
        Preset(
            "saf",
            {"correct": "correct", "partially correct": "partial", "incorrect": "incorrect"},
            description="SAF verification label; score normalised by each question's largest score",
        ),
        Preset(
            "mohler",
            numeric_cuts=(0.5, 0.8),
            score_max=5.0,
            description="0-5 average grade: >= 4 correct, >= 2.5 partial, else incorrect (our convention; "
            "Mohler is reported by Pearson/RMSE on the score)",
        ),
    )
}

_PATH_HINTS = (("scientsbank", "scientsbank"), ("beetle", "beetle"), ("saf_", "saf"), ("mohler", "mohler"))


def preset_for_path(path: Path) -> Preset:
    low = str(path).lower()
    for hint, name in _PATH_HINTS:
        if hint in low:
            return PRESETS[name]
    return PRESETS["golden"]


def parse_label_map(spec: str) -> dict[str, Verdict]:
    """'contradictory=incorrect,partially correct=partial' -> mapping; ValueError names the bad part."""
    out: dict[str, Verdict] = {}
    for part in spec.split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise ValueError(f"label map entry {part.strip()!r} must look like 'dataset_label=verdict'")
        k, v = (s.strip() for s in part.rsplit("=", 1))
        if v not in ORDINAL:
            raise ValueError(f"label map entry {part.strip()!r}: {v!r} is not one of {', '.join(VERDICTS)}")
        out[k.lower()] = v  # type: ignore[assignment]
    if not out:
        raise ValueError("empty label map")
    return out


@dataclass
class EvalRow:
    id: str
    question: Question
    answer: str
    label: Verdict  # gold verdict
    label_raw: Any  # the dataset's own label
    score: float | None  # gold numeric score normalised to [0, 1], when the dataset has one
    score_raw: float | None
    group: str  # chapter for bank rows; module or dataset for external rows
    split: str | None
    source: str  # file:line
    dataset: str  # preset name
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def gold_2way(self) -> bool:
        two = self.meta.get("label_2way")
        return str(two).lower() == "correct" if two is not None else self.label == "correct"


@dataclass(frozen=True)
class LoadIssue:
    source: str  # file:line
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.message}"


@dataclass
class LoadResult:
    rows: list[EvalRow]
    issues: list[LoadIssue]
    skipped_by_split: int = 0


def _dig(row: Mapping[str, Any], dotted: str) -> Any:
    cur: Any = row
    for part in dotted.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _as_float(x: Any) -> float | None:
    if isinstance(x, bool) or x is None:
        return None
    if isinstance(x, int | float):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, str):
        try:
            v = float(x)
        except ValueError:
            return None
        return v if math.isfinite(v) else None
    return None


def reference_key_points(references: Sequence[str]) -> list[KeyPoint]:
    """Key points for an external question.

    Several reference answers are alternative complete answers (Beetle), so they become the phrasings of one
    key point. A single reference becomes one key point per sentence (Mohler, SAF list their points), with
    the whole reference as a phrasing of the first so a one-sentence answer restating it still matches.
    """
    refs = [r.strip() for r in references if r and r.strip()]
    if len(refs) > 1:
        return [KeyPoint.model_construct(id="ref", role="required", text=refs[0], alternatives=refs[1:])]
    ref = refs[0]
    sents = [s for s in T.sentences(ref) if len(T.words(s)) >= 3][:8]
    if len(sents) <= 1:
        return [KeyPoint.model_construct(id="ref", role="required", text=ref, alternatives=[])]
    return [
        KeyPoint.model_construct(
            id=f"ref{i + 1}",
            role="required" if i == 0 else "supporting",
            text=s,
            alternatives=[ref] if i == 0 else [],
        )
        for i, s in enumerate(sents)
    ]


def external_question(qid: str, question: str, references: Sequence[str], dataset: str) -> Question:
    """An ad-hoc Question from a dataset row. Built with model_construct: external rubrics have no
    misconceptions or hints and their ids do not follow the bank's pattern; the grader handles both."""
    return Question.model_construct(
        id=qid,
        question=question,
        reference="\n".join(r.strip() for r in references if r.strip()),
        key_points=reference_key_points(references),
        misconceptions=[],
        hints=[],
        numeric=None,
        note=None,
        chapter=0,
        chapter_title=dataset,
    )


def _split_matches(row_split: str | None, wanted: str | None) -> bool:
    if wanted is None:
        return True
    return row_split is not None and (row_split == wanted or row_split.startswith(wanted))


def load_file(
    path: Path,
    bank: QuestionBank | None = None,
    preset: Preset | None = None,
    label_map: Mapping[str, Verdict] | None = None,
    split: str | None = None,
) -> LoadResult:
    """Read one JSONL file. Every unusable line becomes a LoadIssue with its line number."""
    preset = preset or preset_for_path(path)
    if label_map:
        preset = Preset(f"{preset.name}+map", dict(label_map), "label", preset.numeric_cuts, preset.score_max)
    rows: list[EvalRow] = []
    issues: list[LoadIssue] = []
    skipped = 0
    questions: dict[str, Question] = {}
    raw: list[tuple[int, dict[str, Any]]] = []
    try:
        data = path.read_bytes()
    except OSError as e:
        return LoadResult([], [LoadIssue(str(path), f"cannot read file: {e}")])
    # Split the bytes, not the decoded text: str.splitlines() also breaks at U+2028 and other separators
    # that JSON strings may hold unescaped. A byte-order mark (Windows editors) is not part of the data.
    for n, raw_line in enumerate(data.removeprefix(codecs.BOM_UTF8).splitlines(), start=1):
        try:
            line = raw_line.decode("utf-8")
        except UnicodeDecodeError as e:
            issues.append(
                LoadIssue(f"{path}:{n}", f"not UTF-8 text (byte {e.start + 1}); save the file as UTF-8")
            )
            continue
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            issues.append(LoadIssue(f"{path}:{n}", f"not valid JSON ({e.msg} at column {e.colno})"))
            continue
        if not isinstance(obj, dict):
            issues.append(LoadIssue(f"{path}:{n}", "a row must be a JSON object"))
            continue
        raw.append((n, obj))

    # Per-question maximum score, for datasets whose score scale differs by question (SAF v2).
    qmax: dict[str, float] = {}
    for _, obj in raw:
        s = _as_float(obj.get("score"))
        if s is not None:
            qid = str(obj.get("question_id"))
            qmax[qid] = max(qmax.get(qid, 0.0), s)

    for n, obj in raw:
        where = f"{path}:{n}"
        row_split = obj.get("split") or _dig(obj, "meta.split")
        if not _split_matches(row_split, split):
            skipped += 1
            continue
        missing = [k for k in ("id", "question_id", "answer", "label") if k not in obj]
        if missing:
            issues.append(LoadIssue(where, f"missing field(s): {', '.join(missing)}"))
            continue
        if not isinstance(obj["answer"], str):
            issues.append(LoadIssue(where, "field answer must be a string"))
            continue
        qid = str(obj["question_id"])
        external = "question" in obj or "reference_answers" in obj
        if external:
            refs = obj.get("reference_answers")
            if (
                not isinstance(obj.get("question"), str)
                or not isinstance(refs, list)
                or not any(isinstance(r, str) and r.strip() for r in refs)
            ):
                issues.append(
                    LoadIssue(
                        where,
                        "external rows need a string 'question' and a non-empty list 'reference_answers'",
                    )
                )
                continue
            q = questions.get(qid)
            if q is None:
                q = questions[qid] = external_question(
                    qid, obj["question"], [str(r) for r in refs], preset.name
                )
            group = str(_dig(obj, "meta.module") or preset.name)
        else:
            if bank is None:
                issues.append(
                    LoadIssue(where, f"row names bank question {qid!r} but no question bank is loaded")
                )
                continue
            try:
                q = bank.get(qid)
            except UnknownQuestion as e:
                issues.append(LoadIssue(where, str(e)))
                continue
            group = f"ch{q.chapter}"

        label_raw = _dig(obj, preset.label_field)
        if label_raw is None:
            issues.append(LoadIssue(where, f"no label at {preset.label_field!r}"))
            continue
        score_raw = _as_float(obj.get("score"))
        smax = preset.score_max or qmax.get(qid) or None
        score = min(max(score_raw / smax, 0.0), 1.0) if score_raw is not None and smax else None
        verdict: Verdict | None = None
        if isinstance(label_raw, str) and label_raw.strip().lower() in preset.label_map:
            verdict = preset.label_map[label_raw.strip().lower()]
        elif preset.numeric_cuts is not None and _as_float(label_raw) is not None:
            frac = _as_float(label_raw) / (smax or 1.0)  # type: ignore[operator]
            lo, hi = preset.numeric_cuts
            verdict = "correct" if frac >= hi else "partial" if frac >= lo else "incorrect"
        if verdict is None:
            known = ", ".join(sorted(preset.label_map)) or "numeric labels"
            issues.append(
                LoadIssue(
                    where,
                    f"label {label_raw!r} is not mapped (preset {preset.name}: {known}); "
                    "pass --label-map 'label=verdict,...' or --preset",
                )
            )
            continue
        meta = dict(obj["meta"]) if isinstance(obj.get("meta"), dict) else {}
        if isinstance(
            obj.get("kind"), str
        ):  # golden rows say what the answer tests (paraphrase, negation...)
            meta["kind"] = obj["kind"]
        rows.append(
            EvalRow(
                id=str(obj["id"]),
                question=q,
                answer=obj["answer"],
                label=verdict,
                label_raw=label_raw,
                score=score,
                score_raw=score_raw,
                group=group,
                split=row_split,
                source=where,
                dataset=preset.name,
                meta=meta,
            )
        )
    return LoadResult(rows, issues, skipped)


def stratified_sample(rows: Sequence[EvalRow], n: int, seed: int = 0) -> list[EvalRow]:
    """n rows drawn without replacement, proportionally from each gold label (largest remainder), in
    their original order. For expensive runs (an LLM judge at a minute per answer) on a subset whose label
    mix matches the whole; the same seed always draws the same rows."""
    if n <= 0:
        raise ValueError(f"sample size must be positive, not {n}")
    if n >= len(rows):
        return list(rows)
    by_label: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_label.setdefault(r.label, []).append(i)
    quota = {k: n * len(v) / len(rows) for k, v in by_label.items()}
    take = {k: int(q) for k, q in quota.items()}
    for k in sorted(quota, key=lambda k: quota[k] - take[k], reverse=True)[: n - sum(take.values())]:
        take[k] += 1
    rng = random.Random(seed)
    chosen = {i for k, idx in sorted(by_label.items()) for i in rng.sample(idx, take[k])}
    return [r for i, r in enumerate(rows) if i in chosen]


def load_files(
    paths: Iterable[Path],
    bank: QuestionBank | None = None,
    preset: Preset | None = None,
    label_map: Mapping[str, Verdict] | None = None,
    split: str | None = None,
) -> LoadResult:
    total = LoadResult([], [])
    for p in paths:
        r = load_file(Path(p), bank, preset, label_map, split)
        total.rows.extend(r.rows)
        total.issues.extend(r.issues)
        total.skipped_by_split += r.skipped_by_split
    return total
