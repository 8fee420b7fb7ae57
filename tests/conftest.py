"""Test setup: user data never touches the real home, no model is fetched from a hub."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# One data dir for the whole session, so the rubric embedding cache is shared between tests. Tests that
# need an empty dir of their own use the `tutor_home` fixture.
os.environ["TUTOR_HOME"] = tempfile.mkdtemp(prefix="tutor-test-home-")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

REPO = Path(__file__).resolve().parent.parent
# The ONNX export is derived from the installed model package, so one build next to the venv serves every
# test session (instead of ~20 s of exporting in each fresh TUTOR_HOME).
os.environ.setdefault("TUTOR_MODELS", str(REPO / ".venv" / "tutor-models"))
SHARED = REPO.parent / "shared"


@pytest.fixture
def tutor_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TUTOR_HOME", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="session")
def bank():
    from tutor.rubric import default_bank

    return default_bank()


@pytest.fixture(scope="session")
def grader():
    from tutor.grader import get_grader

    return get_grader()


@pytest.fixture(autouse=True)
def _no_model_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reaches a model server by accident; tests that use a real local server re-enable it."""
    import tutor.judge

    monkeypatch.setattr(tutor.judge, "ALLOW_MODEL_REQUESTS", False)
