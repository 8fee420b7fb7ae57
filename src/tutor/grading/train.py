"""Train the learned grader from the labeled answers in the repository (`make train`, `tutor train`).

Data (all in the repository, written for this project, see evals/writers/README.md):
- the golden set's train split (evals/golden.jsonl), and
- the writer batches in evals/writers/<writer>/, except the test writers named in evals/writers/split.json.
Test data (the golden test split, the test writers' batches) is read only after the model is chosen, to
report on; nothing is fitted or selected on it.

Steps: grade every answer with the embedding grader (its measurements are features), embed each whole
answer, compute each row's exemplar features from the other writers' answers to the same question, choose
the tree settings and verdict cut-offs by writer-grouped cross-validation, fit on everything, export ONNX.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from tutor.embed import CachedEmbedder, Embedder, default_embedder
from tutor.grading.claims import CLASSES, DENY_REPORT, PAIR_FEATURES, ClaimModel, pair_labels
from tutor.grading.embedding import EmbeddingGrader, Thresholds, load_thresholds
from tutor.grading.features import FEATURES, Exemplars, feature_row, merge, rubric_exemplars
from tutor.models import VERDICTS, Question
from tutor.rubric import QuestionBank, default_bank

SEED = 20261130
LABEL: dict[str, int] = {v: i for i, v in enumerate(VERDICTS)}
# Small on purpose: a few thousand rows, 2 CPU cores, and every point is scored by cross-validation.
GRID: list[dict[str, Any]] = [
    {
        "max_iter": it,
        "learning_rate": lr,
        "max_leaf_nodes": leaves,
        "l2_regularization": 1.0,
        "min_samples_leaf": 20,
    }
    for it in (150, 300)
    for lr in (0.03, 0.06)
    for leaves in (7, 15)
]


@dataclass
class LabeledRow:
    id: str
    question_id: str
    answer: str
    label: str
    group: str  # the writer: rows of one group are never each other's exemplars
    source: str  # golden | writers
    # The writer's sentence annotations (which quoted span states, contradicts or holds which rubric item);
    # None where the set has none (the golden set). The pair model (tutor.grading.claims) learns from them.
    annotations: list[dict[str, Any]] | None = None


@dataclass
class Dataset:
    train: list[LabeledRow]
    tests: dict[str, list[LabeledRow]] = field(default_factory=dict)


def repo_root() -> Path:
    return Path(__file__).resolve().parents[3]


def _jsonl(path: Path) -> Iterable[dict[str, Any]]:
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                yield json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not valid JSON ({e})") from e


def golden_group(row_id: str) -> str:
    # Part c (ids ending -c1..-c4) was written later, by another writer than parts a and b.
    return "golden-c" if re.search(r"-c\d+$", row_id) else "golden-v1"


def load_dataset(root: Path | None = None) -> Dataset:
    root = root or repo_root()
    evals = root / "evals"
    split = json.loads((evals / "writers" / "split.json").read_text())
    test_writers = set(split["test_writers"])
    ds = Dataset(train=[], tests={"golden-test": [], "writers-test": []})
    for r in _jsonl(evals / "golden.jsonl"):
        row = LabeledRow(r["id"], r["question_id"], r["answer"], r["label"], golden_group(r["id"]), "golden")
        (ds.train if r["split"] == "train" else ds.tests["golden-test"]).append(row)
    # Disagreements between a writer and the blind second rater, resolved (evals/writers/second_rater/).
    adjudicated = evals / "writers" / "second_rater" / "adjudicated.jsonl"
    final = {r["id"]: r["final_label"] for r in _jsonl(adjudicated)} if adjudicated.is_file() else {}
    for f in sorted((evals / "writers").glob("*/ch*.jsonl")):
        for r in _jsonl(f):
            label = final.get(r["id"], r["label"])
            row = LabeledRow(
                r["id"], r["question_id"], r["answer"], label, r["writer"], "writers", r.get("annotations")
            )
            (ds.tests["writers-test"] if r["writer"] in test_writers else ds.train).append(row)
    return ds


@dataclass
class Featurized:
    x: np.ndarray  # (n, features), exemplar features from other groups' training rows and the rubric
    x_alone: (
        np.ndarray
    )  # the same rows as a question with no labeled answers sees them: rubric exemplars only
    y: np.ndarray
    groups: np.ndarray
    qids: np.ndarray
    emb_verdict: np.ndarray  # the embedding grader's own verdict, the baseline
    guarded: np.ndarray  # rows the guards grade on their own (empty, off-topic...): the model never sees them


def answer_vectors(rows: Sequence[LabeledRow], embedder: Embedder) -> np.ndarray:
    from tutor import text as T

    return embedder.encode([T.normalise_answer(r.answer)[0] for r in rows])


def featurize(
    rows: Sequence[LabeledRow],
    bank: QuestionBank,
    grader: EmbeddingGrader,
    vecs: np.ndarray,
    pool: Exemplars,
    tick: Callable[[], None] = lambda: None,
    exclude_own_group: bool = True,
    claims: Callable[[LabeledRow], ClaimModel | None] = lambda r: None,
) -> Featurized:
    """Features of labeled rows. Training rows never see exemplars by their own writer; test rows see the
    whole pool, exactly as the shipped grader does. `claims` gives the pair model each row is graded with
    (in training, one that never saw the row's writer); the grader's own is back in place afterwards."""
    xs, alone, verdicts, guarded = [], [], [], []
    own_claims = grader.claims
    for r, v in zip(rows, vecs, strict=True):
        q = bank.get(r.question_id)
        grader.claims = claims(r)
        try:
            g = grader.grade(q, r.answer)
        finally:
            grader.claims = own_claims
        tg = grader.targets(q)
        own = rubric_exemplars(tg.reference, tg.misconception_vecs)
        labeled = pool.select(q.id, exclude_group=r.group if exclude_own_group else None)
        numeric = q.numeric is not None
        xs.append(feature_row(g, v, tg.reference, tg.question, numeric, merge(labeled, own)))
        alone.append(feature_row(g, v, tg.reference, tg.question, numeric, own))
        verdicts.append(LABEL[g.verdict])
        guarded.append(not g.signals)
        tick()
    empty = np.zeros((0, len(FEATURES)), np.float32)
    return Featurized(
        x=np.stack(xs) if xs else empty,
        x_alone=np.stack(alone) if alone else empty,
        y=np.array([LABEL[r.label] for r in rows], dtype=np.int64),
        groups=np.array([r.group for r in rows]),
        qids=np.array([r.question_id for r in rows]),
        emb_verdict=np.array(verdicts, dtype=np.int64),
        guarded=np.array(guarded, dtype=bool),
    )


def make_pool(rows: Sequence[LabeledRow], vecs: np.ndarray) -> Exemplars:
    return Exemplars(
        vecs=np.asarray(vecs, dtype=np.float32),
        labels=np.array([LABEL[r.label] for r in rows], dtype=np.int64),
        qids=np.array([r.question_id for r in rows]),
        groups=np.array([r.group for r in rows]),
    )


# ------------------------------------------------------------------------------------------ fitting


def fit(x: np.ndarray, x_alone: np.ndarray, y: np.ndarray, params: dict[str, Any], seed: int = SEED) -> Any:
    """Trees on every row twice: with its labeled exemplars, and with the rubric's alone (the case of a
    question that has no labeled answers)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    xa = np.vstack([x, x_alone])
    ya = np.concatenate([y, y])
    model = HistGradientBoostingClassifier(random_state=seed, early_stopping=False, **params)
    return model.fit(xa, ya)


