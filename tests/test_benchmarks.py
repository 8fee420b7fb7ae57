"""benchmarks/external.py rewrites only its own part of evals/RESULTS.md."""

from __future__ import annotations

import json
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


def _external(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    sys.modules.pop("external", None)
    import external

    return external


def test_the_peer_is_compared_on_every_split_and_losses_are_named(monkeypatch) -> None:
    external = _external(monkeypatch)
    res = json.loads((REPO / "evals" / "external_results.json").read_text())
    rows = external.peer_comparison(res)
    shown = [f"{d} {s}" for d in ("scientsbank", "beetle") for s in external.DATASETS[d][1] if s in res[d]]
    shown += ["mohler cv5"] + [f"saf {s}" for s in external.DATASETS["saf"][1] if s in res["saf"]]
    assert [r["split"] for r in rows] == shown  # the SAF splits too
    md = external.render_markdown(res)
    saf = res["saf"]["test_uq"]
    assert saf["lr_3way"]["qwk"] < saf["peer_3way"]["qwk"]  # the recorded loss
    assert f"| saf test_uq | 3-label QWK | {saf['peer_3way']['qwk']:.3f} |" in md
    assert "(loses)**" in md and "no: loses on saf test_uq" in md
    assert f"beats the peer on {len(rows) - 1} of {len(rows)} splits; it loses on saf test_uq" in md


def test_a_win_everywhere_says_yes_and_a_tie_is_not_a_win(monkeypatch) -> None:
    external = _external(monkeypatch)
    res = json.loads((REPO / "evals" / "external_results.json").read_text())
    res["saf"]["test_uq"]["lr_3way"]["qwk"] = 0.9
    assert (
        "| beat the peer on every split (grader+fit vs the peer measured on the same rows, all 8 splits"
        in (md := external.render_markdown(res))
    )
    assert "| 8/8 | yes |" in md
    res["saf"]["test_uq"]["lr_3way"]["qwk"] = res["saf"]["test_uq"]["peer_3way"]["qwk"]
    assert "| 7/8 | no: loses on saf test_uq |" in external.render_markdown(res)


def test_results_md_holds_what_external_py_makes_of_the_json(monkeypatch) -> None:
    """The external part of evals/RESULTS.md is reproducible from evals/external_results.json."""
    external = _external(monkeypatch)
    res = json.loads((REPO / "evals" / "external_results.json").read_text())
    text = (REPO / "evals" / "RESULTS.md").read_text()
    assert text[text.index(external.EXTERNAL_HEADING) :] == external.render_markdown(res), (
        "run: python benchmarks/external.py --render-only --out evals/external_results.json "
        "--markdown evals/RESULTS.md"
    )
