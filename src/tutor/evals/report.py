"""Write an eval report to a directory: report.json, a readable report.md and PNG plots."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tutor.evals.metrics import LABELS


def _f(x: Any, nd: int = 3) -> str:
    return "–" if x is None else f"{x:.{nd}f}" if isinstance(x, float) else str(x)


def judge_cache_remark(judge: Mapping[str, Any] | None) -> str:
    """Said beside any latency that includes the judge, when its replies came from the cache."""
    if not judge or not judge.get("cached_calls"):
        return ""
    return (
        f" (includes the LLM judge: {judge['cached_calls']} of {judge.get('calls', '?')} judge calls were read "
        "from its reply cache, so this is not the judge's speed)"
    )


def to_markdown(rep: dict[str, Any]) -> str:
    ci = rep.get("ci95", {})
    base = rep.get("baseline_constant", {})
    tw = rep.get("two_way", {})
    lines = [
        "# Grader eval report",
        "",
        f"Files: {', '.join(rep.get('files', []))}  ",
        f"Grader: {', '.join(rep.get('graders', []))}; thresholds `{rep.get('thresholds_version', '?')}`  ",
        f"Rows graded: {rep['n']}; rows skipped for parse errors: {len(rep.get('issues', []))}",
        "",
        "| metric | value | 95% CI | constant baseline |",
        "|---|---:|---|---:|",
        f"| QWK | {_f(rep['qwk'])} | {_f(ci.get('qwk', [None])[0])}–{_f(ci.get('qwk', [None, None])[1])} "
        f"| {_f(base.get('qwk'))} |",
        f"| accuracy | {_f(rep['accuracy'])} | {_f(ci.get('accuracy', [None])[0])}–"
        f"{_f(ci.get('accuracy', [None, None])[1])} | {_f(base.get('accuracy'))} |",
        f"| macro-F1 | {_f(rep['macro_f1'])} | | {_f(base.get('macro_f1'))} |",
        f"| Cohen's kappa | {_f(rep['kappa'])} | | |",
        f"| 2-way accuracy | {_f(tw.get('accuracy'))} | | |",
        f"| 2-way weighted F1 | {_f(tw.get('weighted_f1'))} | | |",
        f"| Spearman(score, label) | {_f(rep.get('spearman_score_vs_label'))} | | |",
    ]
    if rep.get("numeric"):
        nm = rep["numeric"]
        lines.append(
            f"| Pearson / RMSE vs gold score (n={nm['n']}, 0-1) "
            f"| {_f(nm['pearson'])} / {_f(nm['rmse'])} | | |"
        )
    lat = rep.get("latency", {})
    lines += [
        "",
        f"Latency: p50 {_f(lat.get('p50_ms'), 1)} ms, p95 {_f(lat.get('p95_ms'), 1)} ms, "
        f"{_f(lat.get('answers_per_s'), 1)} answers/s"
        + (" (answer embeddings batched up front)" if lat.get("embeddings_cached") else "")
        + judge_cache_remark(rep.get("judge")),
        "",
        "## Confusion matrix (rows gold, columns predicted)",
        "",
        "| gold \\ predicted | " + " | ".join(LABELS) + " |",
        "|---|" + "---:|" * len(LABELS),
    ]
    for lab, row in zip(LABELS, rep["confusion"]["matrix"], strict=True):
        lines.append(f"| {lab} | " + " | ".join(str(x) for x in row) + " |")
    lines += [
        "",
        "## Per chapter / group",
        "",
        "| group | n | accuracy | macro-F1 | QWK |",
        "|---|---:|---:|---:|---:|",
    ]
    for g, m in rep.get("per_group", {}).items():
        lines.append(f"| {g} | {m['n']} | {_f(m['accuracy'])} | {_f(m['macro_f1'])} | {_f(m['qwk'])} |")
    if rep.get("per_kind"):
        lines += [
            "",
            "## Per answer kind",
            "",
            "| kind | n | accuracy | mean abs. error (verdict steps) |",
            "|---|---:|---:|---:|",
        ]
        for k, m in rep["per_kind"].items():
            lines.append(f"| {k} | {m['n']} | {_f(m['accuracy'])} | {_f(m['mean_abs_error'])} |")
    if rep.get("judge"):
        j = rep["judge"]
        lines += ["", "## Judge", ""]
        if j.get("latency_note"):
            note = j["latency_note"]
            lines += [f"**Latency source: {j['latency_source']}.** {note[:1].upper()}{note[1:]}.", ""]
        lines += [f"- {k}: {_f(v) if not isinstance(v, dict) else v}" for k, v in j.items()]
    lines += [
        "",
        "## Largest disagreements",
        "",
        "| id | label | verdict | score | answer |",
        "|---|---|---|---:|---|",
    ]
    for d in rep.get("disagreements", []):
        ans = d["answer"].replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {d['id']} | {d['label']} | {d['verdict']} | {_f(d['score'], 2)} | {ans} |")
    if rep.get("issues"):
        lines += ["", "## Skipped rows", ""] + [f"- {i}" for i in rep["issues"][:50]]
    return "\n".join(lines) + "\n"


def plot_confusion(rep: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = rep["confusion"]["matrix"]
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(3), LABELS)
    ax.set_yticks(range(3), LABELS)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    top = max(max(r) for r in cm) or 1
    for i in range(3):
        for j in range(3):
            ax.text(
                j,
                i,
                str(cm[i][j]),
                ha="center",
                va="center",
                color="white" if cm[i][j] > top / 2 else "black",
            )
    ax.set_title(f"QWK {_f(rep['qwk'])}, accuracy {_f(rep['accuracy'])}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_scores(
    scores_by_label: Mapping[str, Sequence[float]], path: Path, thresholds: Sequence[float] = ()
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    bins = [i / 20 for i in range(21)]
    for lab, color in zip(LABELS, ("tab:red", "tab:orange", "tab:green"), strict=True):
        vals = scores_by_label.get(lab, [])
        if vals:
            ax.hist(vals, bins=bins, alpha=0.5, color=color, label=f"{lab} (n={len(vals)})")
    for t in thresholds:
        ax.axvline(t, color="black", linestyle="--", linewidth=1)
    ax.set_xlabel("grader score")
    ax.set_ylabel("answers")
    ax.set_title("Score distribution per gold label")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(
    directory: Path,
    rep: dict[str, Any],
    scores_by_label: Mapping[str, Sequence[float]],
    thresholds: Sequence[float] = (),
) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = [
        directory / "report.json",
        directory / "report.md",
        directory / "confusion.png",
        directory / "scores.png",
    ]
    paths[0].write_text(json.dumps(rep, indent=2, ensure_ascii=False) + "\n")
    paths[1].write_text(to_markdown(rep))
    plot_confusion(rep, paths[2])
    plot_scores(scores_by_label, paths[3], thresholds)
    return paths
