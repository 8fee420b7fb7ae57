"""The question bank: content invariants and loader errors that name file, question and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tutor.rubric import QuestionBank, RubricError, UnknownQuestion, json_schema, load_chapter_file

REPO = Path(__file__).resolve().parent.parent


def test_bank_has_all_forty_questions(bank):
    assert len(bank) == 40
    assert sorted(bank.chapters) == list(range(11, 21))
    for ch in range(11, 21):
        assert [q.id for q in bank.chapter(ch)] == [f"ch{ch}-{n}" for n in range(1, 5)]


def test_questions_are_open_and_complete(bank):
    for q in bank.questions:
        assert q.question.rstrip().endswith(("?", ".")), q.id
        assert 2 <= len(q.key_points) <= 4 and 1 <= len(q.misconceptions) <= 3 and 1 <= len(q.hints) <= 2
        # Multiple choice would defeat the point of free response.
        assert "(a)" not in q.question.lower() and "which of the following" not in q.question.lower()


def test_bf16_question_is_ch13_1(bank):
    assert "bf16" in bank.get("ch13-1").question


def test_seed_error_on_token_storage_is_corrected(bank):
    q = bank.get("ch11-3")
    assert q.numeric is not None
    assert q.numeric.unit.lower() == "tb"
    assert q.numeric.value == pytest.approx(60, rel=0.01)
    # The seed's 30 TB (uint16) must not be within tolerance of any accepted value.
    assert not any(abs(30 - v) <= q.numeric.tolerance * v for v in [q.numeric.value, *q.numeric.also_accept])
    assert q.note and "uint16" in q.note
    # The wrong seed answer is kept as a misconception the grader can recognise.
    assert any("30" in " ".join(m.phrasings) or "uint16" in " ".join(m.phrasings) for m in q.misconceptions)


def test_numeric_questions_have_checks(bank):
    assert bank.get("ch12-4").numeric is not None
    assert bank.get("ch12-4").numeric.value == pytest.approx(8.75, rel=0.01)


def test_unknown_id_suggests_close_ids(bank):
    with pytest.raises(UnknownQuestion) as e:
        bank.get("ch13-11")
    # The suggestion list itself, not the message (which repeats the bad id and so contains "ch13-1").
    assert e.value.suggestions[0] == "ch13-1"
    assert "Did you mean: ch13-1" in str(e.value)


def test_published_schema_is_current():
    published = json.loads((REPO / "rubrics" / "rubric.schema.json").read_text())
    assert published == json_schema()


def _write(tmp_path: Path, data) -> Path:
    p = tmp_path / "ch13.yaml"
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return p


def _valid_chapter() -> dict:
    good = yaml.safe_load((REPO / "rubrics" / "ch13.yaml").read_text())
    good["questions"] = good["questions"][:1]
    return good


def test_unknown_field_names_file_question_and_field(tmp_path):
    data = _valid_chapter()
    data["questions"][0]["key_points"][0]["txet"] = "typo"
    with pytest.raises(RubricError) as e:
        load_chapter_file(_write(tmp_path, data))
    msg = str(e.value)
    assert "ch13.yaml" in msg and "ch13-1" in msg and "key_points[0].txet" in msg and "unknown field" in msg


def test_missing_field_is_named(tmp_path):
    data = _valid_chapter()
    del data["questions"][0]["reference"]
    with pytest.raises(RubricError, match=r"question ch13-1, field reference: Field required"):
        load_chapter_file(_write(tmp_path, data))


def test_too_many_key_points(tmp_path):
    data = _valid_chapter()
    kp = data["questions"][0]["key_points"][0]
    data["questions"][0]["key_points"] = [dict(kp, id=f"k{i}") for i in range(5)]
    with pytest.raises(RubricError, match=r"field key_points: List should have at most 4 items"):
        load_chapter_file(_write(tmp_path, data))


def test_wrong_id_for_position(tmp_path):
    data = _valid_chapter()
    data["questions"][0]["id"] = "ch13-2"
    with pytest.raises(RubricError, match=r"expected 'ch13-1'"):
        load_chapter_file(_write(tmp_path, data))


def test_malformed_yaml_and_empty_dir(tmp_path):
    with pytest.raises(RubricError, match=r"ch13.yaml: not valid YAML"):
        load_chapter_file(_write(tmp_path, "chapter: 13\nquestions: [\n"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RubricError, match="no rubric files"):
        QuestionBank.load(empty)


def test_validate_command_reports_broken_file_without_traceback(tmp_path):
    from typer.testing import CliRunner

    from tutor.cli import app

    data = _valid_chapter()
    data["questions"][0]["hints"] = []
    _write(tmp_path, data)
    result = CliRunner().invoke(app, ["validate", str(tmp_path)])
    assert result.exit_code == 2
    assert "hints" in result.output and "Traceback" not in result.output


def test_every_question_has_one_required_core_point(bank):
    # LABELING.md: a correct answer must make the core claim (the rubric's first key point) and may skip
    # the supporting points; the rubric's roles say exactly that.
    for q in bank.questions:
        assert [k.role for k in q.key_points] == ["required"] + ["supporting"] * (len(q.key_points) - 1), q.id


def test_key_point_without_role_is_named(tmp_path):
    data = _valid_chapter()
    del data["questions"][0]["key_points"][1]["role"]
    with pytest.raises(RubricError, match=r"question ch13-1, field key_points\[1\]\.role: Field required"):
        load_chapter_file(_write(tmp_path, data))


def test_question_without_required_point_is_refused(tmp_path):
    data = _valid_chapter()
    for kp in data["questions"][0]["key_points"]:
        kp["role"] = "supporting"
    with pytest.raises(RubricError, match=r"ch13-1.*no key point has role 'required'"):
        load_chapter_file(_write(tmp_path, data))
