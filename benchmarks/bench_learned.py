"""Speed of the learned grader against the issue-11 targets, in one run (a measurement, not a test).

Printed:
- warm `grade` latency inside one process, one answer at a time (rubric embeddings cached, answer not),
  p50/p95, for the learned grader and for the embedding grader alone on the same answers;
- the pair model's step alone (its features and trees) on the same answers, p50/p95;
- cold start of `tutor grade ID ANSWER --json` (median of --cold-runs processes, warm OS and rubric caches)
  and the peak RSS of those processes, for both graders.

Targets (issue 11, 2 cores): warm p50 <= 40 ms, cold start <= 1.2 s, peak RSS <= 400 MB.

    python benchmarks/bench_learned.py [--n 200] [--cold-runs 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_speed import pct, run_process  # noqa: E402

from tutor.evals.dataset import load_files  # noqa: E402
from tutor.grader import make_grader  # noqa: E402
from tutor.rubric import default_bank  # noqa: E402


def warm_latency(kind: str, rows: list, n: int) -> dict[str, float]:
    grader = make_grader(kind)
    grader.warm(list({r.question.id: r.question for r in rows}.values()))
    grader.grade(rows[0].question, rows[0].answer)
    lat = []
    for r in rows[:n]:
        t = time.perf_counter()
        grader.grade(r.question, r.answer)
        lat.append(time.perf_counter() - t)
    return {"p50_ms": round(pct(lat, 50) * 1e3, 1), "p95_ms": round(pct(lat, 95) * 1e3, 1), "n": len(lat)}


def pair_step(rows: list, n: int) -> dict[str, float]:
    """The pair model's share of a grade: its features (a Python loop over units x rubric items) and its
    trees, per answer, on the same answers (encoder and rules not included)."""
    from tutor.grading.claims import pair_features
    from tutor.grading.embedding import _polarity_matrices
    from tutor.grading.learned import LearnedGrader

    e = LearnedGrader().embedding
    assert e.claims is not None
    lat = []
    for r in rows[:n]:
        p = e._prepare(r.question, r.answer)
        units = getattr(p, "units", None)
        if not units:
            continue  # settled by a guard: no pairs
        uvec = e.embedder.encode([u.text for u in units])
        tg = e.targets(r.question)
        pol, lex, contra = _polarity_matrices(units, tg)
        t = time.perf_counter()
        cos = uvec @ tg.phrasings.T
        e.claims.probs(pair_features(r.question, units, pol, uvec, tg, cos, lex, contra, e.t.lexical_weight))
        lat.append(time.perf_counter() - t)
    return {"p50_ms": round(pct(lat, 50) * 1e3, 2), "p95_ms": round(pct(lat, 95) * 1e3, 2), "n": len(lat)}


def cold(kind: str, runs: int) -> dict[str, float]:
    env = {**os.environ, "TUTOR_GRADER": kind}
    answer = "bf16 keeps fp32's 8-bit exponent, so it has the same dynamic range and small gradients do not underflow."
    cmd = [str(Path(sys.executable).with_name("tutor")), "grade", "ch13-1", answer, "--json"]
    run_process(cmd, env)  # warm the OS file cache and the rubric embedding cache
    walls, rss = [], []
    for _ in range(runs):
        wall, mb, out = run_process(cmd, env)
        assert json.loads(out)["grader"].startswith(kind)
        walls.append(wall)
        rss.append(mb)
    return {"median_s": round(statistics.median(walls), 3), "peak_rss_mb": round(max(rss), 1), "runs": runs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="answers timed one at a time")
    ap.add_argument("--cold-runs", type=int, default=5)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = load_files([REPO / "evals" / "golden.jsonl"], default_bank()).rows
    if not rows:
        raise SystemExit("no rows loaded from evals/golden.jsonl")
    out = {
        "cpus": os.cpu_count(),
        "warm": {k: warm_latency(k, rows, args.n) for k in ("learned", "embedding")},
        "pair_step": pair_step(rows, args.n),
        "cold": {k: cold(k, args.cold_runs) for k in ("learned", "embedding")},
    }
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
