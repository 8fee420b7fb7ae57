"""Grade eval rows and turn the results into one report dict (the object `tutor eval --json` prints)."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from tutor import text as T
from tutor.embed import CachedEmbedder, Embedder, default_embedder
from tutor.evals import metrics as M
from tutor.evals.dataset import ORDINAL, EvalRow, LoadIssue
from tutor.grader import EmbeddingGrader, Thresholds, grader_kind
from tutor.grading.learned import LearnedGrader
from tutor.models import Grade, Question

GradeFn = Callable[[Question, str], Grade]

# Above this many answers, answer texts are embedded in large batches up front (much faster on a CPU);
# per-answer latency then excludes embedding time, and the report says so.
BATCH_EMBED_ABOVE = 1000


@dataclass
class EvalResult:
    row: EvalRow
    grade: Grade
    latency_s: float


def make_grader(
    thresholds: Thresholds | None = None, cache_answers: bool = False, kind: str | None = None
) -> EmbeddingGrader | LearnedGrader:
    """A grader for evals (kind: learned or embedding, default TUTOR_GRADER). With cache_answers, answer
    embeddings go through the disk cache too (fast reruns and batch prefetch); without it, latency is what
    a learner would see. `thresholds` sets the embedding grader's cut-offs, or the learned grader's judge
    settings (its own embedding settings come with the model)."""
    if (kind or grader_kind()) == "embedding":
        return make_embedding_grader(thresholds, cache_answers)
    return LearnedGrader(embedder=_answer_embedder(cache_answers), thresholds=thresholds)


def make_embedding_grader(
    thresholds: Thresholds | None = None, cache_answers: bool = False
) -> EmbeddingGrader:
    return EmbeddingGrader(embedder=_answer_embedder(cache_answers), thresholds=thresholds)


def _answer_embedder(cache_answers: bool) -> Embedder:
    inner = default_embedder()
    return CachedEmbedder(inner) if cache_answers else inner


def progress_bar(console: Console | None = None, enabled: bool = True) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
        disable=not enabled,
        transient=True,
    )


def answer_unit_texts(answer: str) -> list[str]:
    text, _ = T.normalise_answer(answer)
    return [u.text for u in T.answer_units(text)] if text else []


def prefetch(
    grader: EmbeddingGrader | LearnedGrader, rows: Sequence[EvalRow], progress: bool = True, chunk: int = 512
) -> int:
    """Embed every rubric and every answer unit in large batches, so grading then only reads the cache.
    Only possible when the grader's answer embedder is a CachedEmbedder. Returns the number of texts."""
    whole_answers = isinstance(grader, LearnedGrader)  # the learned grader also embeds each whole answer
    grader = grader.embedding if isinstance(grader, LearnedGrader) else grader
    if not isinstance(grader.embedder, CachedEmbedder):
        return 0
    questions = {r.question.model_dump_json(): r.question for r in rows}
    # Rubric texts in one batch too: one encode call per question is slow for datasets with many questions.
    rubric = [
        t
        for q in questions.values()
        for t in (
            q.question,
            q.reference,
            *(p for k in q.key_points for p in k.phrasings),
            *(p for m in q.misconceptions for p in m.phrasings),
        )
    ]
    texts = list(dict.fromkeys(t for r in rows for t in answer_unit_texts(r.answer)))
    if whole_answers:
        texts = list(dict.fromkeys([*texts, *(T.normalise_answer(r.answer)[0] for r in rows)]))
    with progress_bar(enabled=progress) as bar:
        task = bar.add_task("embedding answers", total=len(texts) + len(questions))
        grader.rubric_embedder.encode(list(dict.fromkeys(rubric)))
        for q in questions.values():
            grader.targets(q)
            bar.advance(task)
        for i in range(0, len(texts), chunk):
            grader.embedder.encode(texts[i : i + chunk])
            bar.advance(task, min(chunk, len(texts) - i))
    return len(texts)


def run(rows: Sequence[EvalRow], grade_fn: GradeFn, progress: bool = True) -> tuple[list[EvalResult], float]:
    """Grade every row; returns the results and the wall time in seconds."""
    results: list[EvalResult] = []
    t0 = time.perf_counter()
    with progress_bar(enabled=progress and len(rows) > 20) as bar:
        task = bar.add_task("grading", total=len(rows))
        for r in rows:
            s = time.perf_counter()
            g = grade_fn(r.question, r.answer)
            results.append(EvalResult(r, g, time.perf_counter() - s))
            bar.advance(task)
    return results, time.perf_counter() - t0