def expected_score(p: np.ndarray) -> np.ndarray:
    return p[:, 1] * 0.5 + p[:, 2]


def verdicts_from(score: np.ndarray, cut_partial: float, cut_correct: float) -> np.ndarray:
    return np.where(score >= cut_correct, 2, np.where(score >= cut_partial, 1, 0))


def qwk(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import cohen_kappa_score

    return float(cohen_kappa_score(y, p, weights="quadratic", labels=[0, 1, 2]))


def fit_cuts(y: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    """Cut-offs on the expected score that maximise QWK on out-of-fold predictions."""
    best = (-2.0, 1 / 3, 2 / 3)
    grid = np.round(np.arange(0.15, 0.90, 0.025), 3)
    for lo in grid:
        for hi in grid[grid > lo + 0.05]:
            k = qwk(y, verdicts_from(score, lo, hi))
            if k > best[0] + 1e-9:
                best = (k, float(lo), float(hi))
    return best[1], best[2]


def grouped_oof(
    f: Featurized, params: dict[str, Any], folds: list[np.ndarray], rubric_only_test: bool = False
) -> np.ndarray:
    """Out-of-fold probabilities: each fold's rows predicted by a model fitted on the other folds."""
    oof = np.zeros((len(f.y), len(VERDICTS)))
    for test_idx in folds:
        train_mask = np.ones(len(f.y), dtype=bool)
        train_mask[test_idx] = False
        if not len(test_idx) or not train_mask.any():  # a fold with nothing to predict or learn from
            continue
        m = fit(f.x[train_mask], f.x_alone[train_mask], f.y[train_mask], params)
        xt = f.x_alone[test_idx] if rubric_only_test else f.x[test_idx]
        oof[test_idx] = m.predict_proba(xt)
    return oof


def question_held_out(
    f: Featurized,
    folds: list[np.ndarray],
    rows: Sequence[LabeledRow],
    bank: QuestionBank,
    grader: EmbeddingGrader,
    vecs: np.ndarray,
    pool: Exemplars,
    pairs: PairData,
) -> Featurized:
    """`f`, with each question fold's rubric-only rows recomputed by a pair model that never saw those
    questions, as a newly added question is graded. (The rows the verdict model trains on keep their
    writer-held-out claim features, from pair models that saw every question: a small optimism left.)"""
    x_alone = f.x_alone.copy()
    for idx in folds:
        held = set(f.qids[idx].tolist())
        keep = ~np.isin(pairs.qids, list(held))
        if len(set(pairs.y[keep].tolist())) < len(CLASSES):
            continue  # too few annotated questions to hold any out (a tiny training set)
        claims = as_claim_model(fit_claims(pairs, keep))
        sub = [rows[i] for i in idx]
        x_alone[idx] = featurize(sub, bank, grader, vecs[idx], pool, claims=_always(claims)).x_alone
    return Featurized(f.x, x_alone, f.y, f.groups, f.qids, f.emb_verdict, f.guarded)


def _always(claims: ClaimModel) -> Callable[[LabeledRow], ClaimModel]:
    return lambda r: claims


def writer_folds(f: Featurized) -> list[np.ndarray]:
    return [np.where(f.groups == g)[0] for g in sorted(set(f.groups.tolist()))]


def question_folds(f: Featurized, k: int = 5, seed: int = SEED) -> list[np.ndarray]:
    qs = sorted(set(f.qids.tolist()))
    random.Random(seed).shuffle(qs)
    return [np.where(np.isin(f.qids, qs[i::k]))[0] for i in range(k)]


# ------------------------------------------------------------------------------------------ pair model

# Fixed, not searched: the pair model is scored on its own by writer-grouped CV (card.json, `claims`).
CLAIM_PARAMS: dict[str, Any] = {
    "max_iter": 200,
    "learning_rate": 0.1,
    "max_leaf_nodes": 15,
    "min_samples_leaf": 40,
    "l2_regularization": 1.0,
}


@dataclass
class PairData:
    """Every annotated training answer's (unit, item) pair features and labels, flattened."""

    x: np.ndarray
    y: np.ndarray
    groups: np.ndarray  # the answer's writer, per pair
    qids: np.ndarray
    kinds: np.ndarray  # item kind per pair (0 required, 1 supporting key point, 2 misconception)
    answers: np.ndarray  # the answer's id, per pair
    verdicts: np.ndarray  # the answer's label, per pair


def pair_data(rows: Sequence[LabeledRow], bank: QuestionBank, grader: EmbeddingGrader) -> PairData:
    xs, ys, gs, qs, ids, labels = [], [], [], [], [], []
    for r in rows:
        if r.annotations is None:
            continue
        q = bank.get(r.question_id)
        got = grader.pair_inputs(q, r.answer)
        if got is None:
            continue
        units, feats = got
        try:
            y = pair_labels(q, units, r.annotations)
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(
                f"{r.id}: an annotation is malformed ({type(e).__name__}: {e}); each needs a 'quote' string and "
                "lists 'states', 'contradicts', 'holds' (evals/writers/README.md). Check the batch with "
                "`python3 evals/writers/check_batch.py FILE`"
            ) from e
        xs.append(feats.reshape(-1, feats.shape[-1]))
        ys.append(y.reshape(-1))
        gs += [r.group] * y.size
        qs += [r.question_id] * y.size
        ids += [r.id] * y.size
        labels += [r.label] * y.size
    if not xs or len(set(np.concatenate(ys).tolist())) < len(CLASSES):
        raise ValueError(
            "the writer batches' annotations must contain each of: a span that states or holds a rubric item, "
            "one that contradicts a key point, and text that does neither (evals/writers/README.md)"
        )
    x = np.vstack(xs)
    return PairData(
        x,
        np.concatenate(ys),
        np.array(gs),
        np.array(qs),
        x[:, 0].astype(np.int64),
        np.array(ids),
        np.array(labels),
    )


def fit_claims(d: PairData, mask: np.ndarray | None = None, seed: int = SEED) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    m = np.ones(len(d.y), bool) if mask is None else mask
    return HistGradientBoostingClassifier(random_state=seed, early_stopping=False, **CLAIM_PARAMS).fit(
        d.x[m], d.y[m]
    )


def claims_cv(d: PairData) -> dict[str, Any]:
    """The pair model on its own, writer-grouped: average precision and P/R/F1 at 0.5 per class."""
    from sklearn.metrics import average_precision_score, precision_recall_fscore_support

    oof = np.zeros((len(d.y), len(CLASSES)))
    for g in sorted(set(d.groups.tolist())):
        te = d.groups == g
        if (~te).any():
            oof[te] = fit_claims(d, ~te).predict_proba(d.x[te])
    out: dict[str, Any] = {}
    for name, c, kinds in (("states", 1, (0, 1)), ("holds", 1, (2,)), ("contradicts", 2, (0, 1))):
        k = np.isin(d.kinds, kinds)
        yy, pp = d.y[k] == c, oof[k, c]
        if not yy.any():
            continue
        pr, rc, f1, _ = precision_recall_fscore_support(yy, pp >= 0.5, average="binary", zero_division=0)
        out[name] = {
            "positives": int(yy.sum()),
            "average_precision": round(float(average_precision_score(yy, pp)), 3),
            "precision": round(float(pr), 3),
            "recall": round(float(rc), 3),
            "f1": round(float(f1), 3),
        }
    # What a learner would read: the answers in which a contradiction gets named, by their label.
    named = (d.kinds < 2) & (oof[:, 2] >= DENY_REPORT)
    first = np.unique(d.answers, return_index=True)[1]
    out["contradiction_named"] = {
        "threshold": DENY_REPORT,
        "answers": {v: len(set(d.answers[named & (d.verdicts == v)].tolist())) for v in VERDICTS},
        "of": {v: int((d.verdicts[first] == v).sum()) for v in VERDICTS},
    }
    return out


def as_claim_model(trees: Any) -> ClaimModel:
    return ClaimModel(trees.predict_proba)


# ------------------------------------------------------------------------------------------ export


def tree_onnx(model: Any, n_features: int) -> bytes:
    """HistGradientBoostingClassifier -> ONNX TreeEnsembleClassifier (ai.onnx.ml), probabilities output.

    Written here because skl2onnx (1.20) fails on this scikit-learn; the test suite checks that onnxruntime
    reproduces predict_proba on the training rows.
    """
    from onnx import TensorProto
    from onnx import helper as H

    a: dict[str, list[Any]] = {
        k: [] for k in ("tree", "node", "feat", "val", "mode", "true", "false", "miss")
    }
    c: dict[str, list[Any]] = {k: [] for k in ("tree", "node", "cls", "w")}
    tree = 0
    for iteration in model._predictors:
        for k, predictor in enumerate(iteration):
            for n, nd in enumerate(predictor.nodes):
                leaf = bool(nd["is_leaf"])
                a["tree"].append(tree)
                a["node"].append(n)
                a["feat"].append(0 if leaf else int(nd["feature_idx"]))
                a["val"].append(0.0 if leaf else float(nd["num_threshold"]))
                a["mode"].append("LEAF" if leaf else "BRANCH_LEQ")
                a["true"].append(0 if leaf else int(nd["left"]))
                a["false"].append(0 if leaf else int(nd["right"]))
                a["miss"].append(0 if leaf else int(nd["missing_go_to_left"]))
                if leaf:
                    c["tree"].append(tree)
                    c["node"].append(n)
                    c["cls"].append(k)
                    c["w"].append(float(nd["value"]))
            tree += 1
    node = H.make_node(
        "TreeEnsembleClassifier",
        ["X"],
        ["label", "probabilities"],
        domain="ai.onnx.ml",
        nodes_treeids=a["tree"],
        nodes_nodeids=a["node"],
        nodes_featureids=a["feat"],
        nodes_values=a["val"],
        nodes_modes=a["mode"],
        nodes_truenodeids=a["true"],
        nodes_falsenodeids=a["false"],
        nodes_missing_value_tracks_true=a["miss"],
        class_treeids=c["tree"],
        class_nodeids=c["node"],
        class_ids=c["cls"],
        class_weights=c["w"],
        classlabels_int64s=list(range(len(model.classes_))),
        base_values=[float(v) for v in np.ravel(model._baseline_prediction)],
        post_transform="SOFTMAX",
    )
    graph = H.make_graph(
        [node],
        "tutor_verdict",
        [H.make_tensor_value_info("X", TensorProto.FLOAT, [None, n_features])],
        [
            H.make_tensor_value_info("label", TensorProto.INT64, [None]),
            H.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, len(model.classes_)]),
        ],
    )
    onx = H.make_model(graph, opset_imports=[H.make_opsetid("", 17), H.make_opsetid("ai.onnx.ml", 3)])
    onx.producer_name = "tutor.grading.train"
    return onx.SerializeToString()


