"""Agreement metrics, the way the short-answer-grading literature reports them.

Verdicts are ordinal (incorrect < partial < correct): QWK and Spearman use that order. Everything here is a
pure function of label arrays, so the unit tests can check it against hand-computed values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats
from sklearn.metrics import cohen_kappa_score, confusion_matrix, f1_score

from tutor.models import VERDICTS

LABELS: list[str] = list(VERDICTS)  # ordinal order, worst first


def _ord(labels: Sequence[str]) -> np.ndarray:
    idx: dict[str, int] = {v: i for i, v in enumerate(LABELS)}
    return np.array([idx[x] for x in labels], dtype=np.int64)


def _num(x: float | None) -> float | None:
    """JSON-safe float: NaN (undefined, e.g. a correlation with a constant) becomes None."""
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else round(x, 4)


def qwk_from_confusion(cm: np.ndarray) -> float:
    """Quadratic weighted kappa from a k x k confusion matrix (rows gold, columns predicted).

    1 - sum(W * O) / sum(W * E), W_ij = (i - j)^2 / (k - 1)^2, E = outer(row sums, column sums) / n.
    Undefined (NaN) when both raters are constant on the same class.
    """
    cm = np.asarray(cm, dtype=float)
    k = cm.shape[0]
    n = cm.sum()
    if n == 0:
        return float("nan")
    i, j = np.indices((k, k))
    w = (i - j) ** 2 / (k - 1) ** 2
    e = np.outer(cm.sum(axis=1), cm.sum(axis=0)) / n
    denom = (w * e).sum()
    return float("nan") if denom == 0 else float(1 - (w * cm).sum() / denom)


def qwk(gold: Sequence[str], pred: Sequence[str]) -> float:
    return qwk_from_confusion(confusion_matrix(gold, pred, labels=LABELS))


def _kappa(gold: Sequence[str], pred: Sequence[str]) -> float:
    if len(set(gold)) == 1 and set(gold) == set(pred):
        return float("nan")
    return float(cohen_kappa_score(gold, pred, labels=LABELS))


def bootstrap_ci(
    gold: Sequence[str], pred: Sequence[str], n_boot: int = 1000, seed: int = 0
) -> dict[str, list[float | None]]:
    """Percentile 95% intervals for QWK and accuracy over resampled answers (fixed seed: reproducible)."""
    g, p = _ord(gold), _ord(pred)
    n = len(g)
    if n == 0:
        return {"qwk": [None, None], "accuracy": [None, None]}
    rng = np.random.default_rng(seed)
    qs, accs = [], []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        cm = np.bincount(g[idx] * 3 + p[idx], minlength=9).reshape(3, 3)
        qs.append(qwk_from_confusion(cm))
        accs.append(np.trace(cm) / n)
    q = np.array([x for x in qs if not math.isnan(x)])
    return {
        "qwk": [_num(np.percentile(q, 2.5)), _num(np.percentile(q, 97.5))] if len(q) else [None, None],
        "accuracy": [_num(np.percentile(accs, 2.5)), _num(np.percentile(accs, 97.5))],
    }


def verdict_metrics(gold: Sequence[str], pred: Sequence[str]) -> dict[str, Any]:
    """n, accuracy, macro-F1, QWK, Cohen's kappa and the confusion matrix on the three verdicts."""
    n = len(gold)
    if n == 0:
        return {
            "n": 0,
            "accuracy": None,
            "macro_f1": None,
            "qwk": None,
            "kappa": None,
            "confusion": {"labels": LABELS, "matrix": [[0] * 3 for _ in range(3)]},
        }
    cm = confusion_matrix(gold, pred, labels=LABELS)
    present = sorted(set(gold) | set(pred), key=LABELS.index)
    return {
        "n": n,
        "accuracy": _num(np.trace(cm) / n),
        "macro_f1": _num(f1_score(gold, pred, labels=present, average="macro", zero_division=0)),
        "qwk": _num(qwk_from_confusion(cm)),
        "kappa": _num(_kappa(gold, pred)),
        "confusion": {"labels": LABELS, "rows": "gold", "columns": "predicted", "matrix": cm.tolist()},
    }


def two_way_metrics(gold: Sequence[bool], pred: Sequence[bool]) -> dict[str, Any]:
    """Correct vs not: accuracy, weighted and macro F1 (SemEval ranks by weighted F1)."""
    if not gold:
        return {"accuracy": None, "weighted_f1": None, "macro_f1": None}
    g, p = np.asarray(gold, bool), np.asarray(pred, bool)
    return {
        "accuracy": _num((g == p).mean()),
        "weighted_f1": _num(f1_score(g, p, average="weighted", zero_division=0)),
        "macro_f1": _num(f1_score(g, p, average="macro", zero_division=0, labels=[False, True])),
    }


def correlation(x: Sequence[float], y: Sequence[float]) -> dict[str, float | None]:
    """Pearson, Spearman and RMSE of predictions x against gold y (same scale)."""
    a, b = np.asarray(x, float), np.asarray(y, float)
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return {
            "pearson": None,
            "spearman": None,
            "rmse": _num(np.sqrt(np.mean((a - b) ** 2))) if len(a) else None,
        }
    return {
        "pearson": _num(stats.pearsonr(a, b)[0]),
        "spearman": _num(stats.spearmanr(a, b)[0]),
        "rmse": _num(np.sqrt(np.mean((a - b) ** 2))),
    }


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    a, b = np.asarray(x, float), np.asarray(y, float)
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return _num(stats.spearmanr(a, b)[0])


def constant_baseline(gold: Sequence[str]) -> dict[str, Any]:
    """Always predicting the most frequent gold verdict: the floor QWK and accuracy must clear."""
    if not gold:
        return {"label": None, "accuracy": None, "qwk": None}
    values, counts = np.unique(np.asarray(gold), return_counts=True)
    label = str(values[np.argmax(counts)])
    pred = [label] * len(gold)
    q = qwk(gold, pred)
    return {
        "label": label,
        "accuracy": _num(counts.max() / len(gold)),
        "qwk": _num(0.0 if math.isnan(q) else q),
        "macro_f1": _num(f1_score(gold, pred, labels=sorted(set(gold)), average="macro", zero_division=0)),
    }


def latency_stats(latencies_s: Sequence[float], wall_s: float | None = None) -> dict[str, float | None]:
    if not latencies_s:
        return {"p50_ms": None, "p95_ms": None, "answers_per_s": None}
    lat = np.asarray(latencies_s, float) * 1000
    wall = wall_s if wall_s else float(np.sum(latencies_s))
    return {
        "p50_ms": _num(np.percentile(lat, 50)),
        "p95_ms": _num(np.percentile(lat, 95)),
        "answers_per_s": _num(len(lat) / wall) if wall > 0 else None,
    }
