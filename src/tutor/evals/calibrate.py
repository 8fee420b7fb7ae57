"""Fit the grader's verdict thresholds on labelled train rows and write evals/calibration.json.

The score does not depend on the verdict cut-offs, so the answers are graded once and the (partial, correct)
pair is found by exhaustive search on a 0.01 grid, maximising QWK (ties: accuracy). The search compares the
scores the grader compares (`decision_scores`: Grade.score is rounded for output after the verdict is
decided), so the fitted QWK is the QWK the grader gets with the fitted cut-offs on the same rows. Optionally a small grid
over other Thresholds fields is searched too; each point re-grades the train rows from cached embeddings.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, get_args

import numpy as np

from tutor.evals import metrics as M
from tutor.evals.dataset import ORDINAL, EvalRow, stratified_sample
from tutor.grader import EmbeddingGrader, InconsistentRule, Thresholds, load_thresholds
from tutor.models import Grade
from tutor.paths import CalibrationError

CALIBRATION_FORMAT = 1
CUT_GRID = np.round(np.arange(0.05, 1.0, 0.01), 2)

# The optional wider search (`tutor calibrate --grid`): few values each, so it stays a sanity check rather
# than an overfit to a few hundred train answers.
DEFAULT_GRID: dict[str, list[float]] = {
    "cover_full": [0.55, 0.62, 0.70],
    "cover_min": [0.35, 0.45],
    "reference_weight": [0.0, 0.15, 0.3],
}


def blocked(g: Grade) -> bool:
    """Grades the grader never calls correct whatever the score (misconception, wrong number)."""
    return bool(g.misconceptions) or bool(g.numeric and g.numeric.found and not g.numeric.correct)


def apply_cutoffs(scores: np.ndarray, block: np.ndarray, partial: float, correct: float) -> np.ndarray:
    """Ordinal verdicts (0 incorrect, 1 partial, 2 correct), the same rule as the grader's."""
    return np.where((scores >= correct) & ~block, 2, np.where(scores >= partial, 1, 0))


def fit_cutoffs(
    gold: Sequence[str],
    scores: Sequence[float] | np.ndarray,
    block: Sequence[bool] | np.ndarray,
    grid: np.ndarray = CUT_GRID,
) -> tuple[float, float, float, float]:
    """Best (partial, correct) cut-offs by QWK then accuracy. Returns (partial, correct, qwk, accuracy)."""
    g = np.array([ORDINAL[x] for x in gold])
    s, b = np.asarray(scores, float), np.asarray(block, bool)
    best = (-2.0, -1.0, 0.35, 0.7)
    for p, c in itertools.combinations(grid, 2):  # p < c
        pred = apply_cutoffs(s, b, p, c)
        cm = np.bincount(g * 3 + pred, minlength=9).reshape(3, 3)
        q = M.qwk_from_confusion(cm)
        q = -1.0 if np.isnan(q) else q
        acc = float(np.trace(cm) / len(g))
        if (q, acc) > best[:2]:
            best = (q, acc, float(p), float(c))
    return best[2], best[3], best[0], best[1]


def grade_all(grader: EmbeddingGrader, rows: Sequence[EvalRow]) -> list[Grade]:
    return [grader.grade(r.question, r.answer) for r in rows]


def decision_scores(
    grader: EmbeddingGrader, rows: Sequence[EvalRow], grades: Sequence[Grade], grid: np.ndarray = CUT_GRID
) -> np.ndarray:
    """Scores that fall on the same side of every cut-off in `grid` as the score the grader compares.

    The grader decides its verdict on the unrounded score and rounds `Grade.score` to 3 decimals for
    output, so a rounded 0.700 may stand for 0.6996, which the grader calls below a 0.70 cut-off. Only a
    rounded score that equals a grid cut-off can be on the wrong side (grid points are 0.01 apart); for
    those rows the grader itself is asked, with that cut-off as its partial threshold, and the score is
    kept (at or above) or moved just below it. Cut-offs fitted on these scores give, on the same rows,
    exactly the verdicts the grader then gives."""
    s = np.array([g.score for g in grades], dtype=float)
    t = grader.t
    try:
        for i, (row, g) in enumerate(zip(rows, grades, strict=True)):
            on = np.flatnonzero(np.isclose(grid, g.score, rtol=0.0, atol=1e-9))
            if not on.size:
                continue
            c = float(grid[on[0]])
            # verdict is "incorrect" exactly when the unrounded score is below `partial`
            grader.t = t.model_copy(update={"partial": c, "correct": max(c, 1.0)})
            above = grader.grade(row.question, row.answer).verdict != "incorrect"
            s[i] = c if above else float(np.nextafter(c, -np.inf))
    finally:
        grader.t = t
    return s


