"""Combining the LLM judge with the embedding grade: `grade_with_judge`, the one entry point.

The rule (also in README and in each report's `rule` field):
- Both orders parse and agree ("consistent"): verdict = the judge's verdict; score =
  judge_weight * judge score + (1 - judge_weight) * embedding score, moved into the verdict's score band
  (the grader's thresholds) so score and verdict never disagree. Key points / misconceptions that the
  judge found in *both* orders and the embeddings missed are added to the feedback.
- The orders agree but would raise the grade over an embedding grade that found a misconception (or a
  contradicted key point) which the judge reported in neither order ("disputed"): a small judge model
  tends to be lenient, and a wrong belief the rubric names is the strongest evidence there is.
- The orders disagree ("inconsistent"), only one order parsed, or "disputed": the judge is not trusted on
  its own. verdict = the most conservative of the embedding verdict and the judge verdict(s); score = the
  lower of the embedding score and the fused score, in that verdict's band. For "inconsistent",
  `Thresholds.judge_inconsistent = "embedding"` makes the judge abstain instead (the embedding grade
  stands): a judge that contradicts itself says nothing about the answer, and the conservative rule lets
  its position bias veto good answers. `tutor calibrate --judge` picks the rule on train rows.
- No order parsed (unscored), or the backend failed: the embedding grade, unchanged, and the feedback
  says the judge could not grade it. A judge failure never loses or blocks a grade.
- Empty answers and "I don't know" are not sent to the judge.
"""

from __future__ import annotations

import time

from tutor.grader import EmbeddingGrader, Thresholds, feedback_text, get_grader
from tutor.judge.base import Judge
from tutor.judge.engine import JudgeEngine
from tutor.models import (
    VERDICTS,
    CoveredPoint,
    FoundMisconception,
    Grade,
    JudgeCall,
    JudgeReport,
    Question,
    Verdict,
)

SKIP_FLAGS = frozenset({"empty", "dont_know"})
JUDGE_NOTE = "(noted by the LLM judge)"


def _rank(v: Verdict) -> int:
    return VERDICTS.index(v)


def _band(v: Verdict, t: Thresholds) -> tuple[float, float]:
    eps = 1e-3
    return {
        "incorrect": (0.0, t.partial - eps),
        "partial": (t.partial, t.correct - eps),
        "correct": (t.correct, 1.0),
    }[v]


def _clip(x: float, band: tuple[float, float]) -> float:
    return round(min(max(x, band[0]), band[1]), 3)


def grade_with_judge(
    question: Question,
    answer: str,
    judge: Judge | JudgeEngine | str,
    grader: EmbeddingGrader | None = None,
    *,
    rubric_version: str | None = None,
    thresholds: Thresholds | None = None,
) -> Grade:
    """Embedding grade sharpened by an LLM judge graded in both orders. Never raises for judge failures.

    `judge` is a spec ("local", "openai:gpt-4o-mini", "fake:correct"), a backend, or a JudgeEngine (to
    choose prompts or the cache). The judge's reply cache is keyed by a hash of this question's rubric
    content, so `tutor grade`, `study` and `eval` share replies and editing one question invalidates only
    its own; `rubric_version` overrides that key (tests use it).
    """
    grader = grader or get_grader()
    t = thresholds or getattr(grader, "t", None) or Thresholds()
    if isinstance(judge, str):
        from tutor.judge.registry import resolve_judge

        judge = resolve_judge(judge)
    engine = judge if isinstance(judge, JudgeEngine) else JudgeEngine(judge)
    base = grader.grade(question, answer)
    j = engine.judge
    report = JudgeReport(
        judge=j.spec,
        backend=j.backend,
        model=j.model,
        embedding_score=base.score,
        embedding_verdict=base.verdict,
        judge_weight=t.judge_weight,
        rule="skipped",
    )
    if SKIP_FLAGS & set(base.flags):
        report.note = "not sent to the judge: nothing to grade"
        return base.model_copy(update={"judge": report})
    version = rubric_version or _question_version(question)
    t0 = time.perf_counter()
    calls = engine.judge_answer(question, answer, version)
    report.latency_s = round(time.perf_counter() - t0, 3)
    return fuse(base, calls, report, question, t)


def _question_version(q: Question) -> str:
    import hashlib

    return "q:" + hashlib.sha256(q.model_dump_json().encode()).hexdigest()[:16]


