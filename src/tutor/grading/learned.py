"""The learned grader: the embedding grader's measurements plus nearest labeled answers -> a verdict.

The embedding grader (``tutor.grading.embedding``) still does everything a learner reads: which sentence
made which key point, what was missed, which misconception it holds, and the guards (empty, "don't know",
off-topic, instructions to the grader, keyword lists). What it cannot do well is turn those measurements
into the verdict an examiner gives: a short correct answer covers little of the rubric, a long partial
one covers a lot. A gradient-boosted tree model trained on labeled answers (``make train``, see
``tutor.grading.train`` and ``trained/MODEL_CARD.md``) makes that decision.

The model files live in ``trained/``: ``verdict.onnx`` (the trees, run by onnxruntime, which the embedder
already loads), ``claims.onnx`` (the pair model of ``tutor.grading.claims``, whose summary is among the
features), ``exemplars.npz`` (whole-answer embeddings of the labeled training answers, by question)
and ``card.json`` (feature names, decision cut-offs, the embedding thresholds it was trained with, the
sha256 of each file). Every file's sha256 is checked at load.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tutor.embed import Embedder, default_embedder
from tutor.grading.claims import ClaimModel, tree_session
from tutor.grading.embedding import EmbeddingGrader, Thresholds, feedback_text, load_thresholds
from tutor.grading.features import FEATURES, Exemplars, feature_row, merge, rubric_exemplars
from tutor.models import VERDICTS, Grade, Question, Verdict
from tutor.paths import ModelFileError

TRAINED_DIR = Path(__file__).resolve().parent / "trained"
REBUILD = "Rebuild it with `make train`, or grade without it: TUTOR_GRADER=embedding."


class ModelCard(BaseModel):
    """card.json: what grading needs to use the model, and the provenance a reader needs to trust it."""

    model_config = ConfigDict(extra="forbid")

    version: str
    features: list[str]
    cut_correct: float = Field(description="expected score >= this -> correct")
    cut_partial: float = Field(description="expected score >= this -> partial")
    thresholds: Thresholds = Field(
        description="the embedding grader settings the features were computed with"
    )
    embedder: str = Field(description="the embedder the exemplar vectors were made with")
    files: dict[str, str] = Field(description="file name -> sha256")
    training: dict[str, Any] = Field(default_factory=dict, description="data, hyperparameters, metrics")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class LearnedModel:
    """The verdict model and its exemplars, loaded from a trained/ directory and checked."""

    def __init__(
        self, card: ModelCard, session: Any, claims: ClaimModel, exemplars: Exemplars, directory: Path
    ):
        self.card = card
        self.session = session
        self.claims = claims
        self.exemplars = exemplars
        self.directory = directory

    @classmethod
    def load(cls, directory: Path | None = None) -> LearnedModel:
        d = directory or TRAINED_DIR
        card_path = d / "card.json"
        if not card_path.is_file():
            raise ModelFileError(f"{card_path}: the trained grader is missing. {REBUILD}")
        try:
            card = ModelCard.model_validate_json(card_path.read_text())
        except (OSError, UnicodeDecodeError, ValidationError) as e:
            raise ModelFileError(f"{card_path}: not a valid model card ({_first_line(e)}). {REBUILD}") from e
        if card.features != list(FEATURES):
            raise ModelFileError(
                f"{card_path}: the model was trained on other features than this version computes. {REBUILD}"
            )
        for name, digest in card.files.items():
            path = d / name
            if not path.is_file():
                raise ModelFileError(f"{path}: missing (listed in {card_path.name}). {REBUILD}")
            if _sha256(path) != digest:
                raise ModelFileError(f"{path}: damaged (sha256 differs from {card_path.name}). {REBUILD}")
        for required in ("verdict.onnx", "claims.onnx", "exemplars.npz"):
            if required not in card.files:
                raise ModelFileError(f"{card_path}: lists no {required}. {REBUILD}")
        session = tree_session(d / "verdict.onnx")
        with np.load(d / "exemplars.npz", allow_pickle=False) as z:
            ex = Exemplars(
                vecs=z["vecs"].astype(np.float32),
                labels=z["labels"].astype(np.int64),
                qids=z["qids"].astype(str),
                groups=z["groups"].astype(str),
            )
        return cls(card, session, ClaimModel.from_onnx(d / "claims.onnx"), ex, d)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """(n, features) -> (n, 3) probabilities in VERDICTS order (incorrect, partial, correct)."""
        out = self.session.run(
            ["probabilities"], {"X": np.asarray(x, dtype=np.float32).reshape(-1, len(FEATURES))}
        )
        return np.asarray(out[0], dtype=np.float64)

    def decide(
        self, p: np.ndarray, wrong_number: bool = False, mis_number: bool = False
    ) -> tuple[float, Verdict]:
        return decide(p, self.card.cut_partial, self.card.cut_correct, wrong_number, mis_number)


def decide(
    p: np.ndarray,
    cut_partial: float,
    cut_correct: float,
    wrong_number: bool = False,
    mis_number: bool = False,
) -> tuple[float, Verdict]:
    """Expected grade (incorrect 0, partial 0.5, correct 1) and the verdict its cut-offs give.

    LABELING.md on numeric questions overrides the trees: a wrong final number is never correct, and the
    number a known wrong reasoning leads to (30 TB from uint16 ids) is a wrong number from wrong reasoning,
    so incorrect."""
    score = float(p[1] * 0.5 + p[2])
    if wrong_number and mis_number:
        return min(score, cut_partial - 1e-3), "incorrect"
    if wrong_number and score >= cut_correct:
        score = cut_correct - 1e-3
    if score >= cut_correct:
        return score, "correct"
    if score >= cut_partial:
        return score, "partial"
    return score, "incorrect"


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


class LearnedGrader:
    """Grades like EmbeddingGrader (same fields, same feedback), with the verdict and score from the model."""

    def __init__(
        self,
        model: LearnedModel | None = None,
        embedder: Embedder | None = None,
        thresholds: Thresholds | None = None,
    ):
        self.model = model or LearnedModel.load()
        card = self.model.card
        self.embedding = EmbeddingGrader(
            embedder=embedder or default_embedder(), thresholds=card.thresholds, claims=self.model.claims
        )
        self.embedder = self.embedding.embedder
        # A question the model was not built for (neither labeled answers nor a rubric's misconceptions: an
        # external dataset's ad-hoc question, whose rubric is one reference answer) gets the embedding grade,
        # with the hand-set default thresholds: the calibration was fitted on this project's rubrics, and on
        # the external datasets' train splits the defaults rank answers at least as well (evals/RESULTS.md).
        self.fallback = EmbeddingGrader(embedder=self.embedder, thresholds=Thresholds())
        # Judge fusion reads these: the judge settings of the active calibration, with the score bands of
        # this model's cut-offs so a fused score stays inside its verdict's band.
        calib = thresholds or load_thresholds()
        self.t = calib.model_copy(update={"correct": card.cut_correct, "partial": card.cut_partial})
        self.name = f"learned:{card.version}"
        self._labeled = self.model.exemplars.questions()

    def warm(self, questions: Sequence[Question]) -> None:
        self.embedding.warm([q for q in questions if self.applies(q)])
        self.fallback.warm([q for q in questions if not self.applies(q)])

    def applies(self, q: Question) -> bool:
        """Whether the model grades this question (else the embedding grader's verdict stands)."""
        return bool(q.misconceptions) or q.id in self._labeled

    def features(self, q: Question, answer: str, base: Grade, answer_vec: np.ndarray) -> np.ndarray:
        tg = self.embedding.targets(q)
        ex = merge(self.model.exemplars.select(q.id), rubric_exemplars(tg.reference, tg.misconception_vecs))
        return feature_row(base, answer_vec, tg.reference, tg.question, q.numeric is not None, ex)

    def grade(self, question: Question, answer: str) -> Grade:
        return self.grade_many([(question, answer)])[0]

    def grade_many(self, items: Sequence[tuple[Question, str]]) -> list[Grade]:
        """Grade several answers: one encoder call for every unit and whole answer, one model call."""
        out: list[Grade | None] = [None] * len(items)
        other = [i for i, (q, _) in enumerate(items) if not self.applies(q)]
        if other:
            for i, g in zip(other, self.fallback.grade_many([items[i] for i in other]), strict=True):
                out[i] = g
        own = [i for i, (q, _) in enumerate(items) if self.applies(q)]
        bases, answer_vecs = self.embedding.grade_and_embed([items[i] for i in own], [True] * len(own))
        todo = []
        for i, g, v in zip(own, bases, answer_vecs, strict=True):
            if g.signals and v is not None:
                todo.append((i, g, v))
            else:  # a guard's grade (empty, off-topic...) stands
                out[i] = g.model_copy(update={"grader": self.name})
        if todo:
            x = np.stack([self.features(items[i][0], items[i][1], g, v) for i, g, v in todo])
            for (i, g, _), p in zip(todo, self.model.predict_proba(x), strict=True):
                out[i] = self._final(g, p)
        assert all(g is not None for g in out)
        return [g for g in out if g is not None]

    def _final(self, base: Grade, p: np.ndarray) -> Grade:
        wrong_number = base.numeric is not None and bool(base.numeric.found) and not base.numeric.correct
        score, verdict = self.model.decide(p, wrong_number, bool(base.signals.get("mis_number")))
        signals = {
            **base.signals,
            "embedding_score": base.score,
            "embedding_verdict": float(VERDICTS.index(base.verdict)),
            **{f"p_{v}": round(float(pv), 4) for v, pv in zip(VERDICTS, p, strict=True)},
        }
        g = base.model_copy(
            update={"score": round(score, 3), "verdict": verdict, "signals": signals, "grader": self.name}
        )
        g.feedback = feedback_text(g)
        return g