def fit(
    rows: Sequence[EvalRow],
    grader: EmbeddingGrader,
    grid: Mapping[str, Sequence[float]] | None = None,
    base: Thresholds | None = None,
) -> tuple[Thresholds, dict[str, Any]]:
    """Fit thresholds on rows (with a grid, the grader should embed answers through a CachedEmbedder)."""
    base = base or Thresholds()
    gold = [r.label for r in rows]
    points = (
        [dict(zip(grid, vals, strict=True)) for vals in itertools.product(*grid.values())] if grid else [{}]
    )
    tried: list[dict[str, Any]] = []
    best: tuple[float, float, Thresholds] | None = None
    before: dict[str, Any] | None = None
    for point in points:
        grader.t = base.model_copy(update=point)
        grades = grade_all(grader, rows)
        if before is None:
            before = M.verdict_metrics(gold, [g.verdict for g in grades]) if not point else None
        scores = decision_scores(grader, rows, grades)
        p, c, q, acc = fit_cutoffs(gold, scores, [blocked(g) for g in grades])
        tried.append({**point, "partial": p, "correct": c, "qwk": round(q, 4), "accuracy": round(acc, 4)})
        if best is None or (q, acc) > best[:2]:
            best = (q, acc, grader.t.model_copy(update={"partial": p, "correct": c}))
    assert best is not None
    fitted_qwk, fitted = best[0], best[2]
    if before is None:  # a grid was searched: also report the defaults for comparison
        grader.t = base
        before = M.verdict_metrics(gold, [g.verdict for g in grade_all(grader, rows)])
    grader.t = fitted
    after = M.verdict_metrics(gold, [g.verdict for g in grade_all(grader, rows)])
    info = {
        "n": len(rows),
        "objective": "qwk (ties: accuracy)",
        "cutoff_grid": [float(CUT_GRID[0]), float(CUT_GRID[-1]), 0.01],
        "grid": {k: list(v) for k, v in (grid or {}).items()},
        "tried": tried if grid else None,
        "train_before": {k: before[k] for k in ("n", "accuracy", "macro_f1", "qwk")},
        "train_after": {k: after[k] for k in ("n", "accuracy", "macro_f1", "qwk")},
        # the QWK the fit found; equal to train_after's, which the grader itself gets with these cut-offs
        "fitted_qwk": round(fitted_qwk, 4),
    }
    return fitted, info


JUDGE_WEIGHTS = (0.2, 0.4, 0.6, 0.8, 1.0)


JUDGE_INCONSISTENT = get_args(InconsistentRule)  # tried in this order: a tie keeps the first


