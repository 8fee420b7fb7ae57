"""Question-grouped cross-validation of the embedding grader's verdict cut-offs on the golden train split.

The train answers are graded once per grid point, the (partial, correct) cut-offs are fitted on 4 folds of
*questions* and scored on the 5th, so a change is not credited for answers to questions it was fitted on.
The original (v1) and the length-balanced (part c) answers are also scored separately. The test split is
never read.

The best grid point's CV QWK is optimistic: the point is chosen by the same folds that score it. `--nested`
also reports the nested figure, where each outer fold's grid point is chosen by an inner question-grouped
CV on the other folds' questions only, and the outer fold is then scored with it.

This is how the "CV QWK" figures of evals/RESULTS.md's second table were measured (400 train answers);
`--v1-only` restricts it to the 320 v1 train answers the first table was measured on. Both tables were
measured with the grader of their day: the current code gives other numbers (see RESULTS.md).

    .venv/bin/python evals/cv.py                                   # the current grader and rubrics
    .venv/bin/python evals/cv.py --nested                          # plus the nested (unbiased) figure
    .venv/bin/python evals/cv.py --set misconception_penalty=0.3   # one Thresholds field changed
    TUTOR_RUBRICS=/path/to/rubrics .venv/bin/python evals/cv.py    # other rubric files
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.model_selection import GroupKFold

from tutor.evals import metrics as M
from tutor.evals import runner
from tutor.evals.calibrate import apply_cutoffs, blocked, decision_scores, fit_cutoffs
from tutor.evals.dataset import load_files
from tutor.grader import load_thresholds
from tutor.rubric import default_bank

HERE = Path(__file__).resolve().parent
VERDICTS = ("incorrect", "partial", "correct")
GRID = {"cover_full": [0.55, 0.62, 0.7], "cover_min": [0.35, 0.45]}


def cv_predict(
    gold: Sequence[str],
    scores: np.ndarray,
    block: np.ndarray,
    groups: np.ndarray,
    idx: np.ndarray,
    folds: int,
) -> np.ndarray:
    """Out-of-fold ordinal verdicts for the rows `idx`, cut-offs fitted on the other folds' questions."""
    pred = np.zeros(len(idx), int)
    for fit_i, score_i in GroupKFold(folds).split(idx, groups=groups[idx]):
        a, b = idx[fit_i], idx[score_i]
        p, c, _, _ = fit_cutoffs([gold[i] for i in a], scores[a], block[a])
        pred[score_i] = apply_cutoffs(scores[b], block[b], p, c)
    return pred


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="a Thresholds field")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--nested", action="store_true", help="also report the nested CV figure")
    ap.add_argument("--v1-only", action="store_true", help="only the v1 train answers (not part c)")
    args = ap.parse_args()
    fixed = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    rows = load_files([HERE / "golden.jsonl"], default_bank(), split="train").rows
    part_c = np.array([r.id.rsplit("-", 1)[1].startswith("c") for r in rows])
    if args.v1_only:
        rows = [r for r, c in zip(rows, part_c, strict=True) if not c]
        part_c = np.zeros(len(rows), bool)
    # The embedding grader's cut-offs are what is cross-validated, whatever TUTOR_GRADER says.
    grader = runner.make_grader(load_thresholds(), cache_answers=True, kind="embedding")
    runner.prefetch(grader, rows, progress=False)
    gold = [r.label for r in rows]
    groups = np.array([r.question.id for r in rows])
    everything = np.arange(len(rows))

    def qwk(pred: np.ndarray, mask: np.ndarray) -> float:
        if not mask.any():
            return float("nan")
        return M.qwk([g for g, m in zip(gold, mask, strict=True) if m], [VERDICTS[i] for i in pred[mask]])

    def line(pred: np.ndarray) -> str:
        return f"{qwk(pred, np.ones(len(rows), bool)):.3f} (v1 {qwk(pred, ~part_c):.3f}, part c {qwk(pred, part_c):.3f})"

    points, scored = [], []
    for values in itertools.product(*GRID.values()):
        point = {**dict(zip(GRID, values, strict=True)), **fixed}
        grader.t = load_thresholds().model_copy(update=point)
        grades = [grader.grade(r.question, r.answer) for r in rows]
        scores = decision_scores(grader, rows, grades)  # what the grader compares, not the rounded score
        block = np.array([blocked(g) for g in grades])
        points.append(point)
        scored.append((scores, block))
    flat = [cv_predict(gold, s, b, groups, everything, args.folds) for s, b in scored]
    ranked = sorted(range(len(points)), key=lambda i: -qwk(flat[i], np.ones(len(rows), bool)))
    print(f"{len(rows)} train answers; best grid points (optimistic: chosen by the folds that score them):")
    for i in ranked[:3]:
        print(f"CV QWK {line(flat[i])}  {points[i]}")
    if args.nested:
        pred = np.zeros(len(rows), int)
        chosen = []
        for outer_fit, outer_test in GroupKFold(args.folds).split(everything, groups=groups):
            inner = [
                qwk_inner
                for s, b in scored
                for qwk_inner in [
                    M.qwk(
                        [gold[i] for i in outer_fit],
                        [VERDICTS[v] for v in cv_predict(gold, s, b, groups, outer_fit, args.folds)],
                    )
                ]
            ]
            best = int(np.nanargmax(inner))
            chosen.append(best)
            s, b = scored[best]
            p, c, _, _ = fit_cutoffs([gold[i] for i in outer_fit], s[outer_fit], b[outer_fit])
            pred[outer_test] = apply_cutoffs(s[outer_test], b[outer_test], p, c)
        print(
            f"nested CV QWK {line(pred)}  (grid points chosen per outer fold: {[points[i] for i in chosen]})"
        )


if __name__ == "__main__":
    main()