def _sha256_bytes(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def write_model(
    out: Path,
    model: Any,
    claims: Any,
    pool: Exemplars,
    row_ids: Sequence[str],
    cuts: tuple[float, float],
    thresholds: Thresholds,
    embedder_name: str,
    training: dict[str, Any],
) -> Path:
    """Write verdict.onnx, exemplars.npz and card.json (with each file's sha256) into `out`, atomically
    enough: the card is written last, so a half-written directory never passes the load check."""
    import io

    from tutor.grading.learned import ModelCard

    out.mkdir(parents=True, exist_ok=True)
    onnx_bytes = tree_onnx(model, len(FEATURES))
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        vecs=pool.vecs.astype(np.float16),
        labels=pool.labels.astype(np.int8),
        qids=pool.qids.astype("U16"),
        groups=pool.groups.astype("U16"),
        ids=np.array(list(row_ids), dtype="U40"),
    )
    files = {
        "verdict.onnx": onnx_bytes,
        "claims.onnx": tree_onnx(claims, len(PAIR_FEATURES)),
        "exemplars.npz": buf.getvalue(),
    }
    card_path = out / "card.json"
    card_path.unlink(missing_ok=True)
    for name, data in files.items():
        (out / name).write_bytes(data)
    digest = hashlib.sha256(b"".join(files.values())).hexdigest()[:8]
    card = ModelCard(
        version=f"verdict-{datetime.now(UTC):%Y%m%d}-{digest}",
        features=list(FEATURES),
        cut_partial=cuts[0],
        cut_correct=cuts[1],
        thresholds=thresholds,
        embedder=embedder_name,
        files={name: _sha256_bytes(data) for name, data in files.items()},
        training=training,
    )
    card_path.write_text(card.model_dump_json(indent=2) + "\n")
    return card_path


