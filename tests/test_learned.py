"""The learned grader: training on a tiny set, the ONNX export, the shipped model's checks and behaviour."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tutor.grading import train as TR
from tutor.grading.embedding import EmbeddingGrader, Thresholds
from tutor.grading.features import FEATURES
from tutor.grading.learned import TRAINED_DIR, LearnedGrader, LearnedModel
from tutor.paths import ModelFileError

REPO = Path(__file__).resolve().parent.parent

ANSWERS = {
    "correct": [
        "bf16 keeps fp32's 8-bit exponent, so it covers the same range; fp16 has 5 exponent bits and small "
        "gradients underflow, which is why fp16 needs loss scaling and bf16 does not.",
        "Same exponent width as float32 in bf16 means the same dynamic range, so nothing underflows; the lost "
        "mantissa precision matters much less for training than range.",
        "bf16 trades mantissa for exponent: 8 exponent bits like fp32, so tiny and huge values stay finite "
        "and training is stable without a loss scaler.",
    ],
    "partial": [
        "bf16 has a bigger range than fp16.",
        "bf16 is less precise but it works better for training somehow.",
        "fp16 needs loss scaling, bf16 usually doesn't.",
    ],
    "incorrect": [
        "bf16 is safer because it has more mantissa bits, so it is more precise than fp16.",
        "bf16 is just faster on GPUs, that's the only reason.",
        "fp16 has the larger dynamic range, bf16 overflows more easily.",
    ],
}


# Coarse on purpose (the whole answer as one span): the pair model needs each of its classes to appear.
ANNOTATIONS = {
    "correct": [{"quote": "8-bit exponent", "states": ["exponent_width"], "contradicts": [], "holds": []}],
    "partial": [
        {"quote": "bigger range than fp16", "states": ["dynamic_range"], "contradicts": [], "holds": []}
    ],
    "incorrect": [
        {"quote": "more mantissa bits", "states": [], "contradicts": [], "holds": ["more_mantissa"]},
        {
            "quote": "fp16 has the larger dynamic range",
            "states": [],
            "contradicts": ["dynamic_range"],
            "holds": [],
        },
    ],
}


def _tiny_repo(root: Path) -> Path:
    """A source tree with a few labeled answers to ch13-1 from three writers, one of them test-only."""
    (root / "evals" / "writers").mkdir(parents=True)
    golden = []
    for label, answers in ANSWERS.items():
        for i, a in enumerate(answers):
            golden.append(
                {
                    "id": f"g-ch13-1-{len(golden) + 1:02d}",
                    "question_id": "ch13-1",
                    "answer": a,
                    "label": label,
                    "split": "train" if i < 2 else "test",
                }
            )
    (root / "evals" / "golden.jsonl").write_text("\n".join(json.dumps(r) for r in golden) + "\n")
    for w, twist in (("wx", " Honestly."), ("wy", " I think."), ("wz", " Roughly.")):
        d = root / "evals" / "writers" / w
        d.mkdir()
        rows = [
            {
                "id": f"{w}-ch13-1-{label[0]}{i}",
                "question_id": "ch13-1",
                "writer": w,
                "style": "test",
                "answer": a + twist,
                "label": label,
                "annotations": ANNOTATIONS[label],
                "rationale": "test",
            }
            for label, answers in ANSWERS.items()
            for i, a in enumerate(answers)
        ]
        (d / "ch13.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (root / "evals" / "writers" / "split.json").write_text(json.dumps({"test_writers": ["wz"]}))
    return root


TINY_GRID = [
    {
        "max_iter": 15,
        "learning_rate": 0.3,
        "max_leaf_nodes": 3,
        "l2_regularization": 0.0,
        "min_samples_leaf": 2,
    }
]


def test_dataset_keeps_test_writers_and_golden_test_out_of_training(tmp_path):
    ds = TR.load_dataset(_tiny_repo(tmp_path))
    assert {r.group for r in ds.train} == {"golden-v1", "wx", "wy"}
    assert {r.group for r in ds.tests["writers-test"]} == {"wz"}
    assert [r.id for r in ds.tests["golden-test"]] == ["g-ch13-1-03", "g-ch13-1-06", "g-ch13-1-09"]


def test_loss_falls_and_onnx_export_reproduces_the_trees():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, len(FEATURES))).astype(np.float32)
    x[::5, -3:] = np.nan  # missing values take the branch the trees learned for them
    y = (np.nan_to_num(x[:, 0]) + 0.5 * np.nan_to_num(x[:, 1]) > 0).astype(int) + (x[:, 2] > 1)
    x_alone = x.copy()
    x_alone[:, -10:] = rng.normal(size=(300, 10))
    model = TR.fit(x, x_alone, y, TINY_GRID[0] | {"max_iter": 40})
    from sklearn.metrics import log_loss

    xa, ya = np.vstack([x, x_alone]), np.concatenate([y, y])
    losses = [log_loss(ya, p, labels=[0, 1, 2]) for p in model.staged_predict_proba(xa)]
    assert losses[-1] < 0.8 * losses[0]
    import onnxruntime as ort

    sess = ort.InferenceSession(TR.tree_onnx(model, len(FEATURES)), providers=["CPUExecutionProvider"])
    onnx_p = sess.run(["probabilities"], {"X": xa})[0]
    np.testing.assert_allclose(onnx_p, model.predict_proba(xa), atol=1e-5)


def test_training_end_to_end_writes_a_model_that_loads_and_grades(tmp_path, bank):
    root = _tiny_repo(tmp_path / "repo")
    out = tmp_path / "model"
    record = TR.run_training(out, root, grid=TINY_GRID, log=lambda _: None)
    assert record["data"]["train_rows"] == 24 and record["data"]["test_writers"] == ["wz"]
    assert set(record["test"]) == {"golden-test", "writers-test"}
    md = TR.write_model_card_md(out)
    assert "Question-grouped CV" in md.read_text()
    model = LearnedModel.load(out)
    assert len(model.exemplars) == 24 and model.exemplars.questions() == {"ch13-1"}
    g = LearnedGrader(model=model).grade(bank.get("ch13-1"), ANSWERS["correct"][0])
    assert g.grader == f"learned:{model.card.version}"
    assert {"p_incorrect", "p_partial", "p_correct"} <= set(g.signals)
    assert g.verdict == "correct"


def test_a_malformed_annotation_is_named_before_anything_is_written(tmp_path):
    root = _tiny_repo(tmp_path / "repo")
    batch = root / "evals" / "writers" / "wx" / "ch13.jsonl"
    rows = [json.loads(line) for line in batch.read_text().splitlines()]
    rows[0]["annotations"] = [{"states": ["exponent_width"]}]  # no quote
    batch.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "model"
    with pytest.raises(ValueError, match=r"wx-ch13-1-c0: an annotation is malformed.*'quote'.*check_batch"):
        TR.run_training(out, root, grid=TINY_GRID, log=lambda _: None)
    assert not out.exists()


@pytest.fixture
def model_copy(tmp_path: Path) -> Path:
    d = tmp_path / "trained"
    shutil.copytree(TRAINED_DIR, d)
    return d


def test_damaged_model_file_is_a_clear_error(model_copy):
    (model_copy / "verdict.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match=r"verdict.onnx: damaged \(sha256 differs.*make train"):
        LearnedModel.load(model_copy)


def test_missing_model_file_is_a_clear_error(model_copy):
    (model_copy / "exemplars.npz").unlink()
    with pytest.raises(ModelFileError, match=r"exemplars.npz: missing.*make train.*TUTOR_GRADER=embedding"):
        LearnedModel.load(model_copy)
    (model_copy / "card.json").unlink()
    with pytest.raises(ModelFileError, match=r"card.json: the trained grader is missing"):
        LearnedModel.load(model_copy)


def test_shipped_model_is_small_and_matches_its_card():
    card = json.loads((TRAINED_DIR / "card.json").read_text())
    total = sum((TRAINED_DIR / f).stat().st_size for f in card["files"])
    assert total < 100 * 2**20
    assert card["features"] == list(FEATURES)
    assert card["training"]["data"]["test_writers"] == ["wt"]
    LearnedModel.load()  # checks every sha256


def test_grading_env_chooses_the_grader(monkeypatch):
    from tutor.grading import GraderUnavailable, grader_kind, make_grader

    monkeypatch.setenv("TUTOR_GRADER", "embedding")
    assert grader_kind() == "embedding"
    assert make_grader().name.startswith("embedding:")
    monkeypatch.setenv("TUTOR_GRADER", "nope")
    with pytest.raises(GraderUnavailable, match=r"TUTOR_GRADER='nope' is not a grader; use one of: learned"):
        grader_kind()


def test_question_without_labeled_answers_still_grades(grader, bank):
    # A rubric a user adds has no labeled answers: the model has the rubric's own exemplars only, and is
    # weaker there (question-grouped CV in the model card), but every correct answer still outscores every
    # incorrect one, and the rubric's own misconception is incorrect.
    q = bank.get("ch13-1").model_copy(update={"id": "ch13-9"})
    right = [grader.grade(q, a) for a in ANSWERS["correct"]]
    wrong = [grader.grade(q, a) for a in ANSWERS["incorrect"]]
    assert all(g.covered and g.verdict != "incorrect" for g in right)
    assert min(g.score for g in right) > max(g.score for g in wrong)
    assert wrong[0].verdict == "incorrect" and wrong[0].misconceptions[0].id == "more_mantissa"


def test_guards_stand_and_feedback_quotes_the_learner(grader, bank):
    q = bank.get("ch13-1")
    assert grader.grade(q, "I don't know").flags == ["dont_know"]
    g = grader.grade(q, ANSWERS["correct"][0])
    assert g.verdict == "correct" and g.feedback.startswith("Correct.")
    assert all(c.sentence in ANSWERS["correct"][0] for c in g.covered)
    wrong = grader.grade(q, ANSWERS["incorrect"][0])
    assert wrong.verdict == "incorrect" and [m.id for m in wrong.misconceptions] == ["more_mantissa"]


def test_wrong_number_is_never_correct(grader, bank):
    q = bank.get("ch11-3")
    g = grader.grade(
        q, "100k ids do not fit in uint16 (max 65,536), so use 4-byte int32: 15e12 x 4 bytes = 6 TB."
    )
    assert g.numeric is not None and not g.numeric.correct and g.verdict != "correct"


def test_grade_many_equals_grade(grader, bank):
    items = [(bank.get("ch13-1"), a) for a in (*ANSWERS["correct"], *ANSWERS["incorrect"], "")]
    assert [g.model_dump() for g in grader.grade_many(items)] == [
        grader.grade(q, a).model_dump() for q, a in items
    ]


def test_ad_hoc_question_without_rubric_keeps_the_embedding_verdict(grader, bank):
    # An external dataset's question (reference answer only, no misconceptions, no labeled answers): the
    # model was not built for it and measured worse there, so the embedding grade stands, and says so.
    from tutor.evals.dataset import external_question

    q = external_question(
        "ext-1", "Why does ice float on water?", ["Ice is less dense than liquid water."], "x"
    )
    answer = "Because frozen water is less dense than the liquid, so it floats."
    g = grader.grade(q, answer)
    assert g.grader.startswith("embedding:") and "p_correct" not in g.signals
    # ...with the default thresholds, not the calibration fitted on this project's rubrics, and no pair model.
    plain = EmbeddingGrader(thresholds=Thresholds())
    assert g.model_dump() == plain.grade(q, answer).model_dump()
    assert grader.model.card.thresholds != Thresholds()  # so the comparison can tell the two apart
    # In a batch mixed with the project's own questions, each keeps its own grader.
    mixed = grader.grade_many([(q, answer), (bank.get("ch13-1"), ANSWERS["correct"][0])])
    assert mixed[0].model_dump() == g.model_dump() and mixed[1].grader.startswith("learned:")
