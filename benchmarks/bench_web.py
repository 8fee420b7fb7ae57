"""How fast `tutor web` grades over HTTP, against the grader's own latency, in one run (issue 12).

Starts the real `tutor web` (uvicorn, one process) on a free port of 127.0.0.1 with a fresh TUTOR_HOME,
waits until its model is loaded and every rubric embedded, then, on answers from evals/golden.jsonl:

1. paired latency, one request at a time: for each answer, the grader's own `grade(question, answer)` in
   this process (warm: model loaded, rubric embedded), then `POST /api/grade` with the same answer over a
   kept-alive connection. Interleaving the two cancels the drift of a shared, noisy machine; the server is
   idle while the grader runs here and the other way round. Reported: p50/p95 of each and of the paired
   difference (the web layer's cost: HTTP, FastAPI, JSON);
2. throughput: 8 concurrent clients (threads, each with its own kept-alive connection) posting different
   answers for a fixed number of requests; requests/s and the latency each client saw.

    python benchmarks/bench_web.py                     # 200 paired + 400 concurrent requests
    python benchmarks/bench_web.py --paired 100 --concurrent 200 --clients 8 --json out.json

A measurement, not a test: it never fails on speed. The load generator runs on the same 2 cores as the
server, so requests/s is a floor of what the server alone would do.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
from tutor.paths import models_dir  # noqa: E402

os.environ.setdefault("TUTOR_MODELS", str(models_dir()))  # the ONNX export `make setup` built
os.environ["TUTOR_HOME"] = tempfile.mkdtemp(prefix="tutor-bench-web-")

from tutor.grader import get_grader  # noqa: E402
from tutor.rubric import default_bank  # noqa: E402

TUTOR = Path(sys.executable).parent / "tutor"


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))]


def summary(ms: list[float]) -> dict[str, float]:
    return {"n": len(ms), "p50_ms": pct(ms, 50), "p95_ms": pct(ms, 95), "mean_ms": statistics.fmean(ms)}


def golden_answers() -> list[tuple[str, str]]:
    rows = [json.loads(line) for line in (REPO / "evals" / "golden.jsonl").read_text().splitlines() if line]
    return [(r["question_id"], r["answer"]) for r in rows]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(port: int) -> tuple[subprocess.Popen[bytes], float]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [str(TUTOR), "web", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"tutor web exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/questions", timeout=5):
                return proc, time.perf_counter() - t0
        except OSError:
            time.sleep(0.2)


class Client:
    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def grade(self, qid: str, answer: str) -> tuple[float, dict[str, Any]]:
        body = json.dumps({"question_id": qid, "answer": answer})
        t0 = time.perf_counter()
        self.conn.request("POST", "/api/grade", body, {"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        data = resp.read()
        ms = (time.perf_counter() - t0) * 1000
        if resp.status != 200:
            raise SystemExit(f"POST /api/grade: {resp.status} {data[:200]!r}")
        return ms, json.loads(data)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--paired", type=int, default=200, help="answers timed one at a time (both ways)")
    ap.add_argument("--concurrent", type=int, default=400, help="requests in the concurrent phase")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    answers = golden_answers()
    paired, rest = answers[: args.paired], answers[args.paired : args.paired + args.concurrent]
    bank = default_bank()
    port = free_port()
    load_before = os.getloadavg()[0]
    proc, startup_s = start_server(port)
    try:
        grader = get_grader()
        for q in bank.questions:  # this process's grader as warm as the server's
            grader.grade(q, "warm up")
        client = Client(port)
        for qid, a in paired[:20]:  # warm both paths (first requests, allocator, threads)
            grader.grade(bank.get(qid), a)
            client.grade(qid, a)

        own, web, diff = [], [], []
        same = 0
        for qid, a in paired:
            t0 = time.perf_counter()
            g = grader.grade(bank.get(qid), a)
            own_ms = (time.perf_counter() - t0) * 1000
            web_ms, body = client.grade(qid, a)
            own.append(own_ms)
            web.append(web_ms)
            diff.append(web_ms - own_ms)
            same += body == json.loads(g.model_dump_json())

        per_client: list[list[float]] = [[] for _ in range(args.clients)]
        errors: list[BaseException] = []

        def run(i: int) -> None:
            try:
                c = Client(port)
                for qid, a in rest[i :: args.clients]:
                    per_client[i].append(c.grade(qid, a)[0])
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(args.clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        if errors:
            raise SystemExit(f"concurrent phase failed: {errors[0]!r}")
        loaded = [ms for xs in per_client for ms in xs]
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    result = {
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}",
        "load_average_start": round(load_before, 2),
        "load_average_end": round(os.getloadavg()[0], 2),
        "server_startup_s": round(startup_s, 1),
        "grader_own": summary(own),
        "post_api_grade": summary(web),
        "web_overhead": summary(diff),
        "api_equals_grader": f"{same}/{len(paired)}",
        "concurrent": {
            "clients": args.clients,
            "requests": len(loaded),
            "wall_s": round(wall, 2),
            "requests_per_s": round(len(loaded) / wall, 1),
            "latency": summary(loaded),
        },
    }
    own_s, web_s, d = result["grader_own"], result["post_api_grade"], result["web_overhead"]
    c = result["concurrent"]
    print(f"tutor web benchmark, {result['when']} ({result['machine']}; load {load_before:.1f} at start)")
    print(f"server start to first answer (model + 40 rubrics, fresh TUTOR_HOME): {startup_s:.1f} s")
    print(f"one request at a time, {len(paired)} golden answers, each timed both ways:")
    print(f"  grader.grade in-process   p50 {own_s['p50_ms']:6.1f} ms   p95 {own_s['p95_ms']:6.1f} ms")
    print(f"  POST /api/grade           p50 {web_s['p50_ms']:6.1f} ms   p95 {web_s['p95_ms']:6.1f} ms")
    print(f"  difference (web layer)    p50 {d['p50_ms']:6.1f} ms   p95 {d['p95_ms']:6.1f} ms")
    print(f"  API body equal to the grader's Grade: {result['api_equals_grader']}")
    print(
        f"{c['clients']} concurrent clients, {c['requests']} requests: {c['requests_per_s']} req/s, "
        f"latency p50 {c['latency']['p50_ms']:.1f} ms, p95 {c['latency']['p95_ms']:.1f} ms"
    )
    print(f"load average at end: {result['load_average_end']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
