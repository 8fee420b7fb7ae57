"""The embedding grader: clause-level similarity to key points, guarded against negation and gaming.

How a grade is made (each step is visible in the Grade's fields):
1. Guards on the whole answer: empty, "I don't know", over-long (truncated, flagged).
2. The answer is split into units (sentences, clauses, adjacent sentence pairs). Units that address the
   grader, copy the question back, or are keyword lists are dropped and flagged: they earn nothing.
3. Every unit and every rubric phrasing is embedded; cosine similarity decides which unit makes which key
   point. A unit only makes a point if it does not contradict it (negation parity, antonym pairs).
4. A unit that is closer to a rubric misconception than to any key point (and agrees with the
   misconception's polarity) counts as holding that misconception. A unit that matches a key point but
   contradicts it is reported as a contradiction of that point.
5. Score = (1 - reference_weight) x weighted key-point coverage (required points weigh double; the numeric
   check counts half on numeric questions) + reference_weight x how close the best unit is to the whole
   reference explanation, then x misconception_penalty per misconception found. The verdict comes from
   explicit thresholds (``Thresholds``), fitted by ``tutor calibrate`` when a calibration file exists.

This grader needs no labeled answers, so it grades any rubric; ``tutor.grading.learned`` builds on its
measurements (``Grade.signals``) to decide the verdict where labeled answers taught it how.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tutor import text as T
from tutor.embed import CachedEmbedder, Embedder, default_embedder
from tutor.grading.claims import DENY_REPORT, ClaimModel, claim_signals, pair_features
from tutor.models import (
    CoveredPoint,
    FoundMisconception,
    Grade,
    KeyPoint,
    MissedPoint,
    NumericResult,
    Question,
    Verdict,
)
from tutor.paths import CalibrationError, calibration_path

# What fusion does when the judge's two orders disagree (tutor.judge.fuse); the first is the default.
InconsistentRule = Literal["conservative", "embedding"]


class Thresholds(BaseModel):
    """Every number the grader decides with. Defaults are hand-set; `tutor calibrate` fits them on the
    golden train split and writes them to evals/calibration.json, which grading then uses."""

    model_config = ConfigDict(extra="forbid")

    version: str = "default-1"
    correct: float = Field(0.70, description="score >= this (and no misconception) -> correct")
    partial: float = Field(0.35, description="score >= this -> partial")
    cover_full: float = Field(0.62, description="cosine at which a unit fully makes a key point")
    cover_min: float = Field(0.45, description="cosine below which a unit earns nothing for a key point")
    misconception: float = Field(0.62, description="cosine at which a unit is taken to state a misconception")
    misconception_margin: float = Field(
        0.03, description="misconception must beat the best key point by this"
    )
    contradiction: float = Field(
        0.80, description="similarity at which a polarity-flipped unit contradicts a point"
    )
    contradiction_margin: float = Field(
        0.05, description="contradiction must beat the best supporting unit by this"
    )
    lexical_weight: float = Field(
        0.15, description="weight of shared distinctive terms in the hybrid similarity"
    )
    off_topic: float = Field(0.30, description="best unit-to-rubric cosine below this -> off topic, score 0")
    misconception_penalty: float = Field(0.5, description="score multiplier per misconception found")
    reference_weight: float = Field(0.15, description="weight of whole-answer similarity to the reference")
    judge_weight: float = Field(
        0.6,
        ge=0,
        le=1,
        description="with an LLM judge whose two orders agree: final score = judge_weight * judge score + "
        "(1 - judge_weight) * embedding score. 0.6 leans on the judge, which catches negations the "
        "embeddings miss; `tutor calibrate` refits it on the golden train split.",
    )
    judge_inconsistent: InconsistentRule = Field(
        "conservative",
        description="when the judge's two orders disagree: the most conservative of the embedding and judge "
        "verdicts, or the embedding grade alone (the judge abstains); `tutor calibrate --judge` chooses.",
    )


def load_thresholds(path: Path | None = None) -> Thresholds:
    """The fitted thresholds if a calibration file exists, else the documented defaults."""
    path = path or calibration_path()
    if not path.exists():
        return Thresholds()
    fix = "Re-run `tutor calibrate`, or delete the file to grade with the default thresholds."
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CalibrationError(f"{path}: not a readable JSON file ({e}). {fix}") from e
    try:
        return Thresholds.model_validate(data.get("thresholds", data) if isinstance(data, dict) else data)
    except ValidationError as e:
        where = "; ".join(f"thresholds.{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
        raise CalibrationError(f"{path}: {where}. {fix}") from e


@dataclass
class _Targets:
    """One question's rubric texts, embedded once (and cached on disk), with their polarity."""

    question: np.ndarray  # (d,)
    reference: np.ndarray  # (d,)
    phrasings: np.ndarray  # (n_phrasings, d): every key point phrasing, then every misconception phrasing
    owner: list[tuple[str, int]]  # per phrasing: ("kp" | "mis", index into key_points / misconceptions)
    polarity: list[T.Polarity]  # per phrasing
    question_terms: frozenset[str]

    @property
    def misconception_vecs(self) -> np.ndarray:
        return self.phrasings[[j for j, o in enumerate(self.owner) if o[0] == "mis"]]