def from_graded(rows: Sequence[EvalRow], path: Path) -> tuple[list[EvalResult], list[LoadIssue]]:
    """Results from a `tutor grade-batch` OUT file instead of grading: each row takes the grade OUT holds
    for its id (a large eval is graded once, in parallel, then scored as often as needed). Rows without a
    grade in OUT, error rows and grades made for another question are reported, never scored. Latency is
    not known here (0)."""
    wanted = {r.id: r for r in rows}
    found: dict[str, Grade] = {}
    issues: list[LoadIssue] = []
    seen: set[str] = set()  # ids OUT has a row for (graded, or reported above)
    with path.open("rb") as f:
        for n, line in enumerate(f, start=1):
            where = f"{path}:{n}"
            if not line.endswith(b"\n"):
                issues.append(LoadIssue(where, "cut-short last line (an interrupted run) ignored"))
                continue
            try:
                obj = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                issues.append(LoadIssue(where, "not a JSON row"))
                continue
            key = str(obj.get("id")) if isinstance(obj, dict) else None
            if key not in wanted:
                continue
            row = wanted[key]
            seen.add(key)
            if "error" in obj:
                issues.append(LoadIssue(row.source, f"not graded: {obj['error']} ({where})"))
                continue
            try:
                grade = Grade.model_validate({k: v for k, v in obj.items() if k not in ("id", "label")})
            except ValueError as e:
                issues.append(LoadIssue(where, f"not a grade row ({str(e).splitlines()[0]})"))
                continue
            if grade.question_id != row.question.id:
                issues.append(
                    LoadIssue(where, f"graded for question {grade.question_id!r}, not {row.question.id!r}")
                )
                continue
            found[key] = grade
    for r in rows:
        if r.id not in seen:
            issues.append(LoadIssue(r.source, f"id {r.id!r} has no grade in {path}"))
    return [EvalResult(r, found[r.id], 0.0) for r in rows if r.id in found], issues


def _disagreements(results: Sequence[EvalResult], k: int = 10) -> list[dict[str, Any]]:
    def gap(r: EvalResult) -> tuple[int, float]:
        target = r.row.score if r.row.score is not None else ORDINAL[r.row.label] / 2
        return abs(ORDINAL[r.row.label] - ORDINAL[r.grade.verdict]), abs(r.grade.score - target)

    worst = sorted((r for r in results if r.row.label != r.grade.verdict), key=gap, reverse=True)[:k]
    return [
        {
            "id": r.row.id,
            "source": r.row.source,
            "question_id": r.row.question.id,
            "answer": r.row.answer if len(r.row.answer) <= 400 else r.row.answer[:399] + "…",
            "label": r.row.label,
            "label_raw": r.row.label_raw,
            "verdict": r.grade.verdict,
            "score": r.grade.score,
            "flags": r.grade.flags,
        }
        for r in worst
    ]