def fit_judge_weight(
    rows: Sequence[EvalRow],
    grader: EmbeddingGrader,
    engine: Any,
    t: Thresholds,
    weights: Sequence[float] = JUDGE_WEIGHTS,
) -> tuple[Thresholds, dict[str, Any]]:
    """Refit `judge_weight` and the rule for inconsistent orders (`judge_inconsistent`), with the embedding
    cut-offs fixed. When both judge orders agree the verdict is the judge's whatever the weight, so the
    weight only moves the score: chosen by QWK, then by Spearman of score vs label; on a tie the earlier
    (more conservative) setting stays. The judge runs once per answer; later settings read its reply cache."""
    from tutor.judge.fuse import grade_with_judge

    gold = [r.label for r in rows]
    tried = []
    best: tuple[float, float, dict[str, Any]] | None = None
    for rule in JUDGE_INCONSISTENT:
        for w in weights:
            point = {"judge_weight": w, "judge_inconsistent": rule}
            tw = t.model_copy(update=point)
            grader.t = tw
            grades = [grade_with_judge(r.question, r.answer, engine, grader, thresholds=tw) for r in rows]
            q = M.qwk(gold, [g.verdict for g in grades])
            sp = M.spearman([g.score for g in grades], [ORDINAL[x] for x in gold]) or 0.0
            q = -1.0 if np.isnan(q) else q
            tried.append({**point, "qwk": round(q, 4), "spearman": round(sp, 4)})
            if best is None or (q, sp) > best[:2]:
                best = (q, sp, point)
    assert best is not None
    grader.t = t
    return t.model_copy(update=best[2]), {"judge_tried": tried, "judge_rows": len(rows)}


def calibrate(
    rows: Sequence[EvalRow],
    grader: EmbeddingGrader,
    grid: bool = False,
    engine: Any = None,
    judge_sample: int | None = None,
    previous: Path | None = None,
) -> tuple[Thresholds, dict[str, Any]]:
    """All of `tutor calibrate` but the writing: the cut-offs (and with `grid`, DEFAULT_GRID), then the
    judge settings, fitted with `engine` on `judge_sample` rows (label mix kept) or kept from `previous`."""
    t, info = fit(rows, grader, DEFAULT_GRID if grid else None)
    if engine is not None:
        judged = stratified_sample(rows, judge_sample) if judge_sample else rows
        t, judge_info = fit_judge_weight(judged, grader, engine, t)
        info.update(judge_info)
    elif previous is not None:
        t, kept_from = keep_judge_fit(t, previous)
        if kept_from:
            info["judge_kept_from"] = kept_from
    info["grader"] = grader.name
    try:
        from tutor.rubric import default_bank

        info["bank_version"] = default_bank().version
    except Exception:  # rows that carry their own questions calibrate without a bank
        info["bank_version"] = None
    return t, info


JUDGE_FIELDS = ("judge_weight", "judge_inconsistent")


def keep_judge_fit(t: Thresholds, previous: Path) -> tuple[Thresholds, str | None]:
    """A refit without a judge keeps the judge settings of the calibration it replaces (the file being
    overwritten, or the one in use): fitting them takes a long judge run, and the defaults were never
    measured. Returns the thresholds and the version the settings came from (None: no usable file)."""
    try:
        old = load_thresholds(previous) if previous.exists() else None
    except CalibrationError:
        old = None
    if old is None:
        return t, None
    return t.model_copy(update={f: getattr(old, f) for f in JUDGE_FIELDS}), old.version


def version_for(t: Thresholds, when: dt.datetime) -> str:
    body = json.dumps(t.model_dump(exclude={"version"}), sort_keys=True)
    return f"calib-{when:%Y%m%d}-{hashlib.sha256(body.encode()).hexdigest()[:8]}"


def write_calibration(
    path: Path,
    thresholds: Thresholds,
    info: Mapping[str, Any],
    files: Sequence[str],
    split: str | None,
) -> Thresholds:
    """Write the calibration file `load_thresholds()` reads ({"thresholds": {...}} plus how they were fit)."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    t = thresholds.model_copy(update={"version": version_for(thresholds, now)})
    doc = {
        "format": CALIBRATION_FORMAT,
        "version": t.version,
        "created": now.isoformat(),
        "thresholds": t.model_dump(),
        "fit": {"files": list(files), "split": split, **info},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    try:  # write then rename: a failed write never leaves a half-written calibration behind
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        tmp.replace(path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    return t


__all__ = [
    "DEFAULT_GRID",
    "apply_cutoffs",
    "calibrate",
    "decision_scores",
    "fit",
    "fit_cutoffs",
    "keep_judge_fit",
    "write_calibration",
]
