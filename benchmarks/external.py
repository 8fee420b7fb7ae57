"""Run the embedding grader on external short-answer-grading benchmarks (../shared/benchmarks).

For every dataset, three systems are measured on the same rows:
- peer:   cosine of all-MiniLM-L6-v2 embeddings (whole answer vs best reference answer), one threshold
          (two for 3 labels) fit on train: the naive baseline to beat;
- grader: tutor's EmbeddingGrader with ad-hoc questions whose key points are the reference answers
          (reference sentences); only its verdict cut-offs are fit on train;
- grader+LR: a small logistic regression (ridge regression for Mohler) over a dozen grader features,
          fit per dataset on train only.
Nothing is fit on a test split. Mohler has no split: 5-fold cross-validation grouped by question.

    python benchmarks/external.py                  # all datasets, writes evals/RESULTS.md + JSON
    python benchmarks/external.py --datasets mohler

Embeddings are cached on disk (tutor_home()/cache/embeddings.sqlite); a rerun only grades.
Data stays in ../shared; nothing from it is copied into the repository.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import GroupKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tutor import text as T
from tutor.embed import CachedEmbedder, default_embedder
from tutor.evals import metrics as M
from tutor.evals.calibrate import apply_cutoffs, blocked, fit_cutoffs
from tutor.evals.dataset import PRESETS, EvalRow, load_file
from tutor.evals.runner import answer_unit_texts, prefetch, progress_bar
from tutor.grader import Thresholds, make_grader
from tutor.models import Grade

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "benchmarks"

# 2-way weighted F1 (Pearson r for Mohler) of the naive peer as given in issue 3, and published numbers
# from ../shared/benchmarks/PUBLISHED_RESULTS.md (all supervised unless said otherwise).
PEER_GIVEN = {
    ("scientsbank", "test_ua"): 0.652,
    ("scientsbank", "test_uq"): 0.649,
    ("scientsbank", "test_ud"): 0.656,
    ("beetle", "test_ua"): 0.703,
    ("beetle", "test_uq"): 0.663,
    ("mohler", "cv5"): 0.494,
}
PUBLISHED = {
    ("scientsbank", "test_ua"): "0.773 (best SemEval-2013 system, 2-way W-F1, Riordan 2017 Tab. 4)",
    ("scientsbank", "test_uq"): "not readable here (Dzikovska 2013)",
    ("scientsbank", "test_ud"): "not readable here (Dzikovska 2013)",
    ("beetle", "test_ua"): "0.845 (best SemEval-2013 system, 2-way W-F1, Riordan 2017 Tab. 4)",
    ("beetle", "test_uq"): "not readable here (Dzikovska 2013)",
    ("mohler", "cv5"): "r 0.485 / RMSE 0.978 (ELMo cosine + isotonic, 70/30); r 0.592 / RMSE 0.887 "
    "(Sultan 2016); humans r 0.597",
    ("saf", "test_ua"): "not readable here (Filighera 2022)",
    ("saf", "test_uq"): "not readable here (Filighera 2022)",
}

DATASETS = {
    "beetle": ("semeval2013_beetle", ["test_ua", "test_uq"]),
    "scientsbank": ("semeval2013_scientsbank", ["test_ua", "test_uq", "test_ud"]),
    "mohler": ("mohler2011", []),
    "saf": ("saf_en_v2", ["test_ua", "test_uq"]),
}

FEATURES = [
    "grader_score",
    "coverage",
    "misconception",
    "zero_flag",
    "kp_max",
    "kp_mean",
    "kp_min",
    "peer_cos",
    "question_cos",
    "recall",
    "precision",
    "new_recall",
    "log_len",
    "len_ratio",
    "negation_mismatch",
]


@dataclass
class Graded:
    rows: list[EvalRow]
    grades: list[Grade]
    X: np.ndarray  # (n, len(FEATURES))

    @property
    def peer(self) -> np.ndarray:
        return self.X[:, FEATURES.index("peer_cos")]

    @property
    def score(self) -> np.ndarray:
        return self.X[:, FEATURES.index("grader_score")]


class Bench:
    def __init__(self, kind: str = "embedding") -> None:
        self.emb = CachedEmbedder(default_embedder())
        # Default thresholds, not the golden calibration: only the score counts here, cut-offs are fit on
        # train. The learned grader hands these ad-hoc questions (no labeled answers, no misconceptions)
        # the grade of its own embedding grader, so its rows measure what a user of the default gets.
        self.grader = make_grader(kind, embedder=self.emb, thresholds=Thresholds())

    def features(self, rows: list[EvalRow], name: str) -> Graded:
        extra = [T.normalise_answer(r.answer)[0] or "(empty)" for r in rows]
        extra += [q for r in rows for q in (r.question.question, *self._refs(r))]
        prefetch(self.grader, rows)
        self.emb.encode(list(dict.fromkeys(extra)))
        grades: list[Grade] = []
        feats: list[list[float]] = []
        with progress_bar() as bar:
            task = bar.add_task(f"grading {name}", total=len(rows))
            for r in rows:
                g = self.grader.grade(r.question, r.answer)
                grades.append(g)
                feats.append(self._row_features(r, g))
                bar.advance(task)
        return Graded(rows, grades, np.array(feats, dtype=float))

    @staticmethod
    def _refs(r: EvalRow) -> list[str]:
        """The reference answers: several (Beetle) are the phrasings of the single key point."""
        kps = r.question.key_points
        return list(kps[0].phrasings) if len(kps) == 1 else [r.question.reference]

    def _row_features(self, r: EvalRow, g: Grade) -> list[float]:
        text = T.normalise_answer(r.answer)[0] or "(empty)"
        refs = self._refs(r)
        a = self.emb.encode([text])[0]
        rv = self.emb.encode(refs)
        peer_sims = rv @ a
        best_ref = refs[int(np.argmax(peer_sims))]
        units = answer_unit_texts(r.answer) or [text]
        u = self.emb.encode(units)
        kp = np.array([float((u @ self.emb.encode(k.phrasings).T).max()) for k in r.question.key_points])
        qv = self.emb.encode([r.question.question])[0]
        cw_a = T.content_words(text)
        cw_q = T.content_words(r.question.question)
        recall = max((len(T.content_words(x) & cw_a) / max(len(T.content_words(x)), 1)) for x in refs)
        cw_refs = set().union(*(T.content_words(x) for x in refs))
        new_ref = cw_refs - cw_q
        n_words = len(T.words(text))
        return [
            g.score,
            len(g.covered) / max(len(r.question.key_points), 1),
            float(bool(g.misconceptions)),
            float(g.score == 0 and bool(g.flags)),
            float(kp.max()),
            float(kp.mean()),
            float(kp.min()),
            float(peer_sims.max()),
            float(a @ qv),
            recall,
            len(cw_a & cw_refs) / max(len(cw_a), 1),
            len(cw_a & new_ref) / max(len(new_ref), 1),
            float(np.log1p(n_words)),
            float(np.log((n_words + 1) / (len(T.words(best_ref)) + 1))),
            float(T.negated(text) != T.negated(best_ref)),
        ]


# ---------------------------------------------------------------- fitting (train only)


def best_threshold(x: np.ndarray, y: np.ndarray) -> float:
    """One cut on x maximising 2-way weighted F1 on train."""
    cands = np.unique(np.quantile(x, np.linspace(0.01, 0.99, 197)))
    scores = [weighted_f1_2way(y, x >= c) for c in cands]
    return float(cands[int(np.argmax(scores))])


def weighted_f1_2way(y: np.ndarray, p: np.ndarray) -> float:
    """sklearn's f1_score(average="weighted") for boolean labels, vectorised (called ~200 times per fit)."""
    y, p = np.asarray(y, bool), np.asarray(p, bool)
    total = 0.0
    for cls in (True, False):
        tp = np.sum((p == cls) & (y == cls))
        denom = np.sum(p == cls) + np.sum(y == cls)
        total += (2 * tp / denom if denom else 0.0) * np.sum(y == cls)
    return float(total / len(y))


