"""`tutor eval` and `tutor calibrate`: parse, call tutor.evals, render. Registered by one import in cli.py."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from tutor.cli import app, err, fail, out
from tutor.evals.dataset import (
    PRESETS,
    LoadIssue,
    LoadResult,
    Preset,
    load_files,
    parse_label_map,
    stratified_sample,
)
from tutor.models import Verdict

FilesArg = Annotated[
    list[Path], typer.Argument(help="JSONL files: golden rows or ../shared/benchmarks rows.")
]
PresetOpt = Annotated[
    str | None,
    typer.Option(help=f"Label preset: {', '.join(PRESETS)} (default: chosen from the file path)."),
]
LabelMapOpt = Annotated[
    str | None,
    typer.Option(
        "--label-map", help="Map dataset labels to verdicts, e.g. 'contradictory=incorrect,ok=correct'."
    ),
]


def _load(files: list[Path], preset: str | None, label_map: str | None, split: str | None) -> LoadResult:
    for f in files:
        if f.is_dir():
            fail(f"{f}: is a directory; pass the JSONL files in it (e.g. {f}/*.jsonl)")
        if not f.is_file():
            fail(f"{f}: no such file")
    chosen: Preset | None = None
    if preset is not None:
        if preset not in PRESETS:
            fail(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        chosen = PRESETS[preset]
    mapping: dict[str, Verdict] | None = None
    if label_map is not None:
        try:
            mapping = parse_label_map(label_map)
        except ValueError as e:
            fail(f"--label-map: {e}")
    if split is not None and split not in ("train", "test"):
        fail(f"--split must be 'train' or 'test', not {split!r}")
    from tutor.rubric import RubricError, default_bank

    try:
        bank = default_bank()
    except (RubricError, FileNotFoundError) as e:
        err.print(
            f"[yellow]warning:[/] question bank not loaded ({escape(str(e))}); rows naming bank "
            "questions will be skipped"
        )
        bank = None
    res = load_files(files, bank, chosen, mapping, split)
    _warn_issues(res.issues)
    if not res.rows:
        where = f" in split {split!r}" if split else ""
        fail(f"no usable rows{where} in {', '.join(map(str, files))}")
    return res


def _warn_issues(issues: list[LoadIssue]) -> None:
    if issues:
        err.print(f"[yellow]warning:[/] skipped {len(issues)} row(s) that could not be used:")
        for issue in issues[:20]:
            err.print(f"  {escape(str(issue))}")
        if len(issues) > 20:
            err.print(f"  … and {len(issues) - 20} more (all are listed in --report/--json output)")


def _ensure_writable_dir(d: Path, option: str) -> None:
    """Create d (and parents) or fail clearly, before a long run rather than after it."""
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        fail(f"{option}: cannot create {d} ({e}); pass a writable path")
    if not os.access(d, os.W_OK):
        fail(f"{option}: {d} is not writable; pass a writable path")


def _engine(judge: str) -> Any:
    """One JudgeEngine (one reply cache) for the whole run; a bad spec or a judge that cannot start is a
    clear error (exit 2), never a traceback."""
    from tutor.judge import JudgeSpecError, resolve_judge
    from tutor.judge.engine import JudgeEngine

    try:
        return JudgeEngine(resolve_judge(judge))
    except JudgeSpecError as e:
        fail(f"--judge {judge!r}: {e}")
    except Exception as e:  # model not set up, SDK missing, server down: say so
        fail(f"--judge {judge!r}: cannot start the judge: {e}")


def _grade_fn(judge: str | None, grader: Any) -> Any:
    if judge is None:
        return grader.grade
    from tutor.judge.fuse import grade_with_judge

    engine = _engine(judge)
    return lambda q, a: grade_with_judge(q, a, engine, grader)


@app.command("eval")
def eval_cmd(
    files: FilesArg,
    judge: Annotated[
        str | None, typer.Option(help="Also grade with an LLM judge, e.g. 'ollama:qwen2.5'.")
    ] = None,
    report: Annotated[Path | None, typer.Option(help="Write report.json, report.md and plots here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")] = False,
    label_map: LabelMapOpt = None,
    preset: PresetOpt = None,
    split: Annotated[str | None, typer.Option(help="Only rows of this split: train or test.")] = None,
    thresholds: Annotated[
        Path | None, typer.Option(help="Calibration file to grade with (default: evals/calibration.json).")
    ] = None,
    cache: Annotated[
        bool,
        typer.Option(help="Cache answer embeddings on disk (fast reruns; latency then excludes embedding)."),
    ] = False,
    sample: Annotated[
        int | None,
        typer.Option(help="Grade only N rows, drawn with the gold label mix kept (for slow judge runs)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for --sample.")] = 0,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    graded: Annotated[
        Path | None,
        typer.Option(
            metavar="OUT",
            help="Score the grades in this `tutor grade-batch` output (matched by id) instead of grading.",
        ),
    ] = None,
    grader_name: Annotated[
        str | None,
        typer.Option(
            "--grader", help="learned (the trained model) or embedding; default: TUTOR_GRADER or learned."
        ),
    ] = None,
) -> None:
    """Measure the grader against labelled answers: QWK, accuracy, F1, confusion matrix, latency."""
    from tutor.grader import GRADERS

    if grader_name is not None and grader_name not in GRADERS:
        fail(f"--grader {grader_name!r}: use one of {', '.join(GRADERS)}")
    if sample is not None and sample <= 0:
        fail(f"--sample must be a positive number of rows, not {sample}")
    if graded is not None:
        if judge is not None or thresholds is not None or cache:
            fail("--graded scores grades already made; --judge, --thresholds and --cache apply to grading")
        if not graded.is_file():
            fail(f"--graded {graded}: no such file")
    if report is not None:
        _ensure_writable_dir(report, "--report")
    res = _load(files, preset, label_map, split)
    n_loaded = len(res.rows)
    if sample is not None:
        res.rows = stratified_sample(res.rows, sample, seed)
    from tutor.evals import runner
    from tutor.evals.report import write_report
    from tutor.grader import load_thresholds
    from tutor.paths import GraderUnavailable

    if thresholds is not None and not thresholds.is_file():
        fail(f"--thresholds {thresholds}: no such file")
    try:
        t = load_thresholds(thresholds)
    except GraderUnavailable as e:
        fail(str(e))
    if graded is not None:
        results, missing = runner.from_graded(res.rows, graded)
        _warn_issues(missing)
        res.issues += missing
        if not results:
            fail(f"--graded {graded}: no row of {', '.join(map(str, files))} has a grade there")
        wall, batch = 0.0, False
    else:
        batch = cache or len(res.rows) > runner.BATCH_EMBED_ABOVE
        try:
            grader = runner.make_grader(t, cache_answers=batch, kind=grader_name)
        except GraderUnavailable as e:
            fail(str(e))
        if batch:
            runner.prefetch(grader, res.rows, progress=progress)
        results, wall = runner.run(res.rows, _grade_fn(judge, grader), progress=progress)
    rep = runner.build_report(results, wall, embeddings_cached=batch)
    if graded is not None:  # graded elsewhere: no latency to report
        rep["latency"] = {"p50_ms": None, "p95_ms": None, "answers_per_s": None, "graded_file": str(graded)}
    rep["files"] = [str(f) for f in files]
    rep["split"] = split
    rep["sample"] = {"n": len(res.rows), "of": n_loaded, "seed": seed} if sample is not None else None
    rep["grader"] = f"graded file {graded}" if graded is not None else grader.name
    rep["thresholds_version"] = t.version
    rep["thresholds"] = t.model_dump()
    rep["issues"] = [str(i) for i in res.issues]
    rep["skipped_by_split"] = res.skipped_by_split
    if report is not None:
        by_label: dict[str, list[float]] = {}
        for r in results:
            by_label.setdefault(r.row.label, []).append(r.grade.score)
        paths = write_report(report, rep, by_label, (t.partial, t.correct))
        if not as_json:
            out.print(f"report written: {', '.join(str(p) for p in paths)}")
    if as_json:
        print(json.dumps(rep, indent=2, ensure_ascii=False))
        return
    _render(rep)


def _fmt(x: Any) -> str:
    return "–" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)


def _render(rep: dict[str, Any]) -> None:
    ci, base, tw = rep["ci95"], rep["baseline_constant"], rep["two_way"]
    tab = Table(title=f"{rep['n']} answers, thresholds {rep['thresholds_version']}")
    tab.add_column("metric")
    tab.add_column("value", justify="right")
    tab.add_column("95% CI")
    tab.add_column("constant baseline", justify="right")
    tab.add_row("QWK", _fmt(rep["qwk"]), f"{_fmt(ci['qwk'][0])}–{_fmt(ci['qwk'][1])}", _fmt(base["qwk"]))
    tab.add_row(
        "accuracy",
        _fmt(rep["accuracy"]),
        f"{_fmt(ci['accuracy'][0])}–{_fmt(ci['accuracy'][1])}",
        _fmt(base["accuracy"]),
    )
    tab.add_row("macro-F1", _fmt(rep["macro_f1"]), "", _fmt(base["macro_f1"]))
    tab.add_row("Cohen's kappa", _fmt(rep["kappa"]), "", "")
    tab.add_row("2-way accuracy / weighted F1", f"{_fmt(tw['accuracy'])} / {_fmt(tw['weighted_f1'])}", "", "")
    tab.add_row("Spearman(score, label)", _fmt(rep["spearman_score_vs_label"]), "", "")
    if rep.get("numeric"):
        tab.add_row(
            "Pearson / RMSE vs gold score",
            f"{_fmt(rep['numeric']['pearson'])} / {_fmt(rep['numeric']['rmse'])}",
            "",
            "",
        )
    lat = rep["latency"]
    judge = rep.get("judge") or {}
    cached = " (judge replies from its cache)" if judge.get("cached_calls") else ""
    tab.add_row(f"latency p50 / p95 (ms){cached}", f"{_fmt(lat['p50_ms'])} / {_fmt(lat['p95_ms'])}", "", "")
    tab.add_row("answers/s", _fmt(lat["answers_per_s"]), "", "")
    out.print(tab)
    cm = Table(title="confusion (rows gold, columns predicted)")
    cm.add_column("gold")
    for lab in rep["confusion"]["labels"]:
        cm.add_column(lab, justify="right")
    for lab, row in zip(rep["confusion"]["labels"], rep["confusion"]["matrix"], strict=True):
        cm.add_row(lab, *map(str, row))
    out.print(cm)
    if rep.get("judge"):

        def show(v: Any) -> str:
            return " ".join(f"{k}={_fmt(x)}" for k, x in v.items()) if isinstance(v, dict) else _fmt(v)

        out.print("judge: " + ", ".join(f"{k} {show(v)}" for k, v in rep["judge"].items() if v is not None))
        if rep["judge"].get("latency_source") in ("reply cache", "mixed"):
            out.print(f"[yellow]judge latency: {escape(rep['judge']['latency_note'])}[/]")


@app.command()
def calibrate(
    files: FilesArg,
    split: Annotated[
        str | None, typer.Option(help="Fit on this split only (golden rows: 'train').")
    ] = "train",
    label_map: LabelMapOpt = None,
    preset: PresetOpt = None,
    grid: Annotated[
        bool, typer.Option(help="Also grid-search cover_full, cover_min, reference_weight.")
    ] = False,
    judge: Annotated[
        str | None,
        typer.Option(help="Also fit judge_weight and the inconsistent-orders rule with this judge."),
    ] = None,
    judge_sample: Annotated[
        int | None,
        typer.Option(help="Run the judge on only N train rows (label mix kept, seed 0): it is slow."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Where to write (default: evals/calibration.json in a checkout, "
            "TUTOR_HOME/calibration.json for an installed package).",
        ),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Fit the verdict thresholds on labelled train rows; grading then uses them by default."""
    if judge_sample is not None and judge_sample <= 0:
        fail(f"--judge-sample must be a positive number of rows, not {judge_sample}")
    res = _load(files, preset, label_map, split)
    from tutor.evals import calibrate as C
    from tutor.evals import runner
    from tutor.grader import Thresholds
    from tutor.paths import calibration_out_path, calibration_path

    output = output or calibration_out_path()
    if output.is_dir():
        fail(f"--out {output} is a directory; pass a file path such as {output / 'calibration.json'}")
    _ensure_writable_dir(output.parent, f"--out {output}")  # before fitting: a judge fit takes long
    # Calibration fits the embedding grader's own cut-offs (the learned model has its own, from make train).
    grader = runner.make_embedding_grader(Thresholds(), cache_answers=True)
    runner.prefetch(grader, res.rows, progress=progress)
    engine = _engine(judge) if judge is not None else None
    previous = output if output.exists() else calibration_path()
    t, info = C.calibrate(res.rows, grader, grid, engine, judge_sample, previous)
    try:
        t = C.write_calibration(output, t, info, [str(f) for f in files], split)
    except OSError as e:
        fail(f"--out {output}: cannot write the calibration file ({e}); pass a writable path")
    b, a = info["train_before"], info["train_after"]
    out.print(
        f"calibrated on {info['n']} {split or 'all'} rows: "
        f"partial >= {t.partial:.2f}, correct >= {t.correct:.2f}"
        + ("".join(f", {k} {getattr(t, k)}" for k in C.DEFAULT_GRID) if grid else "")
        + (
            f", judge_weight {t.judge_weight}, inconsistent orders -> {t.judge_inconsistent}"
            f" (on {info['judge_rows']} rows)"
            if judge
            else f", judge settings kept from {info['judge_kept_from']}"
            if "judge_kept_from" in info
            else ""
        )
        + f"\ntrain QWK {_fmt(b['qwk'])} -> {_fmt(a['qwk'])}, accuracy {_fmt(b['accuracy'])} -> "
        f"{_fmt(a['accuracy'])}\nwrote {output} ({t.version})"
    )