def bootstrap_ci(y: np.ndarray, p: np.ndarray, n: int = 1000, seed: int = SEED) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n):
        i = rng.integers(0, len(y), len(y))
        vals.append(qwk(y[i], p[i]))
    lo, hi = np.percentile(vals, [2.5, 97.5])
    return round(float(lo), 3), round(float(hi), 3)


def question_for(bank: QuestionBank, qid: str) -> Question:
    return bank.get(qid)


def default_training_embedder() -> Embedder:
    inner = default_embedder()
    return inner if isinstance(inner, CachedEmbedder) else CachedEmbedder(inner)


def thresholds_for_training() -> Thresholds:
    return load_thresholds()


# ------------------------------------------------------------------------------------------ the whole run


def _progress() -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )


def run_training(
    out: Path,
    root: Path | None = None,
    grid: Sequence[dict[str, Any]] = GRID,
    embedder: Embedder | None = None,
    evaluate_tests: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Everything `make train` does. Returns the training record written into card.json."""
    import time

    t0 = time.perf_counter()
    root = root or repo_root()
    ds = load_dataset(root)
    bank = default_bank()
    emb = embedder or default_training_embedder()
    th = thresholds_for_training()
    grader = EmbeddingGrader(embedder=emb, thresholds=th)
    log(
        f"data: {len(ds.train)} training answers; test sets {', '.join(f'{k} {len(v)}' for k, v in ds.tests.items())}"
    )
    with _progress() as bar:
        vecs = answer_vectors(ds.train, emb)
        pool = make_pool(ds.train, vecs)
        # The pair model first: each training row's claim features come from a model that never saw its
        # writer's annotations (rows without annotations, the golden set's, from the model of all writers).
        task = bar.add_task("pair model", total=1)
        pairs = pair_data(ds.train, bank, grader)
        claims_trees = fit_claims(pairs)
        claims_full = as_claim_model(claims_trees)
        by_writer = {
            g: as_claim_model(fit_claims(pairs, pairs.groups != g))
            for g in sorted(set(pairs.groups.tolist()))
        }
        bar.advance(task)
        task = bar.add_task("features (train)", total=len(ds.train))
        f = featurize(
            ds.train,
            bank,
            grader,
            vecs,
            pool,
            tick=lambda: bar.advance(task),
            claims=lambda r: by_writer.get(r.group, claims_full),
        )
        folds = writer_folds(f)
        task = bar.add_task("writer-grouped CV", total=len(grid) * len(folds))
        scored = []
        for params in grid:
            oof = np.zeros((len(f.y), len(VERDICTS)))
            for test_idx in folds:
                oof[test_idx] = grouped_oof(f, params, [test_idx])[test_idx]
                bar.advance(task)
            s = expected_score(oof)
            cuts = fit_cuts(f.y, s)
            scored.append((qwk(f.y, verdicts_from(s, *cuts)), params, cuts, oof))
    best_cv, params, cuts, oof = max(scored, key=lambda r: r[0])
    log(f"chosen by writer-grouped CV: {params}, cut-offs {cuts}, CV QWK {best_cv:.3f}")
    per_writer = {
        str(g): round(qwk(f.y[f.groups == g], verdicts_from(expected_score(oof[f.groups == g]), *cuts)), 3)
        for g in sorted(set(f.groups.tolist()))
    }
    qfolds = question_folds(f)
    q_oof = grouped_oof(
        question_held_out(f, qfolds, ds.train, bank, grader, vecs, pool, pairs), params, qfolds, True
    )
    q_cv = qwk(f.y, verdicts_from(expected_score(q_oof), *cuts))
    model = fit(f.x, f.x_alone, f.y, params)
    training: dict[str, Any] = {
        "data": {
            "train_rows": len(ds.train),
            "train_groups": {str(g): int((f.groups == g).sum()) for g in sorted(set(f.groups.tolist()))},
            "labels": {v: int((f.y == i).sum()) for i, v in enumerate(VERDICTS)},
            "test_writers": json.loads((root / "evals" / "writers" / "split.json").read_text())[
                "test_writers"
            ],
        },
        "seed": SEED,
        "hyperparameters": params,
        "claims": {
            "hyperparameters": CLAIM_PARAMS,
            "pairs": len(pairs.y),
            "labels": {c: int((pairs.y == i).sum()) for i, c in enumerate(CLASSES)},
            "writer_grouped_cv": claims_cv(pairs),
        },
        "grid": list(grid),
        "cv": {
            "writer_grouped_qwk": round(best_cv, 3),
            "writer_grouped_qwk_note": "the best of the grid by this same CV, with cut-offs fitted on the same "
            "out-of-fold scores: optimistic; the test sets below are the unbiased figures",
            "writer_grouped_per_writer": per_writer,
            "embedding_grader_qwk_same_rows": round(qwk(f.y, f.emb_verdict), 3),
            "question_grouped_qwk": round(q_cv, 3),
            "question_grouped_note": "5 folds of whole questions, with only the rubric's own exemplars: how "
            "a question with no labeled answers is graded",
        },
        "train_seconds": None,
    }
    if evaluate_tests:
        training["test"] = evaluate(model.predict_proba, cuts, ds, bank, grader, emb, pool, claims_full)
        for name, m in training["test"].items():
            log(
                f"test {name}: QWK {m['qwk']} (95% CI {m['qwk_ci'][0]}-{m['qwk_ci'][1]}), accuracy {m['accuracy']}, embedding grader {m['embedding_qwk']}"
            )
    training["train_seconds"] = round(time.perf_counter() - t0, 1)
    write_model(out, model, claims_trees, pool, [r.id for r in ds.train], cuts, th, emb.name, training)
    return training


def evaluate(
    predict: Callable[[np.ndarray], np.ndarray],
    cuts: tuple[float, float],
    ds: Dataset,
    bank: QuestionBank,
    grader: EmbeddingGrader,
    emb: Embedder,
    pool: Exemplars,
    claims: ClaimModel,
) -> dict[str, Any]:
    """Metrics on each test set, computed after the model is fixed (report only), with the same decision
    rules as grading (LearnedModel.decide)."""
    from sklearn.metrics import accuracy_score

    from tutor.grading.learned import decide

    wrong, mis = FEATURES.index("numeric_wrong"), FEATURES.index("mis_number")
    out = {}
    for name, rows in ds.tests.items():
        if not rows:
            continue
        f = featurize(
            rows,
            bank,
            grader,
            answer_vectors(rows, emb),
            pool,
            exclude_own_group=False,
            claims=lambda r: claims,
        )
        probs = predict(f.x)
        probs[f.guarded] = [1.0, 0.0, 0.0]  # as in grading: the guard's incorrect stands
        pred = np.array(
            [
                LABEL[decide(p, *cuts, bool(x[wrong]), bool(x[mis]))[1]]
                for p, x in zip(probs, f.x, strict=True)
            ]
        )
        out[name] = {
            "n": len(rows),
            "qwk": round(qwk(f.y, pred), 3),
            "qwk_ci": bootstrap_ci(f.y, pred),
            "accuracy": round(float(accuracy_score(f.y, pred)), 3),
            "embedding_qwk": round(qwk(f.y, f.emb_verdict), 3),
        }
    return out


def write_model_card_md(directory: Path) -> Path:
    """MODEL_CARD.md, written from card.json so that every figure in it comes from the training run."""
    from tutor.grading.learned import ModelCard

    card = ModelCard.model_validate_json((directory / "card.json").read_text())
    t = card.training
    cv = t.get("cv", {})
    data = t.get("data", {})
    lines = [
        f"# Model card: tutor verdict model `{card.version}`",
        "",
        "Written by `make train` (`tutor train`) from `card.json`; do not edit by hand.",
        "",
        "## What it is",
        "Gradient-boosted trees (scikit-learn HistGradientBoostingClassifier, exported to ONNX and run by",
        "onnxruntime) that read the embedding grader's measurements of an answer (key-point coverage,",
        "similarities, misconceptions, the numeric check, flags) and its similarity to labeled answers to",
        "the same question by other writers, and give P(incorrect), P(partial), P(correct). The grade's",
        "score is the expected grade (partial = 0.5); the verdict comes from two cut-offs on it",
        f"(partial >= {card.cut_partial}, correct >= {card.cut_correct}). Feedback (covered, missed points,",
        "misconceptions) still comes from the embedding grader. Files: `verdict.onnx` (the trees),",
        "`claims.onnx` (the pair model below), `exemplars.npz` (float16 whole-answer embeddings of the training answers, labels, question ids,",
        "writer groups, row ids), `card.json`; each file's sha256 is in card.json and checked at load.",
        "",
        "The pair model (`claims.onnx`, `tutor.grading.claims`): gradient-boosted trees over 21 measurements",
        "of each (answer unit, rubric item) pair, trained on the writers' sentence annotations to give",
        "P(neither / asserts / denies); its answer-level summary (`claim_*`) is among the verdict model's",
        "features, and a unit it is confident contradicts a key point is named in the feedback.",
        "",
        "## Data",
        f"- {data.get('train_rows')} labeled training answers to the 40 questions: the golden set's train split",
        "  and the writer batches in `evals/writers/` (each written and labeled by an independent writer from",
        "  the rubric and `evals/LABELING.md`). By group: "
        + ", ".join(f"{k} {v}" for k, v in data.get("train_groups", {}).items())
        + ".",
        f"- Labels: {', '.join(f'{k} {v}' for k, v in data.get('labels', {}).items())}.",
        f"- Test-only (never fitted or selected on): the golden test split and the batches of writer(s)"
        f" {', '.join(data.get('test_writers', []))}.",
        "- Licence: all answers were written for this project and are released with it (MIT). No external",
        "  dataset is used in training.",
        "",
        "## Training",
        f"- Seed {t.get('seed')}; hyperparameters {json.dumps(t.get('hyperparameters'))}, chosen from a grid of",
        f"  {len(t.get('grid', []))} by writer-grouped cross-validation (each writer's batch held out in turn).",
        "- Every row is also trained with only the rubric's own exemplars (the reference as a correct answer,",
        "  each misconception phrasing as an incorrect one), so a question with no labeled answers (a rubric a",
        "  user adds) is graded the way the model learned for that case.",
        f"- Training time: {t.get('train_seconds')} s on the machine that ran `make train`.",
        "",
        "## Metrics (quadratic weighted kappa against the writers' labels)",
        f"- Writer-grouped CV: {cv.get('writer_grouped_qwk')} ({cv.get('writer_grouped_qwk_note')});",
        f"  the embedding grader alone on the same rows: {cv.get('embedding_grader_qwk_same_rows')}.",
        f"  Per held-out writer: {', '.join(f'{k} {v}' for k, v in cv.get('writer_grouped_per_writer', {}).items())}.",
        f"- Question-grouped CV: {cv.get('question_grouped_qwk')} ({cv.get('question_grouped_note')}).",
    ]
    claims = t.get("claims", {})
    if claims:
        lines.append(
            f"- Pair model, writer-grouped CV over {claims.get('pairs')} (unit, item) pairs"
            f" ({', '.join(f'{k} {v}' for k, v in claims.get('labels', {}).items())}), hyperparameters"
            f" {json.dumps(claims.get('hyperparameters'))}:"
        )
        cv_claims = dict(claims.get("writer_grouped_cv", {}))
        named = cv_claims.pop("contradiction_named", None)
        for name, m in cv_claims.items():
            lines.append(
                f"  {name}: average precision {m['average_precision']}; at P >= 0.5 precision {m['precision']},"
                f" recall {m['recall']}, F1 {m['f1']} ({m['positives']} positive pairs)."
            )
        if named:
            lines.append(
                f"  Feedback names a contradiction (P(denies) >= {named['threshold']}) in "
                + ", ".join(f"{named['answers'][v]} of {named['of'][v]} {v}" for v in named["of"])
                + " training-batch answers (out of fold)."
            )
    for name, m in t.get("test", {}).items():
        lines.append(
            f"- Test, {name} ({m['n']} answers): QWK {m['qwk']} (95% bootstrap CI {m['qwk_ci'][0]}-{m['qwk_ci'][1]}),"
            f" accuracy {m['accuracy']}; the embedding grader alone: {m['embedding_qwk']}."
        )
    if t.get("note"):
        lines.append(f"- Note: {t['note']}")
    lines += [
        "",
        "## Known limits",
        "- The labels come from writers who knew the rubric; answers from real learners may differ in style.",
        "  A model that learned these writers' habits scores lower on answers written elsewhere.",
        "- English only. Without labeled answers to a question the model has only the rubric's exemplars",
        "  (see question-grouped CV).",
        "- It inherits the embedding grader's blind spots where no exemplar is close: negation and",
        "  misconceptions phrased unlike the rubric. The pair model sees negation only through word cues",
        "  (its contradiction recall is low, see its CV), not through meaning.",
        "- The features depend on the embedding grader's settings recorded in card.json (`thresholds`);",
        "  grading uses those, not the active calibration, so recalibrating does not silently shift the model.",
        "",
    ]
    path = directory / "MODEL_CARD.md"
    path.write_text("\n".join(lines))
    return path