def judge_metrics(results: Sequence[EvalResult]) -> dict[str, Any] | None:
    """Judge agreement and cost, read from each Grade's JudgeReport (None when no judge was used)."""
    judged = [(r, r.grade.judge) for r in results if r.grade.judge is not None]
    if not judged:
        return None
    sent = [(r, j) for r, j in judged if j.rule != "skipped"]
    both = [j for _, j in sent if j.consistent is not None]
    inconsistent = [j for j in both if not j.consistent]
    own = [(r, j) for r, j in sent if j.verdict is not None]
    calls = [c for _, j in sent for c in j.calls]
    tokens = sum(j.prompt_tokens + j.completion_tokens for _, j in sent)
    rules: dict[str, int] = defaultdict(int)
    for _, j in judged:
        rules[j.rule] += 1
    gold_all = [r.row.label for r, _ in judged]
    # Each order on its own, over every answer it parsed: what the judge alone is worth in that position.
    by_order: dict[str, tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
    for r, j in sent:
        for c in j.calls:
            if c.status == "ok" and c.reply is not None:
                by_order[c.order][0].append(r.row.label)
                by_order[c.order][1].append(c.reply.verdict)
    return {
        "n": len(judged),
        "sent_to_judge": len(sent),
        "rules": dict(rules),
        "position_consistency": M._num(len(both) and (len(both) - len(inconsistent)) / len(both))
        if both
        else None,
        "prefer_first": M._num(sum(j.preferred_position == "first" for j in inconsistent) / len(both))
        if both
        else None,
        "prefer_second": M._num(sum(j.preferred_position == "second" for j in inconsistent) / len(both))
        if both
        else None,
        "unscored_rate": M._num(sum(c.status != "ok" for c in calls) / len(calls)) if calls else None,
        "fallback_rate": M._num(rules["fallback"] / len(sent)) if sent else None,
        "judge_only_qwk": M._num(M.qwk([r.row.label for r, _ in own], [str(j.verdict) for _, j in own]))
        if own
        else None,
        "judge_only_n": len(own),
        "order_qwk": {o: M._num(M.qwk(g, p)) for o, (g, p) in sorted(by_order.items())},
        "order_n": {o: len(g) for o, (g, _) in sorted(by_order.items())},
        "embedding_only_qwk": M._num(M.qwk(gold_all, [j.embedding_verdict for _, j in judged])),
        "fused_qwk": M._num(M.qwk(gold_all, [r.grade.verdict for r, _ in judged])),
        "tokens_total": int(tokens),
        "tokens_per_answer": M._num(tokens / len(sent)) if sent else None,
        "calls": len(calls),
        "cached_calls": sum(c.cached for c in calls),
        **judge_latency(sent),
    }


def judge_latency(sent: Sequence[tuple[EvalResult, Any]]) -> dict[str, Any]:
    """Time per judged answer, and where it came from: replies read from the judge's cache take
    milliseconds, so a latency measured on them says nothing about the judge's speed. `latency` covers every
    answer sent; `latency_uncached` only answers none of whose calls came from the cache (the model's time);
    `latency_source` is "model", "reply cache" or "mixed", and `latency_note` says it in words."""
    if not sent:
        return {"latency": None, "latency_uncached": None, "latency_source": None, "latency_note": None}
    cached = [j for _, j in sent if any(c.cached for c in j.calls)]
    fresh = [j for _, j in sent if not any(c.cached for c in j.calls)]
    source = "model" if not cached else "reply cache" if not fresh else "mixed"
    note = {
        "model": "no reply came from the cache: these are the judge's own times",
        "reply cache": f"every one of the {len(sent)} judged answers was read from the judge's reply cache: "
        "these latencies are cache reads, not the judge's speed (run with an empty cache, e.g. a new "
        "TUTOR_HOME, to time the judge)",
        "mixed": f"{len(cached)} of {len(sent)} judged answers had replies from the judge's reply cache; "
        "latency_uncached covers the other answers only",
    }[source]
    return {
        "latency": M.latency_stats([j.latency_s for _, j in sent]),
        "latency_uncached": M.latency_stats([j.latency_s for j in fresh]) if fresh else None,
        "latency_source": source,
        "latency_note": note,
    }


def build_report(
    results: Sequence[EvalResult],
    wall_s: float,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    embeddings_cached: bool = False,
) -> dict[str, Any]:
    gold: list[str] = [r.row.label for r in results]
    pred: list[str] = [r.grade.verdict for r in results]
    scores = [r.grade.score for r in results]
    rep: dict[str, Any] = M.verdict_metrics(gold, pred)
    rep["ci95"] = M.bootstrap_ci(gold, pred, n_boot=n_boot, seed=seed)
    rep["ci95"]["bootstrap"] = {"resamples": n_boot, "seed": seed}
    rep["baseline_constant"] = M.constant_baseline(gold)
    rep["two_way"] = M.two_way_metrics([r.row.gold_2way for r in results], [v == "correct" for v in pred])
    rep["spearman_score_vs_label"] = M.spearman(scores, [ORDINAL[g] for g in gold])
    numeric = [(r.grade.score, r.row.score) for r in results if r.row.score is not None]
    rep["numeric"] = (
        {"n": len(numeric), "scale": "0-1 (gold score / max)", **M.correlation(*zip(*numeric, strict=True))}
        if len(numeric) >= 3
        else None
    )
    groups: dict[str, list[EvalResult]] = defaultdict(list)
    for r in results:
        groups[r.row.group].append(r)
    rep["per_group"] = {
        g: {
            k: v
            for k, v in M.verdict_metrics([x.row.label for x in rs], [x.grade.verdict for x in rs]).items()
            if k != "confusion"
        }
        for g, rs in sorted(groups.items())
    }
    kinds: dict[str, list[EvalResult]] = defaultdict(list)
    for r in results:
        if "kind" in r.row.meta:
            kinds[str(r.row.meta["kind"])].append(r)
    rep["per_kind"] = {
        k: {
            "n": len(rs),
            "accuracy": M._num(sum(x.row.label == x.grade.verdict for x in rs) / len(rs)),
            "mean_abs_error": M._num(
                sum(abs(ORDINAL[x.row.label] - ORDINAL[x.grade.verdict]) for x in rs) / len(rs)
            ),
        }
        for k, rs in sorted(kinds.items())
    } or None
    rep["label_counts"] = {v: gold.count(v) for v in M.LABELS}
    rep["verdict_counts"] = {v: pred.count(v) for v in M.LABELS}
    rep["disagreements"] = _disagreements(results)
    rep["latency"] = {
        **M.latency_stats([r.latency_s for r in results], wall_s),
        "embeddings_cached": embeddings_cached,
    }
    rep["judge"] = judge_metrics(results)
    rep["graders"] = sorted({r.grade.grader for r in results})
    return rep
