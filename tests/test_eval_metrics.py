"""The eval machinery: metrics against hand-computed values, loading, calibration and `tutor eval`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score
from typer.testing import CliRunner

from tutor.evals import metrics as M
from tutor.evals.calibrate import apply_cutoffs, decision_scores, fit, fit_cutoffs, write_calibration
from tutor.evals.dataset import PRESETS, external_question, load_file, parse_label_map
from tutor.grader import Thresholds, load_thresholds
from tutor.models import Grade

SHARED_BENCH = Path(__file__).resolve().parent.parent.parent / "shared" / "benchmarks"

# Confusion matrix (rows gold, columns predicted; order incorrect, partial, correct):
#     [[2, 1, 0],
#      [1, 2, 1],
#      [0, 1, 2]]          n = 10, row sums = column sums = (3, 4, 3)
# Quadratic weights W_ij = (i-j)^2 / 4: 0 on the diagonal, 0.25 next to it, 1 in the corners.
# Observed:  sum W*O = 0.25 * (1 + 1 + 1 + 1) = 1.0
# Expected:  E = outer((3,4,3), (3,4,3)) / 10 = [[.9,1.2,.9],[1.2,1.6,1.2],[.9,1.2,.9]]
#            sum W*E = 0.25 * (1.2 * 4) + 1 * (0.9 + 0.9) = 1.2 + 1.8 = 3.0
# QWK = 1 - 1.0 / 3.0 = 0.6667.
# Unweighted kappa: p_o = 6/10, p_e = (3*3 + 4*4 + 3*3) / 100 = 0.34, kappa = (0.6 - 0.34) / 0.66 = 0.3939.
CM = [[2, 1, 0], [1, 2, 1], [0, 1, 2]]


def labels_from_confusion(cm: list[list[int]]) -> tuple[list[str], list[str]]:
    gold, pred = [], []
    for i, row in enumerate(cm):
        for j, count in enumerate(row):
            gold += [M.LABELS[i]] * count
            pred += [M.LABELS[j]] * count
    return gold, pred


def test_qwk_hand_computed() -> None:
    assert M.qwk_from_confusion(np.array(CM)) == pytest.approx(2 / 3)
    gold, pred = labels_from_confusion(CM)
    assert M.qwk(gold, pred) == pytest.approx(2 / 3)
    # sklearn agrees once told the ordinal order (it would otherwise sort the labels alphabetically)
    assert cohen_kappa_score(gold, pred, labels=M.LABELS, weights="quadratic") == pytest.approx(2 / 3)


def test_verdict_metrics_hand_computed() -> None:
    gold, pred = labels_from_confusion(CM)
    m = M.verdict_metrics(gold, pred)
    assert m["n"] == 10
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["qwk"] == pytest.approx(0.6667, abs=1e-4)
    assert m["kappa"] == pytest.approx(0.26 / 0.66, abs=1e-4)
    # per-class F1: incorrect 2/3, partial 0.5, correct 2/3 -> macro 0.6111
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.5 + 2 / 3) / 3, abs=1e-4)
    assert m["confusion"]["matrix"] == CM


def test_perfect_and_reversed_agreement() -> None:
    gold = ["incorrect", "partial", "correct"] * 3
    assert M.qwk(gold, gold) == pytest.approx(1.0)
    flipped = [{"incorrect": "correct", "correct": "incorrect"}.get(g, g) for g in gold]
    assert M.qwk(gold, flipped) == pytest.approx(-1.0)


def test_two_way_and_baseline() -> None:
    # gold T T F F, pred T F F F: accuracy 3/4; F1(T) = 2/3, F1(F) = 0.8, weighted by support 2:2 -> 0.7333
    tw = M.two_way_metrics([True, True, False, False], [True, False, False, False])
    assert tw["accuracy"] == pytest.approx(0.75)
    assert tw["weighted_f1"] == pytest.approx((2 / 3 + 0.8) / 2, abs=1e-4)
    base = M.constant_baseline(["correct", "correct", "partial", "incorrect"])
    assert base == {
        "label": "correct",
        "accuracy": 0.5,
        "qwk": 0.0,
        "macro_f1": pytest.approx(2 / 9, abs=1e-4),
    }


def test_bootstrap_is_reproducible_and_brackets_the_estimate() -> None:
    gold, pred = labels_from_confusion([[20, 5, 1], [4, 15, 6], [1, 5, 25]])
    a = M.bootstrap_ci(gold, pred, n_boot=300, seed=0)
    assert a == M.bootstrap_ci(gold, pred, n_boot=300, seed=0)
    lo, hi = a["qwk"]
    assert lo < M.qwk(gold, pred) < hi
    assert a["accuracy"][0] < 60 / 82 < a["accuracy"][1]


def test_correlation_and_latency() -> None:
    c = M.correlation([0.1, 0.5, 0.9, 0.3], [0.0, 0.5, 1.0, 0.25])
    assert c["pearson"] > 0.99 and c["spearman"] == pytest.approx(1.0)
    assert c["rmse"] == pytest.approx(np.sqrt((0.01 + 0 + 0.01 + 0.0025) / 4), abs=1e-4)
    assert M.correlation([1, 1, 1], [0, 1, 2])["pearson"] is None  # constant predictor: undefined, not NaN
    lat = M.latency_stats([0.01, 0.02, 0.03, 0.04], wall_s=0.2)
    assert lat["p50_ms"] == pytest.approx(25.0) and lat["answers_per_s"] == pytest.approx(20.0)


# ---------------------------------------------------------------- loading


def write_jsonl(path: Path, lines: list[str | dict]) -> Path:
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


def test_loader_reports_bad_lines_with_line_numbers(tmp_path: Path, bank) -> None:
    f = write_jsonl(
        tmp_path / "g.jsonl",
        [
            {"id": "a", "question_id": "ch11-1", "answer": "x", "label": "correct", "split": "train"},
            "{not json",
            {"id": "b", "question_id": "ch99-9", "answer": "x", "label": "correct"},
            {"id": "c", "question_id": "ch11-1", "answer": "x", "label": "great"},
            {"id": "d", "question_id": "ch11-1", "label": "partial"},
            "",
            {"id": "e", "question_id": "ch11-2", "answer": "y", "label": "partial", "split": "test"},
        ],
    )
    res = load_file(f, bank)
    assert [r.id for r in res.rows] == ["a", "e"]
    where = {i.source.rsplit(":", 1)[1]: i.message for i in res.issues}
    assert set(where) == {"2", "3", "4", "5"}
    assert "not valid JSON" in where["2"]
    assert "ch99-9" in where["3"]
    assert "'great'" in where["4"]
    assert "answer" in where["5"]
    assert res.rows[0].group == "ch11"
    train = load_file(f, bank, split="train")
    assert [r.id for r in train.rows] == ["a"] and train.skipped_by_split == 4  # rows without a split too


def test_loader_takes_a_bom_and_unicode_separators_and_names_a_non_utf8_line(tmp_path: Path, bank) -> None:
    row = {"id": "a", "question_id": "ch11-1", "answer": "one\u2028two", "label": "correct"}
    good = json.dumps(row, ensure_ascii=False).encode()  # U+2028 stays raw inside the JSON string
    f = tmp_path / "g.jsonl"
    f.write_bytes(
        b"\xef\xbb\xbf" + good + b"\n" + b'{"id": "b", "answer": "caf\xe9"}\n' + good.replace(b'"a"', b'"c"')
    )
    res = load_file(f, bank)
    assert [r.id for r in res.rows] == ["a", "c"] and res.rows[0].answer == "one\u2028two"
    assert [(i.source, i.message) for i in res.issues] == [
        (f"{f}:2", "not UTF-8 text (byte 27); save the file as UTF-8")
    ]


def test_eval_given_a_directory_says_so(tmp_path: Path) -> None:
    from tutor.cli import app

    res = CliRunner().invoke(app, ["eval", str(tmp_path)])
    assert res.exit_code == 2 and "is a directory" in res.output and "*.jsonl" in res.output


def test_label_map_and_presets(tmp_path: Path) -> None:
    assert parse_label_map("contradictory=incorrect, Partially correct=partial") == {
        "contradictory": "incorrect",
        "partially correct": "partial",
    }
    with pytest.raises(ValueError, match="not one of"):
        parse_label_map("a=wrong")
    row = {
        "id": "1",
        "question_id": "q1",
        "question": "Why does ice float?",
        "reference_answers": ["Ice is less dense than water."],
        "answer": "it is lighter",
        "label": "meh",
    }
    f = write_jsonl(tmp_path / "ext.jsonl", [row, {**row, "id": "2", "label": 3.5, "score": 3.5}])
    res = load_file(f, label_map={"meh": "partial"})
    assert [r.label for r in res.rows] == ["partial"] and len(res.issues) == 1
    res = load_file(f, preset=PRESETS["mohler"])
    assert [(r.label, r.score) for r in res.rows] == [("partial", 0.7)]  # 3.5 / 5 -> partial (>= 2.5, < 4)


def test_external_question_has_reference_key_points() -> None:
    q = external_question(
        "q", "What happens?", ["First it rains a lot. Then the river floods the town."], "x"
    )
    assert [k.text for k in q.key_points] == ["First it rains a lot.", "Then the river floods the town."]
    assert q.misconceptions == [] and q.hints == []
    multi = external_question("q", "What happens?", ["It rains.", "Rain falls."], "x")
    assert len(multi.key_points) == 1 and multi.key_points[0].phrasings == ["It rains.", "Rain falls."]


def test_grader_handles_external_question(grader) -> None:
    q = external_question(
        "ext-1",
        "How did you separate the salt from the water?",
        ["The water was evaporated, leaving the salt."],
        "test",
    )
    good = grader.grade(q, "We let the water evaporate and the salt stayed behind.")
    bad = grader.grade(q, "We used a magnet to pull it out.")
    assert good.score > bad.score
    # An external question has no misconceptions of its own: a paraphrase covers the reference key point
    # and is held against nothing; a negation of it is reported as contradicting that key point.
    assert [c.id for c in good.covered] == ["ref"] and good.misconceptions == [] and good.missed == []
    negated = grader.grade(q, "The water was not evaporated, so no salt was left behind.")
    assert [m.id for m in negated.misconceptions] == ["contradicts:ref"]
    assert [(m.id, m.reason) for m in negated.missed] == [("ref", "contradicted")]
    assert negated.score < good.score


@pytest.mark.benchmarks
@pytest.mark.skipif(not SHARED_BENCH.is_dir(), reason="../shared/benchmarks not present")
def test_loads_shared_benchmarks_without_issues() -> None:
    for folder, preset in (
        ("semeval2013_scientsbank", "scientsbank"),
        ("semeval2013_beetle", "beetle"),
        ("saf_en_v2", "saf"),
    ):
        res = load_file(SHARED_BENCH / folder / "test_ua.jsonl")
        assert res.rows and not res.issues and res.rows[0].dataset == preset
    mohler = load_file(SHARED_BENCH / "mohler2011" / "all.jsonl")
    assert len(mohler.rows) == 2273 and not mohler.issues and all(r.score is not None for r in mohler.rows)


# ---------------------------------------------------------------- calibration


def test_fit_cutoffs_separates_scores() -> None:
    gold = ["incorrect"] * 5 + ["partial"] * 5 + ["correct"] * 5
    scores = [0.1, 0.15, 0.2, 0.22, 0.25, 0.4, 0.45, 0.5, 0.55, 0.6, 0.8, 0.85, 0.9, 0.95, 0.99]
    p, c, q, acc = fit_cutoffs(gold, scores, [False] * 15)
    assert q == pytest.approx(1.0) and acc == 1.0
    assert 0.25 < p <= 0.4 and 0.6 < c <= 0.8
    pred = apply_cutoffs(np.array(scores), np.array([False] * 14 + [True]), p, c)
    assert pred[-1] == 1  # a blocked grade (misconception) is never correct


class StubGrader:
    """Scores = a fixed number per answer; lets calibration run without the embedding model."""

    name = "stub"

    def __init__(self) -> None:
        self.t = Thresholds()

    def grade(self, question, answer: str) -> Grade:
        s = float(answer)
        v = "correct" if s >= self.t.correct else "partial" if s >= self.t.partial else "incorrect"
        return Grade(question_id="ch11-1", score=s, verdict=v, feedback="", grader=self.name)


def test_calibrate_writes_a_file_load_thresholds_reads(tmp_path: Path, bank) -> None:
    rows = [
        {"id": str(i), "question_id": "ch11-1", "answer": str(s), "label": lab, "split": "train"}
        for i, (s, lab) in enumerate(
            [
                (0.1, "incorrect"),
                (0.2, "incorrect"),
                (0.45, "partial"),
                (0.5, "partial"),
                (0.85, "correct"),
                (0.9, "correct"),
            ]
        )
    ]
    res = load_file(write_jsonl(tmp_path / "g.jsonl", rows), bank, split="train")
    t, info = fit(res.rows, StubGrader())  # type: ignore[arg-type]
    assert info["train_after"]["qwk"] == pytest.approx(1.0)
    out = tmp_path / "calibration.json"
    written = write_calibration(out, t, info, ["g.jsonl"], "train")
    loaded = load_thresholds(out)
    assert loaded == written
    assert loaded.version.startswith("calib-") and loaded.partial == t.partial and loaded.correct == t.correct
    doc = json.loads(out.read_text())
    assert doc["fit"]["split"] == "train" and doc["fit"]["n"] == 6 and "created" in doc


class RoundingStubGrader(StubGrader):
    """Like the embedding grader: the verdict is decided on the unrounded score, the score is rounded to 3
    decimals for output."""

    def grade(self, question, answer: str) -> Grade:
        g = super().grade(question, answer)
        return g.model_copy(update={"score": round(g.score, 3)})


def test_calibration_fits_what_the_grader_compares_not_the_rounded_score(tmp_path: Path, bank) -> None:
    # 0.6996 and 0.7004 both print as 0.700: on the rounded scores no cut-off separates the partial answer
    # from the three correct ones, but the grader, which compares unrounded scores, separates them at 0.70.
    answers = [("0.1", "incorrect"), ("0.2", "incorrect"), ("0.45", "partial"), ("0.6996", "partial")]
    answers += [("0.7004", "correct")] * 3 + [("0.9", "correct")]
    rows = [
        {"id": str(i), "question_id": "ch11-1", "answer": a, "label": lab, "split": "train"}
        for i, (a, lab) in enumerate(answers)
    ]
    res = load_file(write_jsonl(tmp_path / "g.jsonl", rows), bank, split="train")
    grader = RoundingStubGrader()
    grades = [grader.grade(r.question, r.answer) for r in res.rows]
    assert [g.score for g in grades][3:5] == [0.7, 0.7]
    s = decision_scores(grader, res.rows, grades)  # type: ignore[arg-type]
    assert s[3] < 0.7 <= s[4] and s[3] > 0.699  # moved just below the cut-off, not further
    assert list(s[[0, 1, 2, 7]]) == [0.1, 0.2, 0.45, 0.9] and grader.t == Thresholds()  # t restored
    t, info = fit(res.rows, grader)  # type: ignore[arg-type]
    assert t.correct == pytest.approx(0.70)
    # The QWK the fit reports is the QWK the grader gets with the fitted cut-offs on the same rows.
    assert info["fitted_qwk"] == info["train_after"]["qwk"] == pytest.approx(1.0)


@pytest.mark.slow
def test_calibration_qwk_is_the_graders_on_the_golden_train_split(bank) -> None:
    """The real grader at the grid point where the rounded-score fit reported QWK 0.638 and the grader then
    got 0.635 on the same 400 train answers (calibration calib-20261128-96de16ac)."""
    from tutor.evals import runner
    from tutor.evals.dataset import load_files

    rows = load_files(
        [Path(__file__).resolve().parent.parent / "evals" / "golden.jsonl"], bank, split="train"
    )
    grader = runner.make_grader(Thresholds(), cache_answers=True, kind="embedding")
    runner.prefetch(grader, rows.rows, progress=False)
    _, info = fit(rows.rows, grader, base=Thresholds(cover_full=0.62, cover_min=0.35, reference_weight=0.15))
    assert info["fitted_qwk"] == info["train_after"]["qwk"]
    assert info["train_after"]["n"] == 400


# ---------------------------------------------------------------- CLI


def test_tutor_eval_json_and_report(tmp_path: Path) -> None:
    from tutor.cli import app

    f = write_jsonl(
        tmp_path / "tiny.jsonl",
        [
            {
                "id": "1",
                "question_id": "ch11-1",
                "answer": "I don't know",
                "label": "incorrect",
                "split": "test",
            },
            {
                "id": "2",
                "question_id": "ch11-1",
                "answer": "pizza is tasty and cheap",
                "label": "incorrect",
                "split": "test",
            },
            "oops",
            {"id": "3", "question_id": "ch11-2", "answer": "no idea", "label": "incorrect", "split": "test"},
        ],
    )
    runner = CliRunner()
    res = runner.invoke(app, ["eval", str(f), "--json", "--no-progress", "--report", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert rep["n"] == 3 and {"accuracy", "macro_f1", "qwk", "confusion"} <= set(rep)
    assert rep["confusion"]["matrix"][0][0] == 3  # all three are clear incorrect answers
    assert any(":3:" in i for i in rep["issues"])
    for name in ("report.json", "report.md", "confusion.png", "scores.png"):
        assert (tmp_path / "rep" / name).stat().st_size > 0

    sampled = runner.invoke(app, ["eval", str(f), "--json", "--no-progress", "--sample", "2", "--seed", "1"])
    assert sampled.exit_code == 0, sampled.output
    assert json.loads(sampled.stdout)["sample"] == {"n": 2, "of": 3, "seed": 1}
    zero = runner.invoke(app, ["eval", str(f), "--sample", "0"])
    assert zero.exit_code == 2 and "--sample must be a positive" in zero.output

    bad = runner.invoke(app, ["eval", str(tmp_path / "missing.jsonl")])
    assert bad.exit_code == 2 and "no such file" in bad.output
    none = runner.invoke(app, ["eval", str(f), "--split", "train"])
    assert none.exit_code == 2 and "no usable rows" in none.output


def test_tutor_eval_with_fake_judge_reports_judge_metrics(tmp_path: Path) -> None:
    from tutor.cli import app

    answer = "Scale parameters and training tokens together, about 20 tokens per parameter."
    f = write_jsonl(
        tmp_path / "j.jsonl",
        [
            {"id": str(i), "question_id": "ch11-1", "answer": answer, "label": lab}
            for i, lab in enumerate(["correct", "partial"])
        ],
    )
    res = CliRunner().invoke(app, ["eval", str(f), "--json", "--no-progress", "--judge", "fake:partial"])
    assert res.exit_code == 0, res.output
    j = json.loads(res.stdout)["judge"]
    assert j["n"] == 2 and j["position_consistency"] == 1.0 and j["unscored_rate"] == 0.0
    assert j["judge_only_qwk"] is not None and j["tokens_total"] > 0
    assert j["order_n"] == {"A": 2, "B": 2}
    # Biased to the first position: order B (answer first) says "correct", order A "partial".
    biased = CliRunner().invoke(
        app, ["eval", str(f), "--json", "--no-progress", "--judge", "fake:partial,bias=first"]
    )
    jb = json.loads(biased.stdout)["judge"]
    assert jb["position_consistency"] == 0.0 and jb["prefer_first"] == 1.0
    assert set(jb["order_qwk"]) == {"A", "B"} and jb["order_n"] == {"A": 2, "B": 2}
    bad = CliRunner().invoke(app, ["eval", str(f), "--judge", "nope:x"])
    assert bad.exit_code == 2 and "unknown judge" in bad.output


def test_eval_says_when_judge_latency_comes_from_the_reply_cache(tmp_path: Path, tutor_home: Path) -> None:
    from tutor.cli import app

    rows = [
        {
            "id": "1",
            "question_id": "ch11-1",
            "answer": "Scale parameters and tokens together.",
            "label": "partial",
        },
        {
            "id": "2",
            "question_id": "ch11-1",
            "answer": "Make the model as big as possible.",
            "label": "incorrect",
        },
    ]
    f = write_jsonl(tmp_path / "j.jsonl", rows)
    args = ["eval", str(f), "--json", "--no-progress", "--judge", "fake:partial"]
    first = json.loads(CliRunner().invoke(app, args).stdout)["judge"]  # a fresh TUTOR_HOME: empty cache
    assert (first["calls"], first["cached_calls"], first["latency_source"]) == (4, 0, "model")
    assert first["latency_uncached"] == first["latency"]

    report = tmp_path / "report"
    again = CliRunner().invoke(app, [*args, "--report", str(report)])
    second = json.loads(again.stdout)["judge"]
    assert (second["cached_calls"], second["latency_source"], second["latency_uncached"]) == (
        4,
        "reply cache",
        None,
    )
    assert "cache reads, not the judge's speed" in second["latency_note"]
    md = (report / "report.md").read_text()
    assert "Latency source: reply cache." in md
    assert "4 of 4 judge calls were read from its reply cache, so this is not the judge's speed" in md
    table = CliRunner().invoke(app, [a for a in args if a != "--json"])
    assert (
        "judge latency: every one of the 2 judged answers was read from the judge's reply cache"
        in table.output
    )

    f3 = write_jsonl(tmp_path / "j3.jsonl", [*rows, {**rows[0], "id": "3", "answer": "Something new."}])
    third = json.loads(CliRunner().invoke(app, [*args[:1], str(f3), *args[2:]]).stdout)["judge"]
    assert (third["cached_calls"], third["latency_source"]) == (4, "mixed")
    assert third["latency_uncached"] is not None and "2 of 3 judged answers" in third["latency_note"]


def test_stratified_sample_keeps_the_label_mix_and_is_reproducible(tmp_path: Path, bank) -> None:
    from tutor.evals.dataset import load_file, stratified_sample

    labels = ["correct"] * 10 + ["partial"] * 6 + ["incorrect"] * 4
    f = write_jsonl(
        tmp_path / "s.jsonl",
        [
            {"id": str(i), "question_id": "ch11-1", "answer": f"a{i}", "label": lab}
            for i, lab in enumerate(labels)
        ],
    )
    rows = load_file(f, bank).rows
    a = stratified_sample(rows, 10, seed=3)
    assert [r.label for r in a].count("correct") == 5
    assert [r.label for r in a].count("partial") == 3 and [r.label for r in a].count("incorrect") == 2
    assert [r.id for r in a] == [r.id for r in stratified_sample(rows, 10, seed=3)]
    assert [int(r.id) for r in a] == sorted(int(r.id) for r in a)  # original order kept
    assert stratified_sample(rows, 50) == rows
    with pytest.raises(ValueError):
        stratified_sample(rows, 0)


def test_calibrate_with_a_judge_fits_weight_and_inconsistency_rule(tmp_path: Path) -> None:
    from tutor.cli import app

    answers = [
        ("Scale parameters and training tokens together, about 20 tokens per parameter.", "correct"),
        ("Chinchilla scaled data and model size equally for a fixed compute budget.", "correct"),
        ("Make the model as big as possible; data matters less.", "incorrect"),
        ("I don't know", "incorrect"),
        ("It is about compute budgets and scaling.", "partial"),
        ("Use more tokens than before.", "partial"),
    ]
    f = write_jsonl(
        tmp_path / "g.jsonl",
        [
            {"id": str(i), "question_id": "ch11-1", "answer": a, "label": lab, "split": "train"}
            for i, (a, lab) in enumerate(answers)
        ],
    )
    out = tmp_path / "calibration.json"
    args = ["calibrate", str(f), "--out", str(out), "--no-progress", "--judge", "fake:partial,bias=first"]
    res = CliRunner().invoke(app, [*args, "--judge-sample", "4"])
    assert res.exit_code == 0, res.output
    fit_info = json.loads(out.read_text())["fit"]
    assert fit_info["judge_rows"] == 4
    assert {(p["judge_inconsistent"], p["judge_weight"]) for p in fit_info["judge_tried"]} == {
        (rule, w) for rule in ("conservative", "embedding") for w in (0.2, 0.4, 0.6, 0.8, 1.0)
    }
    # what was written is the best setting tried (QWK, then Spearman; the first one on a tie)
    best = max(fit_info["judge_tried"], key=lambda p: (p["qwk"], p["spearman"]))
    written = load_thresholds(out)
    assert (written.judge_inconsistent, written.judge_weight) == (
        best["judge_inconsistent"],
        best["judge_weight"],
    )
    bad = CliRunner().invoke(app, [*args, "--judge-sample", "0"])
    assert bad.exit_code == 2 and "--judge-sample must be a positive" in bad.output


class VerdictStub:
    """An embedding grade chosen by the answer text ("correct:0.9"), so fusion's inputs are known exactly."""

    name = "embedding:stub"

    def __init__(self) -> None:
        self.t = Thresholds()

    def grade(self, question, answer: str) -> Grade:
        verdict, score = answer.split(":")
        return Grade(
            question_id=question.id, score=float(score), verdict=verdict, feedback="", grader=self.name
        )