@dataclass
class _Prepared:
    """An answer past the guards, waiting for the vectors of its units (`grade_many` batches those)."""

    question: Question
    units: list[T.Unit]
    text: str
    flags: list[str]


def _polarity_matrices(
    units: Sequence[T.Unit], tg: _Targets
) -> tuple[list[T.Polarity], np.ndarray, np.ndarray]:
    """Per unit its polarity; per (unit, phrasing) the distinctive-term overlap and the contradiction flag."""
    pol = [T.Polarity.of(u.text) for u in units]
    lex = np.array(
        [[T.term_overlap(p.terms, tp.terms, tg.question_terms) for tp in tg.polarity] for p in pol]
    ).reshape(len(units), len(tg.polarity))
    contra = np.array([[T.contradicts(p, tp) for tp in tg.polarity] for p in pol], dtype=bool).reshape(
        len(units), len(tg.polarity)
    )
    return pol, lex, contra


def _contradiction(kp: KeyPoint, unit: T.Unit, strength: float) -> tuple[FoundMisconception, MissedPoint]:
    """What feedback says of a key point the learner's unit contradicts: the finding, and the point missed."""
    finding = FoundMisconception(
        id=f"contradicts:{kp.id}",
        statement=unit.text,
        correction=f"The opposite is true: {kp.text}",
        sentence=unit.sentence,
        similarity=round(strength, 3),
    )
    return finding, MissedPoint(id=kp.id, text=kp.text, required=kp.role == "required", reason="contradicted")


def _report_denials(
    q: Question,
    units: Sequence[T.Unit],
    probs: np.ndarray,
    covered: list[CoveredPoint],
    missed: list[MissedPoint],
    found: list[FoundMisconception],
) -> None:
    """Name every key point the pair model is confident a unit contradicts and the rules did not catch
    (embeddings hardly see negation), so the feedback says what the learner got backwards."""
    for k, kp in enumerate(q.key_points):
        u = int(probs[:, k, 2].argmax()) if len(units) else -1
        if u < 0 or probs[u, k, 2] < DENY_REPORT or any(f.id == f"contradicts:{kp.id}" for f in found):
            continue
        finding, miss = _contradiction(kp, units[u], float(probs[u, k, 2]))
        found.append(finding)
        covered[:] = [c for c in covered if c.id != kp.id]
        missed[:] = [*(m for m in missed if m.id != kp.id), miss]


def _ramp(x: float, lo: float, hi: float) -> float:
    return float(np.clip((x - lo) / (hi - lo), 0.0, 1.0)) if hi > lo else float(x >= hi)


