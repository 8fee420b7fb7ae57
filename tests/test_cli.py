"""The CLI forms scripts rely on: `tutor questions`, `tutor grade ... --json`, exit codes, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from typer.testing import CliRunner

from tutor.cli import app

runner = CliRunner()


def test_questions_json_lists_the_bank():
    result = runner.invoke(app, ["questions", "--json"])
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert len(rows) == 40 and {"id", "chapter", "question"} <= set(rows[0])


def test_questions_by_chapter_and_bad_chapter():
    rows = json.loads(runner.invoke(app, ["questions", "--chapter", "17", "--json"]).stdout)
    assert [r["id"] for r in rows] == ["ch17-1", "ch17-2", "ch17-3", "ch17-4"]
    bad = runner.invoke(app, ["questions", "--chapter", "3"])
    assert bad.exit_code == 2 and "no chapter 3" in bad.output


def test_grade_json_has_the_documented_fields():
    answer = (
        "bf16 keeps the 8-bit exponent of fp32, so it covers the same range and gradients do not underflow."
    )
    result = runner.invoke(app, ["grade", "ch13-1", answer, "--json"])
    assert result.exit_code == 0, result.output
    g = json.loads(result.stdout)
    assert {"question_id", "score", "verdict", "covered", "missed", "misconceptions", "feedback"} <= set(g)
    assert g["question_id"] == "ch13-1" and 0 <= g["score"] <= 1
    # A clear, complete paraphrase: anything but "correct" is a grading regression.
    assert g["verdict"] == "correct" and g["grader"].startswith("learned:")
    assert [c["id"] for c in g["covered"]][:1] == ["exponent_width"] and g["covered"][0]["required"]


def test_grade_reads_stdin():
    result = runner.invoke(app, ["grade", "ch13-1", "-", "--json"], input="no idea\n")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["verdict"] == "incorrect"


def test_unknown_id_exits_2_with_suggestions():
    result = runner.invoke(app, ["grade", "ch13-7", "anything"])
    assert result.exit_code == 2
    assert "unknown question id 'ch13-7'" in result.output and "Did you mean: ch13-" in result.output


def test_empty_answer_is_incorrect_with_zero_score():
    g = json.loads(runner.invoke(app, ["grade", "ch13-1", "   \n ", "--json"]).stdout)
    assert g["verdict"] == "incorrect" and g["score"] == 0 and "Nothing was answered" in g["feedback"]


def test_invalid_utf8_on_stdin_is_a_clear_error():
    result = runner.invoke(app, ["grade", "ch13-1", "-"], input=b"bf16 \xff\xfe range")
    assert result.exit_code == 2 and "not valid UTF-8" in result.output


def test_very_long_answer_is_truncated_and_flagged():
    long = "bf16 has the same exponent width as fp32, so its dynamic range is the same. " * 200
    g = json.loads(runner.invoke(app, ["grade", "ch13-1", long, "--json"]).stdout)
    assert "truncated" in g["flags"] and "first 5000 characters" in g["feedback"]


def test_human_output_shows_feedback_and_reference():
    wrong = "bf16 is safer because it has more mantissa bits, so it is more precise than fp16."
    result = runner.invoke(app, ["grade", "ch13-1", wrong])
    assert result.exit_code == 0
    assert "Reference explanation" in result.output and "INCORRECT" in result.output
    assert "bf16 has fewer mantissa bits (7 vs 10) and is less precise" in result.output  # the correction


def test_installed_console_script_runs():
    exe = os.path.join(os.path.dirname(sys.executable), "tutor")
    out = subprocess.run([exe, "questions", "--json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and len(json.loads(out.stdout)) == 40
