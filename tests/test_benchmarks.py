"""benchmarks/external.py rewrites only its own part of evals/RESULTS.md."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_write_markdown_keeps_the_golden_section(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    sys.modules.pop("external", None)
    import external

    path = tmp_path / "RESULTS.md"
    path.write_text(
        "# Grader results\n\nhand-written golden numbers\n\n" + external.EXTERNAL_HEADING + "\nold\n"
    )
    external.write_markdown(path, external.EXTERNAL_HEADING + "\nnew\n")
    assert (
        path.read_text()
        == "# Grader results\n\nhand-written golden numbers\n\n# External benchmark results\nnew\n"
    )
    fresh = tmp_path / "new.md"
    external.write_markdown(fresh, "x\n")
    assert fresh.read_text() == "x\n"