class EmbeddingGrader:
    def __init__(
        self,
        embedder: Embedder | None = None,
        thresholds: Thresholds | None = None,
        claims: ClaimModel | None = None,
    ):
        inner = embedder or default_embedder()
        self.embedder = inner
        self.rubric_embedder = inner if isinstance(inner, CachedEmbedder) else CachedEmbedder(inner)
        self.t = thresholds or load_thresholds()
        # The learned grader's pair model (tutor.grading.claims): adds claim_* signals and names confidently
        # contradicted key points. None for the embedding grader on its own.
        self.claims = claims
        self.name = f"embedding:{inner.name}"
        self._targets: dict[str, _Targets] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ rubric side

    def targets(self, q: Question) -> _Targets:
        key = q.model_dump_json()
        with self._lock:
            cached = self._targets.get(key)
        if cached is not None:
            return cached
        owner: list[tuple[str, int]] = []
        texts: list[str] = []
        for i, k in enumerate(q.key_points):
            owner += [("kp", i)] * len(k.phrasings)
            texts += k.phrasings
        for i, m in enumerate(q.misconceptions):
            owner += [("mis", i)] * len(m.phrasings)
            texts += m.phrasings
        vecs = self.rubric_embedder.encode([q.question, q.reference, *texts])
        tg = _Targets(
            question=vecs[0],
            reference=vecs[1],
            phrasings=vecs[2:],
            owner=owner,
            polarity=[T.Polarity.of(t) for t in texts],
            question_terms=frozenset(T.terms(q.question)),
        )
        with self._lock:
            self._targets[key] = tg
        return tg

    def warm(self, questions: Sequence[Question]) -> None:
        """Embed every rubric text up front (one batch per question, cached on disk)."""
        for q in questions:
            self.targets(q)

    # ------------------------------------------------------------------ grading

    def grade(self, question: Question, answer: str) -> Grade:
        prepared = self._prepare(question, answer)
        if isinstance(prepared, Grade):
            return prepared
        return self._finish(prepared, self.embedder.encode([u.text for u in prepared.units]))

    def grade_many(self, items: Sequence[tuple[Question, str]]) -> list[Grade]:
        """The same grades as `grade` on each item, but every answer's units go to the embedder in one
        call, each distinct unit text once: batching across answers is what makes large files fast (one
        answer's few units are too small a batch), and repeated units (copied answers, stock phrases) cost
        nothing twice. The ONNX encoder gives a unit bit-for-bit the same vector whatever batch it is in
        (each text is padded only within its batch and masked), so the grades are equal; a test checks it
        on the golden set."""
        return self.grade_and_embed(items, [False] * len(items))[0]

    def grade_and_embed(
        self, items: Sequence[tuple[Question, str]], whole: Sequence[bool]
    ) -> tuple[list[Grade], list[np.ndarray | None]]:
        """`grade_many`, plus the vector of each answer's whole (normalised) text where `whole[i]` and the
        answer got past the guards (else None), from the same encoder call. The learned grader reads that
        vector; a second encoder call cost it a third of its time per answer, and a one-sentence answer's
        whole text is already one of its units."""
        prepared = [self._prepare(q, a) for q, a in items]
        wanted = [w and not isinstance(p, Grade) for p, w in zip(prepared, whole, strict=True)]
        texts = list(
            dict.fromkeys(
                t
                for p, w in zip(prepared, wanted, strict=True)
                if not isinstance(p, Grade)
                for t in (*(u.text for u in p.units), *((p.text,) if w else ()))
            )
        )
        vecs = self.embedder.encode(texts) if texts else np.zeros((0, 1), np.float32)
        row = {t: i for i, t in enumerate(texts)}
        grades = [
            p if isinstance(p, Grade) else self._finish(p, vecs[[row[u.text] for u in p.units]])
            for p in prepared
        ]
        answer_vecs = [
            vecs[row[p.text]] if w and not isinstance(p, Grade) else None
            for p, w in zip(prepared, wanted, strict=True)
        ]
        return grades, answer_vecs

    def _prepare(self, question: Question, answer: str) -> Grade | _Prepared:
        """Everything before embedding: the guards, then the units to embed. A Grade when the answer is
        settled without embedding (empty, "I don't know", nothing gradable left)."""
        text, truncated = T.normalise_answer(answer)
        flags = ["truncated"] if truncated else []
        if not text:
            return self._zero(
                question, ["empty", *flags], "Nothing was answered. Try explaining in a sentence or two."
            )
        if T.is_dont_know(text):
            return self._zero(
                question,
                ["dont_know", *flags],
                "No attempt yet. Use a hint (?) or read the reference below, then try again later.",
            )

        # Sentences that address the grader or only list terms are removed whole, with every unit built
        # from them (clauses and sentence pairs): they earn nothing, and what is left is graded as usual.
        dropped: list[str] = []
        foreign = T.looks_non_english(text)
        if foreign:
            flags.append("not_english")
        for sent in T.sentences(text):
            if T.is_grader_instruction(sent):
                flags.append("grader_instruction")
                dropped.append(sent)
            elif not foreign and T.is_keyword_salad(sent):
                flags.append("keyword_salad")
                dropped.append(sent)
        kept = [u for u in T.answer_units(text) if not any(d in u.text for d in dropped)]
        # A unit made only of the question's own words adds nothing, whatever it is similar to.
        copies = {i for i, u in enumerate(kept) if T.word_overlap(u.text, question.question) >= 0.85}
        if any(kept[i].text == kept[i].sentence for i in copies):
            flags.append("copied_question")
        kept = [u for i, u in enumerate(kept) if i not in copies]
        flags = list(dict.fromkeys(flags))
        if not kept:
            reason = {
                "grader_instruction": "Instructions to the grader earn no credit; explain the idea instead.",
                "copied_question": "Restating the question earns no credit; explain the answer in your words.",
                "keyword_salad": "A list of terms earns no credit; say how they connect, in full sentences.",
            }
            msg = " ".join(reason[f] for f in flags if f in reason) or "No gradable content."
            return self._zero(question, flags, msg)
        return _Prepared(question, kept, text, flags)

    def _finish(self, p: _Prepared, uvec: np.ndarray) -> Grade:
        return self._grade_units(p.question, p.units, uvec, self.targets(p.question), p.text, p.flags)

    def _grade_units(
        self, q: Question, units: list[T.Unit], uvec: np.ndarray, tg: _Targets, text: str, flags: list[str]
    ) -> Grade:
        t = self.t
        cos = uvec @ tg.phrasings.T  # (units, phrasings)
        ref_sim = float((uvec @ tg.reference).max())
        if max(float(cos.max()), ref_sim) < t.off_topic:
            return self._zero(
                q, [*flags, "off_topic"], "This answer does not address the question. " + _hint_line(q)
            )
        pol, lex, contra = _polarity_matrices(units, tg)
        # Hybrid similarity: cosine plus a small bonus for using the phrasing's distinctive terms (those not
        # already in the question). Cosine alone ranks template-alike sentences too close together.
        sim = cos + t.lexical_weight * lex
        consistent = np.where(contra, -1.0, sim)
        opposed = np.where(contra, sim, -1.0)

        def per_owner(m: np.ndarray, kind: str, n: int) -> np.ndarray:
            cols = [[j for j, o in enumerate(tg.owner) if o == (kind, i)] for i in range(n)]
            return np.stack([m[:, c].max(axis=1) for c in cols], axis=1) if n else np.zeros((len(units), 0))

        kp_ok = per_owner(consistent, "kp", len(q.key_points))  # (units, key points)
        kp_bad = per_owner(opposed, "kp", len(q.key_points))
        mis_ok = per_owner(consistent, "mis", len(q.misconceptions))

        # Misconceptions: each unit holds at most one, its closest, if that is clearly closer than any key point.
        found: list[FoundMisconception] = []
        held: dict[int, tuple[int, float]] = {}  # misconception index -> (unit, similarity)
        # A misconception that states a number ("... so 30 TB") needs that number in the answer: embeddings
        # of arithmetic are too alike to tell 30 TB from 60 TB.
        # Conversely, stating exactly the number a misconception leads to is strong evidence of holding it.
        stated = [x for x in T.quantities(text) if T.known_unit(x.unit)]
        # ...unless the answer also reaches the right result: then the misconception's number is a step on
        # the way ("70e9 x 8 = 560 GB, sharded 64 ways: 8.75 GB"), not the answer.
        numeric = _check_numeric(q, text) if q.numeric is not None else None
        reaches_answer = numeric is not None and numeric.correct
        evidenced: dict[int, int] = {}  # misconception index -> unit stating its number
        for mi, m in enumerate(q.misconceptions):
            claimed = [x for p in m.phrasings for x in T.quantities(p) if T.known_unit(x.unit)]
            hits = [
                a for a in stated for c in claimed if abs(a.in_unit(c.unit) - c.value) <= 0.05 * abs(c.value)
            ]
            if claimed and not hits:
                mis_ok[:, mi] = -1.0
            elif hits and not reaches_answer:
                units_with = [ui for ui, u in enumerate(units) if hits[0].text in u.text]
                if units_with:
                    evidenced[mi] = min(units_with, key=lambda ui: len(units[ui].text))
        for ui in range(len(units)):
            if not q.misconceptions:
                break
            mi = int(np.argmax(mis_ok[ui]))
            s = float(mis_ok[ui, mi])
            closer_than_any_point = s >= float(kp_ok[ui].max()) + t.misconception_margin
            if s >= t.misconception and closer_than_any_point and (mi not in held or s > held[mi][1]):
                held[mi] = (ui, s)
        for mi, ui in evidenced.items():
            held.setdefault(mi, (ui, float(mis_ok[ui, mi])))
        # A sentence or sentence pair that contains a misconception earns nothing for the key points either,
        # nor do the pieces of a misconception unit; clauses beside it in the same sentence still can.
        held_texts = [units[ui].text for ui, _ in held.values()]
        mis_units = {ui for ui, u in enumerate(units) if any(h in u.text or u.text in h for h in held_texts)}
        for mi, (ui, s) in sorted(held.items()):
            m = q.misconceptions[mi]
            found.append(
                FoundMisconception(
                    id=m.id,
                    statement=m.statement,
                    correction=m.correction,
                    sentence=units[ui].sentence,
                    similarity=round(s, 3),
                )
            )

        # Key points: the best unit that makes the point without contradicting it. A point counts as
        # contradicted only when the opposing match is strong and beats every supporting match.
        covered: list[CoveredPoint] = []
        missed: list[MissedPoint] = []
        credits: list[float] = []
        best_kp: list[float] = []  # best supporting similarity per key point (a signal)
        free = [ui for ui in range(len(units)) if ui not in mis_units]
        for k, kp in enumerate(q.key_points):
            ok_s, ok_u = max(((float(kp_ok[ui, k]), ui) for ui in free), default=(-1.0, -1))
            best_kp.append(ok_s)
            bad_s, bad_u = max(((float(kp_bad[ui, k]), ui) for ui in free), default=(-1.0, -1))
            credit = _ramp(ok_s, t.cover_min, t.cover_full) if ok_u >= 0 else 0.0
            req = kp.role == "required"
            if bad_u >= 0 and bad_s >= t.contradiction and bad_s >= ok_s + t.contradiction_margin:
                credit = 0.0
                finding, miss = _contradiction(kp, units[bad_u], bad_s)
                found.append(finding)
                missed.append(miss)
            elif credit >= 0.5:
                covered.append(
                    CoveredPoint(
                        id=kp.id,
                        text=kp.text,
                        required=req,
                        sentence=units[ok_u].sentence,
                        similarity=round(ok_s, 3),
                    )
                )
            else:
                missed.append(MissedPoint(id=kp.id, text=kp.text, required=req))
            credits.append(credit)

        # Required points are the core of the answer and weigh double.
        weights = np.array([2.0 if k.role == "required" else 1.0 for k in q.key_points])
        coverage = float(np.dot(weights, credits) / weights.sum())
        n_contra = sum(m.id.startswith("contradicts:") for m in found)
        signals = {
            "coverage": coverage,
            "credit_min": min(credits),
            "credit_required": min(
                c for c, k in zip(credits, q.key_points, strict=True) if k.role == "required"
            ),
            "kp_sim_mean": float(np.mean(np.clip(best_kp, 0.0, 1.0))),
            "ref_sim": ref_sim,
            # How far the unit most like a misconception leans to it rather than to any key point.
            "mis_margin": float((mis_ok.max(axis=1) - kp_ok.max(axis=1)).max()) if mis_ok.size else -1.0,
            "misconceptions": float(len(found) - n_contra),
            "contradictions": float(n_contra),
            "words": float(np.log1p(len(text.split()))),
            # How much of the answer holds a misconception (by words of its sentences): a one-line wrong
            # belief is a different answer from a long correct one with a doubtful aside.
            "mis_share": _share({units[ui].sentence for ui in mis_units}, text),
            "mis_sim": float(mis_ok.max()) if mis_ok.size else 0.0,
            "kp_sim_max": float(max(best_kp)),
        }
        if evidenced:
            # The answer states the very number a misconception leads to (e.g. 30 TB from uint16 ids).
            signals["mis_number"] = 1.0
        probs = None
        if self.claims is not None:
            feats = pair_features(q, units, pol, uvec, tg, cos, lex, contra, t.lexical_weight)
            probs = self.claims.probs(feats)
            signals.update(claim_signals(q, probs))

        if numeric is not None:
            signals["numeric_right"] = float(numeric.correct)
            signals["numeric_wrong"] = float(bool(numeric.found) and not numeric.correct)
            signals["numeric_missing"] = float(not numeric.found)
            if numeric.found:
                coverage = 0.5 * coverage + 0.5 * float(numeric.correct)
            else:
                coverage *= 0.75  # a numeric question answered with no number is at best partly right

        score = (1 - t.reference_weight) * coverage + t.reference_weight * _ramp(ref_sim, 0.3, 0.8)
        score *= t.misconception_penalty ** len(found)
        score = float(np.clip(score, 0.0, 1.0))

        verdict: Verdict
        if score >= t.correct and not found and not (numeric and numeric.found and not numeric.correct):
            verdict = "correct"
        elif score >= t.partial:
            verdict = "partial"
        else:
            verdict = "incorrect"
        if probs is not None:
            # After the score and verdict, which stay the rules' own (a feature and a baseline); the learned
            # grader that owns the pair model replaces both.
            _report_denials(q, units, probs, covered, missed, found)
        grade = Grade(
            question_id=q.id,
            score=round(score, 3),
            verdict=verdict,
            covered=covered,
            missed=missed,
            misconceptions=found,
            feedback="",
            flags=flags,
            numeric=numeric,
            signals={k: round(v, 4) for k, v in signals.items()},
            grader=self.name,
        )
        grade.feedback = feedback_text(grade)
        return grade

    def pair_inputs(self, q: Question, answer: str) -> tuple[list[T.Unit], np.ndarray] | None:
        """The units the grader would compare and their (units, items, features) pair features; None when a
        guard settles the answer. Training the pair model reads these (tutor.grading.train)."""
        p = self._prepare(q, answer)
        if isinstance(p, Grade):
            return None
        uvec = self.embedder.encode([u.text for u in p.units])
        tg = self.targets(q)
        pol, lex, contra = _polarity_matrices(p.units, tg)
        cos = uvec @ tg.phrasings.T
        return p.units, pair_features(q, p.units, pol, uvec, tg, cos, lex, contra, self.t.lexical_weight)

    def _zero(self, q: Question, flags: list[str], message: str) -> Grade:
        return Grade(
            question_id=q.id,
            score=0.0,
            verdict="incorrect",
            missed=[MissedPoint(id=k.id, text=k.text, required=k.role == "required") for k in q.key_points],
            feedback=message,
            flags=list(dict.fromkeys(flags)),
            grader=self.name,
        )