@pytest.mark.parametrize(
    ("gold_for_embedding_correct", "rule"),
    [
        # The judge (partial in order A, correct in order B) always contradicts itself. Where the embedding
        # grade is right, the conservative rule drags correct answers down to partial: the judge must abstain.
        ("correct", "embedding"),
        # Where the embedding grader over-grades (its "correct" answers are labeled partial), the conservative
        # rule's min(embedding, judge) is right and abstaining is not.
        ("partial", "conservative"),
    ],
)
def test_judge_fit_picks_the_inconsistency_rule_the_labels_support(
    tmp_path: Path, bank, gold_for_embedding_correct: str, rule: str
) -> None:
    from tutor.evals.calibrate import fit_judge_weight
    from tutor.judge.engine import JudgeEngine
    from tutor.judge.fake import FakeJudge

    graded = [("correct:0.9", gold_for_embedding_correct)] * 3 + [("partial:0.5", "partial")] * 2
    graded += [("incorrect:0.1", "incorrect")] * 3
    f = write_jsonl(
        tmp_path / "g.jsonl",
        [
            {"id": str(i), "question_id": "ch13-1", "answer": a, "label": lab, "split": "train"}
            for i, (a, lab) in enumerate(graded)
        ],
    )
    rows = load_file(f, bank).rows
    engine = JudgeEngine(FakeJudge("partial", bias="first"), cache=False)
    t, info = fit_judge_weight(rows, VerdictStub(), engine, Thresholds())  # type: ignore[arg-type]
    assert t.judge_inconsistent == rule
    by_rule = {p["judge_inconsistent"]: p["qwk"] for p in info["judge_tried"]}
    other = "conservative" if rule == "embedding" else "embedding"
    assert by_rule[rule] == 1.0 and by_rule[other] < 1.0


