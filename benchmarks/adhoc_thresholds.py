"""Which embedding thresholds should grade an ad-hoc question (a rubric that is one reference answer)?

The learned grader does not apply to such questions (external datasets' questions: neither labeled answers
nor misconceptions) and hands them to an embedding grader. This compares, on each external dataset's
**train** split only (Mohler: all of it; a 1,500-row sample, seed 0, as benchmarks/external.py fits on), how
well the embedding score ranks answers with the hand-set default thresholds and with the calibration the
trained model ships (fitted on this project's golden train split): AUC of the score for `correct`, and
Spearman correlation with the 3-level label. No test split is read.

    python benchmarks/adhoc_thresholds.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import external as X

from tutor.embed import CachedEmbedder, default_embedder
from tutor.grading.embedding import EmbeddingGrader, Thresholds
from tutor.grading.learned import LearnedModel

ORDER = {"incorrect": 0, "partial": 1, "correct": 2}


def main() -> None:
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    emb = CachedEmbedder(default_embedder())
    graders = {
        "default": EmbeddingGrader(embedder=emb, thresholds=Thresholds()),
        "shipped calibration": EmbeddingGrader(embedder=emb, thresholds=LearnedModel.load().card.thresholds),
    }
    print("dataset | split | n | " + " | ".join(f"{k}: AUC / Spearman" for k in graders))
    for d, (folder, _) in X.DATASETS.items():
        split = "all" if d == "mohler" else "train"
        rows = X.load(folder, split, d, sample=1500)
        correct = np.array([r.label == "correct" for r in rows])
        ordinal = [ORDER.get(r.label, 0) for r in rows]
        cells = []
        for g in graders.values():
            score = np.array([g.grade(r.question, r.answer).score for r in rows])
            cells.append(f"{roc_auc_score(correct, score):.3f} / {spearmanr(score, ordinal).statistic:.3f}")
        print(f"{d} | {split} | {len(rows)} | " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