def _share(sentences: set[str], text: str) -> float:
    total = len(text.split())
    return min(1.0, sum(len(s.split()) for s in sentences) / total) if total else 0.0


def _hint_line(q: Question) -> str:
    return f"Hint: {q.hints[0]}" if q.hints else ""


def _check_numeric(q: Question, text: str) -> NumericResult:
    assert q.numeric is not None
    n = q.numeric
    found = [x for x in T.quantities(text) if T.known_unit(x.unit)]
    accepted = [n.value, *n.also_accept]
    ok = any(abs(x.in_unit(n.unit) - v) <= n.tolerance * abs(v) for x in found for v in accepted)
    expected = f"{n.value:g} {n.unit}" + "".join(f" or {v:g} {n.unit}" for v in n.also_accept)
    return NumericResult(expected=expected, found=[x.text for x in found], correct=ok)


def feedback_text(g: Grade) -> str:
    parts = []
    if g.verdict == "correct":
        parts.append("Correct.")
    elif g.verdict == "partial":
        parts.append("Partly right.")
    else:
        parts.append("Not yet right.")
    if g.covered:
        parts.append("You explained: " + "; ".join(c.text.rstrip(".") for c in g.covered) + ".")
    must = [m for m in g.missed if m.required]
    could = [m for m in g.missed if not m.required]
    if must:
        parts.append("Missing: " + "; ".join(m.text.rstrip(".") for m in must) + ".")
    if could:
        label = "To go deeper" if g.verdict == "correct" else "Also missing"
        parts.append(f"{label}: " + "; ".join(m.text.rstrip(".") for m in could) + ".")
    for m in g.misconceptions:
        parts.append(f'Watch out: you wrote "{_short(m.sentence)}". {m.correction}')
    if g.numeric is not None:
        if g.numeric.correct:
            parts.append(f"Your number is right ({g.numeric.expected}).")
        elif g.numeric.found:
            parts.append(f"Your number ({', '.join(g.numeric.found)}) is off: expected {g.numeric.expected}.")
        else:
            parts.append(f"Give the number with its unit (expected {g.numeric.expected}).")
    if "not_english" in g.flags:
        parts.append(
            "This answer seems not to be in English. Answers are compared with English references, so this "
            "grade is less reliable: try answering in English."
        )
    if "grader_instruction" in g.flags:
        parts.append("Instructions to the grader were ignored.")
    if "truncated" in g.flags:
        parts.append(f"Only the first {T.MAX_ANSWER_CHARS} characters were graded.")
    return " ".join(parts)


def _short(s: str, n: int = 120) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"