def test_calibrate_without_a_judge_keeps_the_previous_judge_fit(tmp_path: Path) -> None:
    from tutor.cli import app

    f = write_jsonl(
        tmp_path / "g.jsonl",
        [
            {"id": str(i), "question_id": "ch11-1", "answer": a, "label": lab, "split": "train"}
            for i, (a, lab) in enumerate(
                [("About 20 tokens per parameter, scaling both together.", "correct"), ("idk", "incorrect")]
            )
        ],
    )
    out = tmp_path / "calibration.json"
    previous = Thresholds(judge_weight=0.8, judge_inconsistent="embedding", version="calib-old")
    out.write_text(json.dumps({"thresholds": previous.model_dump()}))
    res = CliRunner().invoke(app, ["calibrate", str(f), "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "judge settings kept from calib-old" in res.output
    t = load_thresholds(out)
    assert (t.judge_weight, t.judge_inconsistent) == (0.8, "embedding")
    assert json.loads(out.read_text())["fit"]["judge_kept_from"] == "calib-old"
    out.unlink()  # a new file: the judge settings of the calibration in use
    assert CliRunner().invoke(app, ["calibrate", str(f), "--out", str(out), "--no-progress"]).exit_code == 0
    assert load_thresholds(out).judge_weight == load_thresholds().judge_weight


def test_an_installed_package_calibrates_into_the_user_dir(
    tmp_path: Path, tutor_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a wheel the shipped calibration sits inside the package; `tutor calibrate` must not write there."""
    from tutor import paths

    pkg = tmp_path / "site-packages" / "tutor"
    pkg.mkdir(parents=True)
    (pkg / "calibration.json").write_text(
        json.dumps({"thresholds": Thresholds(version="shipped").model_dump()})
    )
    monkeypatch.setattr(paths, "_PKG", pkg)
    assert paths.calibration_out_path() == tutor_home / "calibration.json"
    assert load_thresholds().version == "shipped"
    (tutor_home / "calibration.json").write_text(
        json.dumps({"thresholds": Thresholds(version="own").model_dump()})
    )
    assert load_thresholds().version == "own"


def test_unusable_calibration_file_is_a_clear_error(tmp_path: Path) -> None:
    from tutor.cli import app
    from tutor.paths import CalibrationError

    bad = tmp_path / "calibration.json"
    bad.write_text('{"thresholds": {"correct": "high"}}')
    with pytest.raises(CalibrationError, match=r"calibration.json: thresholds.correct: .*tutor calibrate"):
        load_thresholds(bad)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(CalibrationError, match="not a readable JSON file"):
        load_thresholds(broken)
    f = write_jsonl(
        tmp_path / "g.jsonl", [{"id": "1", "question_id": "ch11-1", "answer": "idk", "label": "incorrect"}]
    )
    res = CliRunner().invoke(app, ["eval", str(f), "--thresholds", str(bad), "--no-progress"])
    assert res.exit_code == 2 and "thresholds.correct" in res.output


def test_calibrate_refuses_an_unwritable_output_before_fitting(tmp_path: Path) -> None:
    from tutor.cli import app

    f = write_jsonl(
        tmp_path / "g.jsonl",
        [{"id": "1", "question_id": "ch11-1", "answer": "idk", "label": "incorrect", "split": "train"}],
    )
    blocker = tmp_path / "file"
    blocker.write_text("")
    res = CliRunner().invoke(app, ["calibrate", str(f), "--out", str(blocker / "c.json")])
    assert res.exit_code == 2 and "--out" in res.output and "pass a writable path" in res.output
    rep = CliRunner().invoke(app, ["eval", str(f), "--report", str(blocker / "rep"), "--no-progress"])
    assert rep.exit_code == 2 and "--report" in rep.output and "pass a writable path" in rep.output
    a_dir = tmp_path / "out"
    a_dir.mkdir()
    res = CliRunner().invoke(app, ["calibrate", str(f), "--out", str(a_dir), "--no-progress"])
    assert res.exit_code == 2 and "is a directory" in res.output
    assert not (tmp_path / "out.tmp").exists()


def test_a_failed_calibration_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "calibration.json"
    target.mkdir()  # the rename onto it fails after the temporary file was written
    with pytest.raises(OSError):
        write_calibration(target, Thresholds(), {}, ["g.jsonl"], "train")
    assert not (tmp_path / "calibration.tmp").exists()


def test_golden_set_is_well_formed_and_matches_its_parts(bank) -> None:
    """evals/golden.jsonl is what evals/split.py makes of the parts (a part edited without re-running the
    split fails here), every row loads, and every question has enough answers in both splits."""
    import importlib.util
    from collections import Counter

    evals = Path(__file__).resolve().parent.parent / "evals"
    spec = importlib.util.spec_from_file_location("golden_split", evals / "split.py")
    assert spec is not None and spec.loader is not None
    split = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(split)
    rows = [json.loads(line) for line in (evals / "golden.jsonl").read_text("utf-8").splitlines()]
    assert rows == split.merged(), "evals/golden.jsonl is stale: run `python evals/split.py`"

    loaded = load_file(evals / "golden.jsonl", bank)
    assert loaded.issues == [] and len(loaded.rows) == len(rows)
    per_split = Counter((r["question_id"], r["split"]) for r in rows)
    for q in bank.questions:
        assert per_split[(q.id, "train")] + per_split[(q.id, "test")] >= 12, q.id
        assert per_split[(q.id, "train")] >= 4 and per_split[(q.id, "test")] >= 4, q.id