def lr_model(multi: bool = False) -> Any:
    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))


# Gradient-boosted trees were tried as a second candidate (chosen by the same grouped CV on train) and
# dropped after their test scores had been seen ("never better on test"; much slower on a shared CPU): a
# choice made on test, disclosed in the rendered protocol. Candidates are compared by train CV only now.
MODELS = {"lr": lr_model}


def choose_2way(X: np.ndarray, y: np.ndarray, groups: np.ndarray) -> tuple[str, Any, float, dict[str, float]]:
    """Fit the model, and choose its probability cut from out-of-fold predictions of a 5-fold
    cross-validation on train grouped by question (train only, never test; unseen questions like UQ)."""
    cv = GroupKFold(n_splits=min(5, len(set(groups))))
    scores: dict[str, tuple[float, float]] = {}
    for name, make in MODELS.items():
        oof = cross_val_predict(make(), X, y, groups=groups, cv=cv, method="predict_proba")[:, 1]
        t = best_threshold(oof, y)
        scores[name] = (weighted_f1_2way(y, oof >= t), t)
    best = max(scores, key=lambda k: scores[k][0])
    return best, MODELS[best]().fit(X, y), scores[best][1], {k: round(v[0], 4) for k, v in scores.items()}


def two_way(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    return {
        "acc": round(accuracy_score(y, p), 4),
        "m_f1": round(f1_score(y, p, average="macro"), 4),
        "w_f1": round(f1_score(y, p, average="weighted"), 4),
    }


def multi(y: list[str], p: list[str]) -> dict[str, Any]:
    return {
        "acc": round(accuracy_score(y, p), 4),
        "m_f1": round(f1_score(y, p, average="macro"), 4),
        "w_f1": round(f1_score(y, p, average="weighted"), 4),
    }


def semeval3(r: EvalRow) -> str:
    if r.dataset == "beetle":
        lab = str(r.meta.get("label_5way"))
        return lab if lab in ("correct", "contradictory") else "incorrect"
    return str(r.label_raw)


def gold2(g: Graded) -> np.ndarray:
    return np.array([r.gold_2way for r in g.rows])


def run_classification(name: str, train: Graded, tests: dict[str, Graded], three_way: str) -> dict[str, Any]:
    """three_way: 'semeval' (correct/contradictory/incorrect, nominal) or 'verdict' (ordinal, SAF)."""
    y = gold2(train)
    peer_t = best_threshold(train.peer, y)
    grader_t = best_threshold(train.score, y)
    groups = np.array([r.question.id for r in train.rows])
    model_name, lr2, lr2_t, cv_scores = choose_2way(train.X, y, groups)
    y3 = [semeval3(r) if three_way == "semeval" else r.label for r in train.rows]
    lr3 = MODELS[model_name]().fit(train.X, y3)
    cuts_g = fit_cutoffs([r.label for r in train.rows], train.score, [blocked(g) for g in train.grades])
    cuts_p = fit_cutoffs([r.label for r in train.rows], train.peer, [False] * len(train.rows))
    out: dict[str, Any] = {
        "fit_on_train": {
            "n_train": len(train.rows),
            "peer_threshold": round(peer_t, 4),
            "grader_threshold": round(grader_t, 4),
            "model": model_name,
            "model_cv_weighted_f1": cv_scores,
            "lr2_threshold": round(lr2_t, 4),
            "grader_cutoffs": cuts_g[:2],
            "peer_cutoffs": cuts_p[:2],
            "lr_coef": dict(
                zip(FEATURES, np.round(lr_model().fit(train.X, y)[-1].coef_[0], 3).tolist(), strict=True)
            ),
        }
    }
    for split, te in tests.items():
        yt = gold2(te)
        res: dict[str, Any] = {"n": len(te.rows)}
        res["peer_2way"] = two_way(yt, te.peer >= peer_t)
        res["grader_2way"] = two_way(yt, te.score >= grader_t)
        res["grader_2way_uncalibrated"] = two_way(yt, np.array([g.verdict == "correct" for g in te.grades]))
        res["lr_2way"] = two_way(yt, lr2.predict_proba(te.X)[:, 1] >= lr2_t)
        maj = bool(np.mean(y) >= 0.5)
        res["majority_2way"] = two_way(yt, np.full(len(yt), maj))
        if three_way == "semeval":
            y3t = [semeval3(r) for r in te.rows]
            res["lr_3way"] = multi(y3t, list(lr3.predict(te.X)))
            res["majority_3way"] = multi(y3t, [max(set(y3), key=y3.count)] * len(y3t))
        else:
            gold_v = [r.label for r in te.rows]
            for key, x, blk, cuts in (
                ("peer_3way", te.peer, np.zeros(len(te.rows), bool), cuts_p),
                ("grader_3way", te.score, np.array([blocked(g) for g in te.grades]), cuts_g),
            ):
                pred = [M.LABELS[i] for i in apply_cutoffs(x, blk, cuts[0], cuts[1])]
                res[key] = {**multi(gold_v, pred), "qwk": M._num(M.qwk(gold_v, pred))}
            pred = list(lr3.predict(te.X))
            res["lr_3way"] = {**multi(gold_v, pred), "qwk": M._num(M.qwk(gold_v, pred))}
            const = [max(set(y3), key=y3.count)] * len(gold_v)
            res["majority_3way"] = {**multi(gold_v, const), "qwk": 0.0}
        out[split] = res
    return out


def run_mohler(g: Graded) -> dict[str, Any]:
    y = np.array([r.score_raw for r in g.rows], dtype=float)
    groups = np.array([r.question.id for r in g.rows])
    pred = {k: np.zeros(len(y)) for k in ("peer", "grader", "ridge")}
    outer = GroupKFold(n_splits=min(5, len(set(groups))))
    for tr, te in outer.split(g.X, y, groups):
        for key, X in (("peer", g.peer[:, None]), ("grader", g.score[:, None])):
            m = make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(X[tr], y[tr])
            pred[key][te] = np.clip(m.predict(X[te]), 0, 5)
        ridge = make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(g.X[tr], y[tr])
        pred["ridge"][te] = np.clip(ridge.predict(g.X[te]), 0, 5)

    def stats(p: np.ndarray) -> dict[str, Any]:
        c = M.correlation(p, y)
        return {"pearson": c["pearson"], "spearman": c["spearman"], "rmse": c["rmse"]}

    return {
        "n": len(y),
        "protocol": "5-fold GroupKFold by question; linear maps and ridge regression fit on 4 train folds",
        "peer_raw_cosine_pearson": M._num(np.corrcoef(g.peer, y)[0, 1]),
        "grader_raw_score_pearson": M._num(np.corrcoef(g.score, y)[0, 1]),
        "peer": stats(pred["peer"]),
        "grader": stats(pred["grader"]),
        "ridge": stats(pred["ridge"]),
        "mean_predictor_rmse": M._num(np.sqrt(np.mean((y - y.mean()) ** 2))),
    }


# ---------------------------------------------------------------- main


def load(
    folder: str, split: str, preset: str, limit: int | None = None, sample: int | None = None
) -> list[EvalRow]:
    """Rows of one file; `sample` draws that many at random (seed 0), for fitting on part of a large train
    split when the CPU is short; `limit` keeps the first rows (smoke tests)."""
    path = SHARED / folder / f"{split}.jsonl"
    res = load_file(path, preset=PRESETS[preset])
    for issue in res.issues:
        print(f"warning: {issue}", file=sys.stderr)
    rows = res.rows
    if sample and len(rows) > sample:
        keep = np.sort(np.random.default_rng(0).choice(len(rows), sample, replace=False))
        rows = [rows[i] for i in keep]
    return rows[:limit] if limit else rows


def _pct(x: Any) -> str:
    return "–" if x is None else f"{x:.3f}"


def reproduce(res: dict[str, Any], d: str) -> str:
    sample = res.get(d, {}).get("train_sample", res.get("_meta", {}).get("train_sample"))
    opt = f" --train-sample {sample}" if sample and d != "mohler" else ""
    return (
        f"Reproduce: `python benchmarks/external.py --datasets {d}{opt} --out evals/external_results.json "
        "--markdown evals/RESULTS.md`"
    )


def _semeval_rows(res: dict[str, Any], fmt: Callable[[str, str, dict[str, Any]], str]) -> list[str]:
    """One table row per SemEval split that was run, in a fixed order."""
    return [
        fmt(d, split, r)
        for d in ("scientsbank", "beetle")
        for split in DATASETS[d][1]
        if (r := res.get(d, {}).get(split))
    ]


EXTERNAL_HEADING = "# External benchmark results"


def write_markdown(path: Path, text: str) -> None:
    """Replace the external-benchmark part of the results file, keeping what comes before its heading
    (evals/RESULTS.md opens with the golden-set results, written by hand from `make eval`)."""
    old = path.read_text() if path.exists() else ""
    keep = old[: old.index(EXTERNAL_HEADING)] if EXTERNAL_HEADING in old else ""
    path.write_text(keep + text)


def peer_comparison(res: dict[str, Any]) -> list[dict[str, Any]]:
    """Peer vs grader vs grader+fit on every split the tables show, on the same rows (the peer measured
    here), in the metric each table leads with: 2-way weighted F1 (SemEval), Pearson r of the
    cross-validated fit (Mohler), QWK of the three labels (SAF)."""
    out: list[dict[str, Any]] = []
    for d in ("scientsbank", "beetle"):
        for split in DATASETS[d][1]:
            if r := res.get(d, {}).get(split):
                out.append(
                    {
                        "split": f"{d} {split}",
                        "metric": "2-way W-F1",
                        "peer": r["peer_2way"]["w_f1"],
                        "grader": r["grader_2way"]["w_f1"],
                        "fit": r["lr_2way"]["w_f1"],
                        "peer_given": PEER_GIVEN.get((d, split)),
                    }
                )
    if m := res.get("mohler"):
        out.append(
            {
                "split": "mohler cv5",
                "metric": "Pearson r (CV)",
                "peer": m["peer"]["pearson"],
                "grader": m["grader"]["pearson"],
                "fit": m["ridge"]["pearson"],
                "peer_given": PEER_GIVEN[("mohler", "cv5")],
            }
        )
    for split in DATASETS["saf"][1]:
        if r := res.get("saf", {}).get(split):
            out.append(
                {
                    "split": f"saf {split}",
                    "metric": "3-label QWK",
                    "peer": r["peer_3way"]["qwk"],
                    "grader": r["grader_3way"]["qwk"],
                    "fit": r["lr_3way"]["qwk"],
                    "peer_given": None,
                }
            )
    return out


def _losses(rows: list[dict[str, Any]], key: str) -> list[str]:
    return [
        f"{r['split']} ({r['metric']} {_pct(r[key])} vs {_pct(r['peer'])})"
        for r in rows
        if r[key] <= r["peer"]
    ]


def comparison_lines(res: dict[str, Any]) -> list[str]:
    rows = peer_comparison(res)
    if not rows:
        return []
    lines = [
        "",
        "## Against the peer, every split",
        "",
        "The peer measured here on the same rows, in the metric each table above leads with (for SAF, QWK of "
        "the three labels). A tie counts as not beating the peer. Rendered from `evals/external_results.json`: "
        "`python benchmarks/external.py --render-only --out evals/external_results.json --markdown "
        "evals/RESULTS.md` rewrites this part from it without rerunning anything.",
        "",
        "| split | metric | peer | grader | grader+fit | grader+fit - peer |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        diff = r["fit"] - r["peer"]
        mark = f"**{diff:+.3f} (loses)**" if diff <= 0 else f"{diff:+.3f}"
        lines.append(
            f"| {r['split']} | {r['metric']} | {_pct(r['peer'])} | {_pct(r['grader'])} | {_pct(r['fit'])} "
            f"| {mark} |"
        )
    n = len(rows)
    fit_lost, grader_lost = _losses(rows, "fit"), _losses(rows, "grader")
    lines += [
        "",
        f"grader+fit beats the peer on {n - len(fit_lost)} of {n} splits"
        + (f"; it loses on {', '.join(fit_lost)}." if fit_lost else "."),
        f"The grader alone (score and fitted cut-offs) beats it on {n - len(grader_lost)} of {n}"
        + (f"; it loses on {', '.join(grader_lost)}." if grader_lost else "."),
    ]
    return lines


def render_markdown(res: dict[str, Any]) -> str:
    meta = res.get("_meta", {})
    sample = meta.get("train_sample")
    lines = [
        EXTERNAL_HEADING,
        "",
        f"Run {meta.get('date', '?')}, grader "
        + ", ".join(
            sorted(
                {
                    f"`{v.get('grader_name', meta.get('grader', '?'))}`"
                    for k, v in res.items()
                    if k != "_meta" and isinstance(v, dict)
                }
            )
        )
        + " (default thresholds, no golden calibration; the learned grader grades these questions, which have "
        "neither labeled answers nor misconceptions, with its embedding grader), "
        "all-MiniLM-L6-v2 on CPU.",
        "Reproduce everything with `make bench-external`; one dataset with the command under its table. "
        "Numbers land in `evals/external_results.json`.",
        "",
        "Protocol: every threshold, cut-off and regression is fit on the dataset's **train** split only"
        + (f" (a random {sample}-row sample of it, seed 0, to save CPU)" if sample else "")
        + "; test splits are only scored. Mohler has no split: 5-fold cross-validation grouped by question.",
        "",
        "- **peer**: cosine of all-MiniLM-L6-v2 embeddings, whole answer vs best reference answer, "
        "one threshold fit on train (measured here, same rows; the issue's given values beside it).",
        "- **grader**: tutor's EmbeddingGrader on an ad-hoc question whose key points are the "
        "reference answers (several references = phrasings of one key point; one reference = one key point "
        "per sentence); "
        "only the score cut-off is fit on train.",
        "- **grader+fit**: logistic regression (ridge regression for Mohler), its probability cut chosen "
        "by a 5-fold question-grouped cross-validation on train, over "
        f"{len(meta.get('features', FEATURES))} features (grader score, key-point coverage, max/mean/min "
        "cosine to reference sentences, peer cosine, lexical recall/precision, length, negation mismatch), "
        "fit on train. Disclosure: gradient-boosted trees were also tried as this model and dropped after "
        "their test scores had been seen (never better on test than the logistic regression), so the choice "
        "of model was made on test; from now on candidates are compared by the train cross-validation only.",
        "",
        "## SemEval-2013, 2-way (correct vs not), weighted F1",
        "",
        "| split | n | peer (issue) | peer (here) | grader | grader+fit | majority | published (supervised) "
        "|",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    lines += _semeval_rows(
        res,
        lambda d, split, r: (
            f"| {d} {split} | {r['n']} | {_pct(PEER_GIVEN.get((d, split)))} "
            f"| {_pct(r['peer_2way']['w_f1'])} "
            f"| {_pct(r['grader_2way']['w_f1'])} | **{_pct(r['lr_2way']['w_f1'])}** "
            f"| {_pct(r['majority_2way']['w_f1'])} | {PUBLISHED.get((d, split), '')} |"
        ),
    )
    lines += ["", *(reproduce(res, d) + "  " for d in ("scientsbank", "beetle") if d in res)]
    lines += [
        "",
        "Accuracy / macro-F1 for the same runs, and the grader's own verdict (`correct` vs not, no fitting):",
        "",
        "| split | peer acc / m-F1 | grader acc / m-F1 | grader+fit acc / m-F1 | grader uncalibrated W-F1 |",
        "|---|---|---|---|---:|",
    ]
    lines += _semeval_rows(
        res,
        lambda d, split, r: (
            f"| {d} {split} | {_pct(r['peer_2way']['acc'])} / {_pct(r['peer_2way']['m_f1'])} "
            f"| {_pct(r['grader_2way']['acc'])} / {_pct(r['grader_2way']['m_f1'])} "
            f"| {_pct(r['lr_2way']['acc'])} / {_pct(r['lr_2way']['m_f1'])} "
            f"| {_pct(r['grader_2way_uncalibrated']['w_f1'])} |"
        ),
    )
    lines += [
        "",
        "## SemEval-2013, 3-way (correct / contradictory / incorrect)",
        "",
        "| split | n | grader+fit acc / m-F1 / w-F1 | majority acc / m-F1 / w-F1 |",
        "|---|---:|---|---|",
    ]
    lines += _semeval_rows(
        res,
        lambda d, split, r: (
            f"| {d} {split} | {r['n']} "
            f"| {_pct(r['lr_3way']['acc'])} / {_pct(r['lr_3way']['m_f1'])} / {_pct(r['lr_3way']['w_f1'])} "
            f"| {_pct(r['majority_3way']['acc'])} / {_pct(r['majority_3way']['m_f1'])} "
            f"/ {_pct(r['majority_3way']['w_f1'])} |"
        ),
    )
    m = res.get("mohler")
    if m:
        lines += [
            "",
            f"## Mohler 2011 (n={m['n']}), Pearson r / RMSE against the 0-5 average grade",
            "",
            f"Protocol: {m['protocol']}. Predicting the mean: RMSE {_pct(m['mean_predictor_rmse'])}.",
            "",
            "| system | Pearson r | RMSE | Spearman |",
            "|---|---:|---:|---:|",
            f"| peer (issue) | {_pct(PEER_GIVEN[('mohler', 'cv5')])} | – | – |",
            f"| peer raw cosine | {_pct(m['peer_raw_cosine_pearson'])} | – | – |",
            f"| peer, linear map (CV) | {_pct(m['peer']['pearson'])} | {_pct(m['peer']['rmse'])} "
            f"| {_pct(m['peer']['spearman'])} |",
            f"| grader raw score | {_pct(m['grader_raw_score_pearson'])} | – | – |",
            f"| grader, linear map (CV) | {_pct(m['grader']['pearson'])} | {_pct(m['grader']['rmse'])} "
            f"| {_pct(m['grader']['spearman'])} |",
            f"| **grader+fit (CV)** | **{_pct(m['ridge']['pearson'])}** | **{_pct(m['ridge']['rmse'])}** "
            f"| {_pct(m['ridge']['spearman'])} |",
            f"| published | {PUBLISHED[('mohler', 'cv5')]} | | |",
            "",
            reproduce(res, "mohler"),
        ]
    s_ = res.get("saf")
    if s_:
        lines += [
            "",
            "## SAF v2 (communication networks), 3 labels Correct / Partially correct / Incorrect",
            "",
            "| split | n | peer (2 cuts) acc / m-F1 / QWK | grader (cuts) acc / m-F1 / QWK "
            "| grader+fit acc / m-F1 / QWK | majority acc / m-F1 |",
            "|---|---:|---|---|---|---|",
        ]
        for split in DATASETS["saf"][1]:
            r = s_.get(split)
            if not r:
                continue
            cells = [
                f"{_pct(r[k]['acc'])} / {_pct(r[k]['m_f1'])} / {_pct(r[k]['qwk'])}"
                for k in ("peer_3way", "grader_3way", "lr_3way")
            ]
            mj = r["majority_3way"]
            lines.append(
                f"| saf {split} | {r['n']} | "
                + " | ".join(cells)
                + f" | {_pct(mj['acc'])} / {_pct(mj['m_f1'])} |"
            )
        lines += ["", f"Published: {PUBLISHED[('saf', 'test_ua')]}.", "", reproduce(res, "saf")]
    lines += comparison_lines(res)
    lines += ["", "## Against the issue's targets", "", "| target | ours | met |", "|---|---:|---|"]
    for d, split, goal in (
        ("scientsbank", "test_uq", 0.75),
        ("scientsbank", "test_ud", 0.75),
        ("beetle", "test_uq", 0.78),
    ):
        r = res.get(d, {}).get(split)
        if r:
            v = r["lr_2way"]["w_f1"]
            lines.append(f"| {d} {split} 2-way W-F1 >= {goal} | {_pct(v)} | {'yes' if v >= goal else 'no'} |")
    if m:
        v = m["ridge"]["pearson"]
        lines.append(f"| Mohler Pearson r >= 0.62 | {_pct(v)} | {'yes' if v >= 0.62 else 'no'} |")
    compared = peer_comparison(res)
    if compared:
        lost = [r["split"] for r in compared if r["fit"] <= r["peer"]]
        lines.append(
            f"| beat the peer on every split (grader+fit vs the peer measured on the same rows, all "
            f"{len(compared)} splits above) | {len(compared) - len(lost)}/{len(compared)} "
            f"| {'yes' if not lost else 'no: loses on ' + ', '.join(lost)} |"
        )
        given = [r for r in compared if r["peer_given"] is not None]
        if given:
            lost_given = [r["split"] for r in given if r["fit"] <= r["peer_given"]]
            lines.append(
                f"| the same against the issue's given peer values ({len(given)} splits; none given for SAF) "
                f"| {len(given) - len(lost_given)}/{len(given)} "
                f"| {'yes' if not lost_given else 'no: loses on ' + ', '.join(lost_given)} |"
            )
    lines += [
        "",
        "## Licences",
        "SemEval-2013 (CC BY-SA 3.0, Dzikovska et al. 2013), Mohler et al. 2011 (no licence stated; cite "
        "P11-1076), SAF (MIT / CC BY 4.0, Filighera et al. 2022). The data stays in `../shared/benchmarks`; "
        "this repository holds only aggregate numbers.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default=",".join(DATASETS), help="comma list of " + ", ".join(DATASETS))
    ap.add_argument("--out", type=Path, default=REPO / "evals" / "external_results.json")
    ap.add_argument(
        "--markdown", type=Path, default=None, help="also write the results table (evals/RESULTS.md)"
    )
    ap.add_argument("--render-only", action="store_true", help="only rewrite --markdown from the --out JSON")
    ap.add_argument("--limit", type=int, default=None, help="first N rows per file (smoke test only)")
    ap.add_argument(
        "--train-sample", type=int, default=None, help="fit on N random train rows (seed 0) instead of all"
    )
    ap.add_argument(
        "--grader",
        choices=("learned", "embedding"),
        default=os.environ.get("TUTOR_GRADER") or "learned",
        help="the grader measured (default: TUTOR_GRADER, else learned, as `tutor grade` does)",
    )
    args = ap.parse_args(argv)
    results: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {}
    if args.render_only:
        if args.markdown is None or not results:
            ap.error("--render-only needs an existing --out JSON and --markdown PATH")
        write_markdown(args.markdown, render_markdown(results))
        return 0
    if not SHARED.is_dir():
        print(f"benchmarks not found at {SHARED}; nothing to do", file=sys.stderr)
        return 0
    wanted = [d.strip() for d in args.datasets.split(",") if d.strip()]
    for d in wanted:
        if d not in DATASETS:
            ap.error(f"unknown dataset {d!r}")
    bench = Bench(args.grader)
    results["_meta"] = {
        "date": dt.date.today().isoformat(),
        "grader": bench.grader.name,
        "thresholds": Thresholds().version,
        "features": FEATURES,
        "train_sample": args.train_sample,
        "command": " ".join(
            ["python", "benchmarks/external.py", *(argv if argv is not None else sys.argv[1:])]
        ),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for d in wanted:
        folder, tests = DATASETS[d]
        t0 = time.perf_counter()
        if d == "mohler":
            results[d] = run_mohler(bench.features(load(folder, "all", d, args.limit), d))
        else:
            train = bench.features(load(folder, "train", d, args.limit, args.train_sample), f"{d} train")
            graded = {s: bench.features(load(folder, s, d, args.limit), f"{d} {s}") for s in tests}
            results[d] = run_classification(d, train, graded, "semeval" if d != "saf" else "verdict")
        results[d]["seconds"] = round(time.perf_counter() - t0, 1)
        results[d]["train_sample"] = args.train_sample if d != "mohler" else None
        results[d]["date"] = dt.date.today().isoformat()
        results[d]["grader_name"] = bench.grader.name
        print(f"{d}: done in {results[d]['seconds']} s", file=sys.stderr)
        # Written after every dataset: a long run that dies later keeps what it measured.
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        if args.markdown:
            write_markdown(args.markdown, render_markdown(results))
    print(json.dumps({k: v for k, v in results.items() if k != "_meta"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
