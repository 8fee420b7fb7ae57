"""Question-grouped cross-validation of the verdict cut-offs on the golden train split.

How every "CV QWK" in evals/RESULTS.md was measured: the train answers are graded once per grid point, the
(partial, correct) cut-offs are fitted on 4 folds of *questions* and scored on the 5th, so a change is not
credited for answers to questions it was fitted on. The best grid point is reported, with the original
(v1) and the length-balanced (part c) answers also scored separately. The test split is never read.

    .venv/bin/python evals/cv.py                                   # the current grader and rubrics
    .venv/bin/python evals/cv.py --set misconception_penalty=0.3   # one Thresholds field changed
    TUTOR_RUBRICS=/path/to/rubrics .venv/bin/python evals/cv.py    # other rubric files
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
from sklearn.model_selection import GroupKFold

from tutor.evals import metrics as M
from tutor.evals import runner
from tutor.evals.calibrate import apply_cutoffs, blocked, fit_cutoffs
from tutor.evals.dataset import load_files
from tutor.grader import load_thresholds
from tutor.rubric import default_bank

HERE = Path(__file__).resolve().parent
VERDICTS = ("incorrect", "partial", "correct")
GRID = {"cover_full": [0.55, 0.62, 0.7], "cover_min": [0.35, 0.45]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="a Thresholds field")
    ap.add_argument("--folds", type=int, default=5)
    args = ap.parse_args()
    fixed = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    rows = load_files([HERE / "golden.jsonl"], default_bank(), split="train").rows
    grader = runner.make_grader(load_thresholds(), cache_answers=True)
    runner.prefetch(grader, rows, progress=False)
    gold = [r.label for r in rows]
    groups = [r.question.id for r in rows]
    part_c = np.array([r.id.rsplit("-", 1)[1].startswith("c") for r in rows])

    def qwk(pred: list[str], mask: np.ndarray) -> float:
        return M.qwk(
            [g for g, m in zip(gold, mask, strict=True) if m],
            [p for p, m in zip(pred, mask, strict=True) if m],
        )

    results = []
    for values in itertools.product(*GRID.values()):
        point = {**dict(zip(GRID, values, strict=True)), **fixed}
        grader.t = load_thresholds().model_copy(update=point)
        grades = [grader.grade(r.question, r.answer) for r in rows]
        scores = np.array([g.score for g in grades])
        block = np.array([blocked(g) for g in grades])
        oof = np.zeros(len(rows), int)
        for fit_idx, score_idx in GroupKFold(args.folds).split(scores, groups=groups):
            p, c, _, _ = fit_cutoffs([gold[i] for i in fit_idx], scores[fit_idx], block[fit_idx])
            oof[score_idx] = apply_cutoffs(scores[score_idx], block[score_idx], p, c)
        pred = [VERDICTS[i] for i in oof]
        results.append((qwk(pred, np.ones(len(rows), bool)), qwk(pred, ~part_c), qwk(pred, part_c), point))
    for cv, v1, c, point in sorted(results, key=lambda x: -x[0])[:3]:
        print(f"CV QWK {cv:.3f} (v1 {v1:.3f}, part c {c:.3f})  {point}")


if __name__ == "__main__":
    main()
