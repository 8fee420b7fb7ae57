"""`tutor grade-batch --engine ray`: the same grades as the local engine, with the same resume contract."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.conftest import REPO
from tutor.cli import app

GOLDEN = REPO / "evals" / "golden.jsonl"


def _ray():
    # In CI (`make test` installs the `scale` extra) a Ray that cannot be imported is a failure, not a skip.
    if os.environ.get("CI"):
        import ray

        return ray
    return pytest.importorskip("ray")


def _input(tmp_path: Path) -> tuple[Path, int]:
    golden = GOLDEN.read_text().splitlines()[::4]  # 180 answers over every question and kind
    inline = [
        json.dumps(
            {
                "id": f"inline-{i}",
                "question_id": f"water-{i % 3}",
                "question": f"Why does ice float on water? ({i % 3})",
                "reference_answers": ["Ice is less dense than liquid water, so it floats."],
                "answer": answer,
                "label": "correct" if i % 2 else "incorrect",
            }
        )
        for i, answer in enumerate(
            [
                "Ice is less dense than water.",
                "Because ice is heavier than water.",
                "Water expands when it freezes, so ice has a lower density and floats.",
                "",
                "I don't know",
                "Ice floats. It is less dense than water.",
            ]
            * 3
        )
    ]
    bad = ["not json", '{"id": "q?", "question_id": "ch99-9", "answer": "a"}', '{"id": "no-answer"}']
    lines = golden + inline[:9] + bad + inline[9:]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path, len(lines)


def _canonical(path: Path) -> list[str]:
    return sorted(json.dumps(json.loads(line), sort_keys=True) for line in path.read_bytes().splitlines())


@pytest.mark.slow
def test_ray_engine_gives_the_local_grades_and_resumes(tmp_path: Path, bank):
    _ray()
    from tutor.batch import grade_file

    src, n = _input(tmp_path)
    local = tmp_path / "local.jsonl"
    s_local = grade_file(src, local, bank=bank)
    assert (s_local.rows, s_local.graded, s_local.errors) == (n, n - 3, 3)

    # Ray resumes an OUT that an interrupted run left: 40 grades and a cut-short line.
    on_ray = tmp_path / "ray.jsonl"
    done = local.read_bytes().splitlines(keepends=True)[:41]
    done = [x for x in done if b'"error"' not in x][:40]
    on_ray.write_bytes(b"".join(done) + done[0][:25])
    s_ray = grade_file(src, on_ray, bank=bank, engine="ray", num_actors=2, batch_size=16)
    assert (s_ray.rows, s_ray.skipped, s_ray.graded, s_ray.errors) == (n, 40, n - 43, 3)
    # Every row exactly once, and every one equal to the local engine's (rows come back in actor order).
    assert _canonical(on_ray) == _canonical(local)
    assert not list(tmp_path.glob(".*pending*")), "the staged rows are removed"


def test_actors_grade_with_the_drivers_grader_or_refuse(bank, monkeypatch):
    """A remote cluster's workers do not inherit the driver's environment: TUTOR_GRADER=embedding must travel
    in the actors' config, and a worker whose grader differs from the driver's (another trained model) must
    refuse to grade. No Ray needed: the config and the actor class are plain Python."""
    from tutor.batch.ray_engine import GradeActor, actor_config

    monkeypatch.delenv("TUTOR_ONNX_THREADS", raising=False)  # the actor sets it; undone after the test
    monkeypatch.setenv("TUTOR_GRADER", "embedding")
    cfg = actor_config(bank, None, None, 1, remote=True)
    assert cfg["env"]["TUTOR_GRADER"] == "embedding" and cfg["grader"].startswith("embedding:")
    monkeypatch.setenv("TUTOR_GRADER", "learned")  # the worker's own setting; the config must win
    actor = GradeActor(cfg)
    row = json.loads(GOLDEN.read_text().splitlines()[0])
    out = actor({"line": np.array([1]), "row": np.array([json.dumps(row)])})
    assert json.loads(str(out["out"][0]))["grader"] == cfg["grader"]

    with pytest.raises(RuntimeError, match="same tutor"):
        GradeActor({**cfg, "grader": "learned:some-other-model"})


def test_engine_ray_without_ray_installed_says_how_to_get_it(tmp_path: Path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    src = tmp_path / "in.jsonl"
    src.write_text(GOLDEN.read_text().splitlines()[0] + "\n")
    res = CliRunner().invoke(
        app, ["grade-batch", str(src), "--out", str(tmp_path / "o.jsonl"), "--engine", "ray"]
    )
    assert res.exit_code == 2 and "pip install 'tutor[scale]'" in res.output
