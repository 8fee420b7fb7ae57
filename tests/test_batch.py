"""`tutor grade-batch`, local engine: error rows, duplicates, resuming after kill -9, streaming, summary,
--strict, the judge path, and `tutor eval --graded`."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from typer.testing import CliRunner

from tests.conftest import REPO
from tutor.cli import app

runner = CliRunner()
TUTOR = os.path.join(os.path.dirname(sys.executable), "tutor")
GOLDEN = REPO / "evals" / "golden.jsonl"


def golden_lines(n: int, start: int = 0) -> list[str]:
    return GOLDEN.read_text().splitlines()[start : start + n]


def write(path: Path, lines: list[str | bytes]) -> Path:
    path.write_bytes(b"".join((x if isinstance(x, bytes) else x.encode()) + b"\n" for x in lines))
    return path


def read_out(path: Path) -> list[dict]:
    data = path.read_bytes()
    assert data.endswith(b"\n"), "OUT must end with a complete line"
    return [json.loads(line) for line in data.splitlines()]


def expected_grade(bank, qid: str, answer: str) -> dict:
    """What `tutor grade QID ANSWER --json` prints."""
    res = runner.invoke(app, ["grade", qid, answer, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


BAD_ROWS: list[str | bytes] = [
    "this is not json",
    '{"id": "unknown-q", "question_id": "ch99-1", "answer": "anything"}',
    '{"id": "no-answer", "question_id": "ch13-1"}',
    b'{"id": "latin1", "question_id": "ch13-1", "answer": "caf\xe9"}',
    '{"id": "num-answer", "question_id": "ch13-1", "answer": 42}',
    '["a", "list"]',
    '{"id": "half-inline", "question_id": "x", "question": "Why?", "answer": "because"}',
]


def test_error_rows_name_line_and_reason_and_the_run_goes_on(tmp_path: Path, bank):
    good = golden_lines(3)
    inline = json.dumps(
        {
            "id": 7,
            "question_id": "ice",
            "question": "Why does ice float on water?",
            "reference_answers": ["Ice is less dense than liquid water."],
            "answer": "Ice floats because it is less dense than water.",
            "label": "correct",
        }
    )
    src = write(tmp_path / "in.jsonl", [good[0], *BAD_ROWS[:4], "", good[1], *BAD_ROWS[4:], inline, good[2]])
    out = tmp_path / "out.jsonl"
    res = runner.invoke(app, ["grade-batch", str(src), "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = read_out(out)
    assert len(rows) == 11  # one row per non-blank input line, in input order
    errors = {r["line"]: r for r in rows if "error" in r}
    assert set(errors) == {2, 3, 4, 5, 8, 9, 10}
    assert "not valid JSON" in errors[2]["error"] and errors[2]["id"] is None
    assert "unknown question id 'ch99-1'" in errors[3]["error"] and errors[3]["id"] == "unknown-q"
    assert errors[4]["error"] == "missing field(s): answer" and errors[4]["id"] == "no-answer"
    assert "not UTF-8" in errors[5]["error"]
    assert "field 'answer' must be a string" in errors[8]["error"]
    assert "JSON object" in errors[9]["error"]
    assert "reference_answers" in errors[10]["error"]
    graded = [r for r in rows if "verdict" in r]
    assert [r["id"] for r in graded] == ["g-ch11-1-01", "g-ch11-1-02", 7, "g-ch11-1-03"]
    # Each graded row is what `tutor grade --json` prints, plus the id and the label.
    first = json.loads(good[0])
    assert graded[0] == {
        "id": first["id"],
        **expected_grade(bank, first["question_id"], first["answer"]),
        "label": first["label"],
    }
    assert graded[2]["question_id"] == "ice" and graded[2]["label"] == "correct"
    summary = res.stdout.strip().splitlines()[-1]
    assert re.search(r"11 rows: 4 graded, 7 errors, 0 already in OUT; [\d.]+ s, [\d.]+ answers/s", summary)

    # A rerun grades nothing again, checks the bad lines again (no duplicate error rows), and --strict
    # turns the errors into exit code 1.
    again = runner.invoke(app, ["grade-batch", str(src), "--out", str(out), "--strict"])
    assert again.exit_code == 1
    assert "11 rows: 0 graded, 7 errors, 4 already in OUT" in again.stdout
    assert Counter(r.get("line") for r in read_out(out) if "error" in r) == Counter(list(errors))
    assert len(read_out(out)) == 11


def test_strict_exits_zero_without_errors(tmp_path: Path):
    src = write(tmp_path / "in.jsonl", golden_lines(2))
    res = runner.invoke(app, ["grade-batch", str(src), "--out", str(tmp_path / "o.jsonl"), "--strict"])
    assert res.exit_code == 0, res.output


def test_a_fixed_line_is_graded_on_the_rerun(tmp_path: Path):
    src = write(tmp_path / "in.jsonl", [golden_lines(1)[0], '{"id": "x", "question_id": "ch13-1"}'])
    out = tmp_path / "out.jsonl"
    runner.invoke(app, ["grade-batch", str(src), "--out", str(out)])
    write(
        src,
        [golden_lines(1)[0], '{"id": "x", "question_id": "ch13-1", "answer": "bf16 keeps the exponent."}'],
    )
    res = runner.invoke(app, ["grade-batch", str(src), "--out", str(out)])
    assert res.exit_code == 0 and "1 graded, 0 errors, 1 already in OUT" in res.stdout
    assert sorted(str(r["id"]) for r in read_out(out)) == ["g-ch11-1-01", "x"]
    assert all("verdict" in r for r in read_out(out))


def test_duplicate_ids_are_refused_before_grading(tmp_path: Path):
    lines = golden_lines(3)
    dup = json.loads(lines[0]) | {"answer": "another answer"}
    src = write(
        tmp_path / "in.jsonl",
        [
            *lines,
            json.dumps(dup),
            '{"id": 5, "question_id": "ch13-1", "answer": "a"}',
            '{"id": "5", "question_id": "ch13-1", "answer": "b"}',
        ],
    )
    out = tmp_path / "out.jsonl"
    res = runner.invoke(app, ["grade-batch", str(src), "--out", str(out)])
    assert res.exit_code == 2
    assert "2 id(s) appear more than once" in res.output
    assert "'g-ch11-1-01' on lines 1, 4" in res.output and "'5' on lines 5, 6" in res.output
    assert not out.exists()


def test_ids_with_equal_hashes_are_not_taken_for_duplicates(tmp_path: Path, monkeypatch):
    import tutor.batch.rows as R

    monkeypatch.setattr(R, "id_hash", lambda key: 42)  # every id collides
    rows = [{"id": i, "question_id": "ch13-1", "answer": "a"} for i in ("a", "b", "a", "c")]
    scan = R.scan_ids(write(tmp_path / "in.jsonl", [json.dumps(r) for r in rows]))
    assert scan.rows == 4 and scan.duplicates == {"a": [1, 3]}


def test_bad_arguments_are_clear_errors(tmp_path: Path):
    src = write(tmp_path / "in.jsonl", golden_lines(1))
    cases = [
        (["grade-batch", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o")], "no such file"),
        (["grade-batch", str(tmp_path), "--out", str(tmp_path / "o")], "is a directory"),
        (["grade-batch", str(src), "--out", str(src)], "must not be the input"),
        (["grade-batch", str(src), "--out", str(tmp_path)], "is a directory"),
        (["grade-batch", str(src), "--out", str(tmp_path / "o"), "--engine", "spark"], "--engine must be"),
        (["grade-batch", str(src), "--out", str(tmp_path / "o"), "--judge", "nope"], "unknown judge"),
    ]
    for args, message in cases:
        res = runner.invoke(app, args)
        assert res.exit_code == 2 and message in res.output, (args, res.output)


def test_an_unusable_grader_is_a_clear_error_before_out_is_touched(tmp_path: Path, monkeypatch):
    src = write(tmp_path / "in.jsonl", golden_lines(1))
    monkeypatch.setenv("TUTOR_GRADER", "nope")
    for engine in ("local", "ray"):
        res = runner.invoke(app, ["grade-batch", str(src), "--out", str(tmp_path / "o"), "--engine", engine])
        assert res.exit_code == 2 and "TUTOR_GRADER='nope' is not a grader" in res.output, res.output
    assert not (tmp_path / "o").exists()


def test_an_out_file_that_is_not_ours_is_refused(tmp_path: Path):
    src = write(tmp_path / "in.jsonl", golden_lines(2))
    out = write(tmp_path / "out.jsonl", ['{"some": "other file"}', '{"id": 1, "verdict": "correct"}'])
    res = runner.invoke(app, ["grade-batch", str(src), "--out", str(out)])
    assert res.exit_code == 2 and "out.jsonl:1: not a row written by `tutor grade-batch`" in res.output
    assert out.read_text().startswith('{"some"')  # left alone


def test_a_second_run_on_the_same_out_is_refused(tmp_path: Path):
    from tutor.batch.outfile import OutFile

    src = write(tmp_path / "in.jsonl", golden_lines(1))
    out = tmp_path / "out.jsonl"
    with OutFile(out):
        res = runner.invoke(app, ["grade-batch", str(src), "--out", str(out)])
    assert res.exit_code == 2 and "another `tutor grade-batch` is writing" in res.output
    assert runner.invoke(app, ["grade-batch", str(src), "--out", str(out)]).exit_code == 0


def test_a_cut_short_last_line_is_never_taken_for_a_grade(tmp_path: Path):
    lines = golden_lines(4)
    src = write(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    assert runner.invoke(app, ["grade-batch", str(src), "--out", str(out)]).exit_code == 0
    full = out.read_bytes().splitlines(keepends=True)
    # As if the run had been killed while writing the third row: two rows, then half of the third, which
    # parses as nothing, or even as a complete JSON object missing its newline.
    for torn in (full[2][: len(full[2]) // 2], full[2][:-1]):
        out.write_bytes(b"".join(full[:2]) + torn)
        res = runner.invoke(app, ["grade-batch", str(src), "--out", str(out)])
        assert res.exit_code == 0 and "2 graded, 0 errors, 2 already in OUT" in res.stdout, res.output
        assert "cut-short last line" in res.output
        assert out.read_bytes() == b"".join(full)


def test_resume_after_kill_9_grades_every_id_exactly_once(tmp_path: Path):
    n = 96
    lines = golden_lines(n, start=200)
    src = write(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    cmd = [TUTOR, "grade-batch", str(src), "--out", str(out), "--batch-size", "8", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not out.exists() or out.read_bytes().count(b"\n") < 16):
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    done_before = out.read_bytes().count(b"\n")
    assert 16 <= done_before < n, "the run should have been killed part-way"
    # What is in OUT after the kill reads as complete grades only (a torn tail is not counted).
    assert all("verdict" in json.loads(x) for x in out.read_bytes().split(b"\n")[:done_before])

    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert f"{n} rows: {n - done_before} graded, 0 errors, {done_before} already in OUT" in res.stdout
    rows = read_out(out)
    assert Counter(r["id"] for r in rows) == Counter(json.loads(x)["id"] for x in lines)
    assert all("verdict" in r and "error" not in r for r in rows)


class StubGrader:
    """Grades instantly, so a long stream tests the plumbing rather than the model."""

    def grade_many(self, items):
        from tutor.models import Grade

        return [
            Grade(question_id=q.id, score=0.5, verdict="partial", feedback="stub", grader="stub")
            for q, _ in items
        ]


def test_streaming_input_is_never_held(tmp_path: Path, bank):
    from tutor.batch import grade_stream
    from tutor.batch.engine import IN_FLIGHT
    from tutor.batch.scoring import Scorer

    n, batch = 20_000, 64
    state = {"yielded": 0, "written": 0, "most_ahead": 0}

    def lines():
        for i in range(n):
            state["most_ahead"] = max(state["most_ahead"], state["yielded"] - state["written"])
            state["yielded"] += 1
            yield (
                json.dumps({"id": f"r{i}", "question_id": "ch13-1", "answer": f"answer {i}"}).encode() + b"\n"
            )

    def progress(k: int) -> None:
        state["written"] += k

    out = tmp_path / "out.jsonl"
    summary = grade_stream(
        lines(), out, bank=bank, scorer=Scorer(StubGrader()), batch_size=batch, progress=progress
    )
    assert summary.rows == summary.graded == n and summary.errors == 0
    # The reader is never more than the batches being graded ahead of what is already written to OUT.
    assert state["most_ahead"] <= IN_FLIGHT * batch
    assert sum(1 for _ in out.open("rb")) == n


def test_a_stream_cannot_grade_an_id_twice(tmp_path: Path, bank):
    from tutor.batch import grade_stream
    from tutor.batch.scoring import Scorer

    rows = [{"id": i % 3, "question_id": "ch13-1", "answer": "a"} for i in range(5)]
    out = tmp_path / "out.jsonl"
    summary = grade_stream(
        (json.dumps(r).encode() for r in rows), out, bank=bank, scorer=Scorer(StubGrader()), batch_size=2
    )
    assert (summary.graded, summary.errors) == (3, 2)
    errs = [r for r in read_out(out) if "error" in r]
    assert [e["line"] for e in errs] == [4, 5] and "duplicate id 0 (first on line 1)" in errs[0]["error"]


def test_judge_rows_are_fused_like_tutor_grade(tmp_path: Path, bank):
    lines = golden_lines(3, start=40)
    src = write(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    res = runner.invoke(app, ["grade-batch", str(src), "--out", str(out), "--judge", "fake:partial"])
    assert res.exit_code == 0, res.output
    for line, row in zip(lines, read_out(out), strict=True):
        r = json.loads(line)
        one = runner.invoke(
            app, ["grade", r["question_id"], r["answer"], "--json", "--judge", "fake:partial"]
        )
        expected = json.loads(one.stdout)
        assert row["judge"]["judge"] == "fake:partial" and len(row["judge"]["calls"]) == 2
        # Timings differ run to run, and the second grading of an answer reads the judge's reply cache.
        for call in (*row["judge"]["calls"], *expected["judge"]["calls"]):
            call.update(latency_s=0, cached=False, requests=1)
        row["judge"]["latency_s"] = expected["judge"]["latency_s"] = 0
        assert {k: v for k, v in row.items() if k not in ("id", "label")} == expected


def test_eval_scores_a_graded_file(tmp_path: Path):
    lines = [x for x in GOLDEN.read_text().splitlines() if '"split": "test"' in x][:40]
    src = write(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    assert runner.invoke(app, ["grade-batch", str(src), "--out", str(out)]).exit_code == 0
    direct = json.loads(runner.invoke(app, ["eval", str(src), "--json", "--no-progress"]).stdout)
    scored = json.loads(runner.invoke(app, ["eval", str(src), "--graded", str(out), "--json"]).stdout)
    for key in ("n", "qwk", "accuracy", "macro_f1", "confusion", "verdict_counts", "per_group", "ci95"):
        assert scored[key] == direct[key], key
    assert scored["latency"]["graded_file"] == str(out)

    # A row OUT has no grade for, or an error row, is reported and left out of the metrics.
    kept = out.read_text().splitlines()
    gone = json.loads(kept[0])["id"]
    out.write_text("\n".join([json.dumps({"id": gone, "line": 1, "error": "boom"}), *kept[2:]]) + "\n")
    res = runner.invoke(app, ["eval", str(src), "--graded", str(out), "--json"])
    rep = json.loads(res.stdout)
    assert rep["n"] == 38
    assert any("not graded: boom" in i for i in rep["issues"])
    assert any("has no grade in" in i for i in rep["issues"])
    bad = runner.invoke(app, ["eval", str(src), "--graded", str(out), "--judge", "fake"])
    assert bad.exit_code == 2 and "--graded scores grades already made" in bad.output