def fuse(base: Grade, calls: list[JudgeCall], report: JudgeReport, q: Question, t: Thresholds) -> Grade:
    """Apply the rule in the module docstring; returns a new Grade with `judge` filled in."""
    report.calls = calls
    report.prompt_tokens = sum(c.prompt_tokens for c in calls)
    report.completion_tokens = sum(c.completion_tokens for c in calls)
    ok = {c.order: c.reply for c in calls if c.status == "ok" and c.reply is not None}
    w = t.judge_weight
    if not ok:
        report.rule = "fallback"
        why = "; ".join(f"order {c.order}: {c.status} ({c.error})" for c in calls)
        report.note = f"no usable judge reply ({why}); the embedding grade is used"
        kind = (
            "could not parse the judge's reply"
            if any(c.status == "unscored" for c in calls)
            else "the judge was unavailable"
        )
        feedback = f"{base.feedback} (LLM judge: {kind}; this is the embedding grade.)"
        return base.model_copy(update={"judge": report, "feedback": feedback})

    replies = list(ok.values())
    judge_score = sum(r.score for r in replies) / (10 * len(replies))
    report.score = round(judge_score, 3)
    fused = w * judge_score + (1 - w) * base.score
    update: dict = {}
    judge_mis = {m for r in replies for m in r.misconceptions_found}
    disputed = (
        len(replies) == 2
        and replies[0].verdict == replies[1].verdict
        and _rank(replies[0].verdict) > _rank(base.verdict)
        and bool(base.misconceptions)
        and not judge_mis & {m.id for m in base.misconceptions}
    )
    if len(replies) == 2 and replies[0].verdict == replies[1].verdict and not disputed:
        report.consistent, report.rule, report.verdict = True, "fused", replies[0].verdict
        verdict: Verdict = replies[0].verdict
        score = _clip(fused, _band(verdict, t))
        update = _merge_findings(base, q, ok)
        report.note = f"both orders: {verdict}"
    else:
        if disputed:
            report.consistent, report.rule, report.verdict = True, "disputed", replies[0].verdict
            found = ", ".join(m.id for m in base.misconceptions)
            report.note = (
                f"both orders: {replies[0].verdict}, but the embeddings found {found}, which the "
                f"judge did not report; the more conservative verdict is used"
            )
        elif len(replies) == 2:
            a, b = ok["A"], ok["B"]
            report.consistent, report.rule = False, "inconsistent"
            # Order A shows the answer second, order B first.
            report.preferred_position = "second" if _rank(a.verdict) > _rank(b.verdict) else "first"
            if t.judge_inconsistent == "embedding":
                report.note = (
                    f"orders disagree (A: {a.verdict}, B: {b.verdict}); the judge abstains and the "
                    f"embedding grade ({base.verdict}) is used"
                )
                grade = base.model_copy(
                    update={"judge": report, "grader": f"{base.grader}+judge:{report.judge}"}
                )
                grade.feedback += " (LLM judge inconsistent: its two readings disagreed, so it was not used.)"
                return grade
            report.note = (
                f"orders disagree (A: {a.verdict}, B: {b.verdict}); the more conservative of "
                f"the embedding ({base.verdict}) and judge verdicts is used"
            )
        else:
            report.rule = "one_order"
            failed = next(c for c in calls if c.order not in ok)
            report.note = (
                f"only order {next(iter(ok))} parsed (order {failed.order}: {failed.status}); the "
                "more conservative of the embedding and judge verdicts is used"
            )
        verdict = min([base.verdict, *(r.verdict for r in replies)], key=_rank)
        score = _clip(min(base.score, fused), _band(verdict, t))

    grade = base.model_copy(
        update={
            **update,
            "score": score,
            "verdict": verdict,
            "judge": report,
            "grader": f"{base.grader}+judge:{report.judge}",
        }
    )
    reason = (ok.get("A") or replies[0]).reason
    grade.feedback = feedback_text(grade) + (f" Judge: {reason}" if reason else "")
    if report.rule != "fused":
        grade.feedback += f" (LLM judge {report.rule.replace('_', ' ')}: graded conservatively.)"
    return grade


def _merge_findings(base: Grade, q: Question, ok: dict) -> dict:
    """Points and misconceptions found by the judge in both orders that the embeddings missed."""
    both_kp = set(ok["A"].key_points_covered) & set(ok["B"].key_points_covered)
    both_mis = set(ok["A"].misconceptions_found) & set(ok["B"].misconceptions_found)
    covered = list(base.covered)
    missed = []
    for m in base.missed:
        if m.id in both_kp and m.reason != "contradicted":
            covered.append(CoveredPoint(id=m.id, text=m.text, sentence=JUDGE_NOTE, similarity=0.0))
        else:
            missed.append(m)
    found = list(base.misconceptions)
    have = {m.id for m in found}
    for mc in q.misconceptions:
        if mc.id in both_mis and mc.id not in have:
            found.append(
                FoundMisconception(
                    id=mc.id,
                    statement=mc.statement,
                    correction=mc.correction,
                    sentence=JUDGE_NOTE,
                    similarity=0.0,
                )
            )
    order = {k.id: i for i, k in enumerate(q.key_points)}
    covered.sort(key=lambda c: order.get(c.id, 99))
    return {"covered": covered, "missed": missed, "misconceptions": found}
