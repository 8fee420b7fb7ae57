"""A data dir (TUTOR_HOME) that cannot be created or written: every command that uses it ends with one line
that names the variable and the path (exit 2), never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tutor import paths
from tutor.cli import app

GOLDEN = Path(__file__).resolve().parent.parent / "evals" / "golden.jsonl"

# Every command that reads or writes the data dir, with arguments that would otherwise work.
COMMANDS = [
    ["grade", "ch13-1", "bf16 keeps fp32's exponent bits, so gradients do not underflow."],
    ["grade", "ch13-1", "bf16 keeps fp32's exponent bits.", "--judge", "fake:correct"],
    ["study", "--new", "1"],
    ["progress"],
    ["history", "ch13-1"],
    ["flags", "export", "-"],
    ["eval", str(GOLDEN), "--split", "test", "--sample", "3"],
    ["calibrate", str(GOLDEN), "--out", "{tmp}/calibration.json"],
    ["judge", "setup"],
    ["judge", "path"],
    ["judge", "serve", "--port", "0"],
    ["web", "--port", "0"],
    ["train", "--out", "{tmp}/model", "--no-test"],
]


def impossible_homes(tmp_path: Path) -> dict[str, Path]:
    """Paths no process can make a directory of, whoever runs the tests (root included)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    homes = {"under a file": blocker / "home", "a file": blocker}
    if Path("/proc/self").is_dir():  # Linux: /proc takes no new entries, even from root
        homes["under /proc"] = Path("/proc/tutor-no-such-dir/home")
    return homes


def assert_clear_error(output: str, home: Path, exit_code: int) -> None:
    assert exit_code == 2, output
    assert "Traceback" not in output
    assert f"TUTOR_HOME={home}" in output and "error:" in output
    assert "set TUTOR_HOME to a directory you can write to" in output


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_every_command_names_an_impossible_tutor_home(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TUTOR_MODELS", raising=False)  # the ONNX model would live in TUTOR_HOME too
    for why, home in impossible_homes(tmp_path).items():
        monkeypatch.setenv("TUTOR_HOME", str(home))
        res = CliRunner().invoke(app, [a.replace("{tmp}", str(tmp_path)) for a in args], input="")
        assert res.exception is None or isinstance(res.exception, SystemExit), (why, res.exception)
        assert_clear_error(res.output, home, res.exit_code)


def test_commands_that_do_not_use_the_data_dir_still_work(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TUTOR_HOME", str(tmp_path / "a-file" / "home"))
    (tmp_path / "a-file").write_text("")
    for args in (["questions", "--chapter", "13"], ["validate"], ["schema"], ["grade", "--help"]):
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.output


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes anywhere")
def test_a_read_only_tutor_home_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        for home in (ro, ro / "sub"):  # the dir itself, and a dir that would have to be made inside it
            monkeypatch.setenv("TUTOR_HOME", str(home))
            res = CliRunner().invoke(app, ["progress"])
            assert_clear_error(res.output, home, res.exit_code)
    finally:
        ro.chmod(0o700)


def test_the_write_check_reports_an_unwritable_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe file is what decides (permission bits do not stop root): a failing write is named."""

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(paths.tempfile, "mkstemp", refuse)
    with pytest.raises(paths.DataDirError, match=r"TUTOR_HOME=x: cannot write in .*Permission denied"):
        paths.usable_dir(tmp_path / "fresh", "TUTOR_HOME=x")


def test_a_file_where_the_cache_dir_goes_is_named(tutor_home: Path) -> None:
    (tutor_home / "cache").write_text("")
    with pytest.raises(paths.DataDirError) as e:
        paths.cache_dir()
    assert f"TUTOR_HOME={tutor_home}" in str(e.value) and f"{tutor_home / 'cache'} is not a directory" in str(
        e.value
    )


def test_tutor_grade_in_a_real_process(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    home = blocker / "home"
    env = {**os.environ, "TUTOR_HOME": str(home)}
    env.pop("TUTOR_MODELS", None)
    tutor = Path(sys.executable).parent / "tutor"
    r = subprocess.run(
        [str(tutor), "grade", "ch13-1", "bf16 keeps fp32's exponent bits."],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.stdout == ""
    assert_clear_error(r.stderr, home, r.returncode)
    assert r.stderr.count("\n") <= 2  # one message (rich may wrap it once), not a traceback


def test_an_unusable_tutor_models_is_named_as_such(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("TUTOR_MODELS", str(tmp_path / "a-file" / "models"))
    with pytest.raises(paths.DataDirError, match=r"^TUTOR_MODELS=.*Set TUTOR_MODELS to a directory"):
        paths.models_dir()
