"""Where things live: the user data dir (behind ``TUTOR_HOME``) and the packaged content."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_PKG = Path(__file__).resolve().parent


class DataDirError(Exception):
    """The user data dir (``TUTOR_HOME``) or a directory under it cannot be created or written. The message
    names the variable, the path and what to do; every command turns it into a one-line error (exit 2)."""


DEFAULT_HOME_HINT = "~/.local/share/tutor"


def home_source() -> tuple[Path, str]:
    """The data dir and how the learner chose it (for error messages)."""
    env = os.environ.get("TUTOR_HOME")
    if env:
        return Path(env).expanduser(), f"TUTOR_HOME={env}"
    xdg = os.environ.get("XDG_DATA_HOME")
    if xdg:
        return Path(xdg) / "tutor", f"the data directory from XDG_DATA_HOME={xdg} (TUTOR_HOME is not set)"
    return Path.home() / ".local" / "share" / "tutor", "the default data directory (TUTOR_HOME is not set)"


_WRITABLE: set[Path] = set()  # directories this process has already written a probe file to


def usable_dir(d: Path, source: str, var: str = "TUTOR_HOME") -> Path:
    """`d`, created if missing; DataDirError (naming `source`, e.g. "TUTOR_HOME=/x") if it cannot be created
    or written. Writing is checked by creating and removing a probe file once per process: permission bits
    alone say nothing for root, nor for a read-only mount or a pseudo file system."""
    fix = (
        f"tutor keeps progress and caches there; set TUTOR_HOME to a directory you can write to "
        f"(or unset it to use {DEFAULT_HOME_HINT})."
        if var == "TUTOR_HOME"
        else f"Set {var} to a directory you can write to, or unset it."
    )
    if d.exists() and not d.is_dir():
        raise DataDirError(f"{source}: {d} is not a directory. {fix}")
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataDirError(f"{source}: cannot create the directory {d} ({e.strerror or e}). {fix}") from None
    if d not in _WRITABLE:
        try:
            fd, probe = tempfile.mkstemp(prefix=".tutor-write-check-", dir=d)
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            raise DataDirError(f"{source}: cannot write in {d} ({e.strerror or e}). {fix}") from None
        _WRITABLE.add(d)
    return d


def tutor_home() -> Path:
    """User data dir: progress database, caches, the judge model. ``TUTOR_HOME`` overrides it.
    Raises DataDirError when it cannot be created or written."""
    home, source = home_source()
    return usable_dir(home, source)


def cache_dir() -> Path:
    home = tutor_home()
    return usable_dir(home / "cache", f"{home_source()[1]} (its cache/ subdirectory)")


def models_dir() -> Path:
    """Derived model files (the ONNX export). ``TUTOR_MODELS`` overrides it, so tests can share one build."""
    env = os.environ.get("TUTOR_MODELS")
    if env:
        return usable_dir(Path(env).expanduser(), f"TUTOR_MODELS={env}", "TUTOR_MODELS")
    return usable_dir(tutor_home() / "models", f"{home_source()[1]} (its models/ subdirectory)")


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
