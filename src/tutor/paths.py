"""Where things live: the user data dir (behind ``TUTOR_HOME``) and the packaged content."""

from __future__ import annotations

import os
from pathlib import Path

_PKG = Path(__file__).resolve().parent


def tutor_home() -> Path:
    """User data dir: progress database, caches, the judge model. ``TUTOR_HOME`` overrides it."""
    env = os.environ.get("TUTOR_HOME")
    if env:
        home = Path(env).expanduser()
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
        home = base / "tutor"
    home.mkdir(parents=True, exist_ok=True)
    return home


def cache_dir() -> Path:
    d = tutor_home() / "cache"
    d.mkdir(parents=True, exist_ok=True)
    return d


def models_dir() -> Path:
    """Derived model files (the ONNX export). ``TUTOR_MODELS`` overrides it, so tests can share one build."""
    env = os.environ.get("TUTOR_MODELS")
    d = Path(env).expanduser() if env else tutor_home() / "models"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _content_dir(name: str) -> Path:
    # A wheel carries the content inside the package (hatch force-include); an editable install
    # or a source checkout finds it at the repository root.
    for candidate in (_PKG / name, _PKG.parent.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"cannot find the {name}/ directory next to the tutor package ({_PKG})")


def rubrics_dir() -> Path:
    env = os.environ.get("TUTOR_RUBRICS")
    return Path(env) if env else _content_dir("rubrics")


def prompts_dir() -> Path:
    return _content_dir("prompts")


class GraderUnavailable(ValueError):
    """A file grading needs cannot be used; the message names the file and how to fix it."""


class CalibrationError(GraderUnavailable):
    """The calibration file exists but cannot be used; the message names the file and the field."""


class ModelFileError(GraderUnavailable):
    """The trained grader's files are missing, damaged or from another version."""


def calibration_path() -> Path:
    """The fitted thresholds grading uses by default: where `tutor calibrate` writes (evals/calibration.json
    in a checkout, the user's own fit for an installed package), else, in a wheel, the calibration shipped
    inside the package. The path may not exist yet."""
    own, packaged = calibration_out_path(), _PKG / "calibration.json"
    return packaged if packaged.is_file() and not own.is_file() else own


def calibration_out_path() -> Path:
    """Where `tutor calibrate` writes by default: evals/calibration.json in a checkout; in a wheel, the user
    data dir, never the installed package (read-only for many installs, and replaced on every upgrade)."""
    if (_PKG / "calibration.json").is_file():
        return tutor_home() / "calibration.json"
    return _PKG.parent.parent / "evals" / "calibration.json"
