"""How fast `tutor grade-batch` grades a large file, and how much memory it needs (issue 13).

Measured, in one run, on N distinct answers (default 10,000) built from the golden set and the external
sets in ../shared/benchmarks (read from there, written to a temporary directory, never into the repo):

1. the local engine, end to end (`tutor grade-batch IN --out OUT` in a fresh process): answers/s, wall
   time with start-up, peak RSS;
2. the Ray engine with 2 actors on a local Ray (`--engine ray --num-actors 2`): the same, RSS summed over
   the driver and every Ray process it starts;
3. the grader against the bare encoder on the same units in the same process, batch by batch and
   interleaved (so a busy machine slows both alike): the grader's end-to-end path (parse the rows,
   grade_many, write OUT rows) in units/s against `encode()` alone on the batch's distinct units;
4. the per-answer cost breakdown on a sample: guards and splitting, tokenising, encoding, matching,
   writing, and the judge path's own overhead with the scripted judge (the model's time is on paper);
5. peak RSS of the local engine at --big rows (default 100,000: the N answers repeated with new ids, every
   row really graded), against the N-row run.

    python benchmarks/bench_batch.py                       # everything (about an hour on 2 cores)
    python benchmarks/bench_batch.py --n 2000 --big 0      # quicker, no 100k run
    python benchmarks/bench_batch.py --json /tmp/batch.json

A measurement, not a test: it never fails on speed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "benchmarks"
BIN = Path(sys.executable).parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SUMMARY = re.compile(r"([\d,]+) rows: ([\d,]+) graded, ([\d,]+) errors.*?; ([\d.]+) s, ([\d.]+) answers/s")


# ---------------------------------------------------------------------------------------- the input


def build_input(n: int, path: Path, seed: int = 0) -> dict[str, Any]:
    """n distinct answers (by text): every golden answer, the rest drawn from the external sets, shuffled.
    Golden rows name a bank question; external rows carry their own question."""
    golden = [json.loads(x) for x in (REPO / "evals" / "golden.jsonl").read_text().splitlines()]
    rows: list[dict[str, Any]] = [
        {"id": r["id"], "question_id": r["question_id"], "answer": r["answer"], "label": r["label"]}
        for r in golden
    ]
    seen = {r["answer"].strip() for r in rows}
    external: list[dict[str, Any]] = []
    for f in sorted(SHARED.glob("*/*.jsonl")):
        if f.name == "all_including_excluded.jsonl":  # Mohler's all.jsonl plus rows its README excludes
            continue
        for line in f.read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            text = str(r.get("answer", "")).strip()
            if not text or text in seen:
                continue
            seen.add(text)
            external.append(
                {
                    "id": f"{f.parent.name}/{f.stem}/{r['id']}",
                    "question_id": f"{f.parent.name}:{r['question_id']}",
                    "question": r["question"],
                    "reference_answers": r["reference_answers"],
                    "answer": r["answer"],
                    "label": r.get("label"),
                }
            )
    rng = random.Random(seed)
    take = rng.sample(external, max(0, min(len(external), n - len(rows))))
    rows = (rows + take)[:n]
    rng.shuffle(rows)
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    mix: dict[str, int] = {}
    for r in rows:
        key = r["id"].split("/")[0] if "/" in r["id"] else "golden"
        mix[key] = mix.get(key, 0) + 1
    return {
        "rows": len(rows),
        "external_pool": len(external),
        "mix": mix,
        "mean_answer_chars": sum(len(r["answer"]) for r in rows) / max(1, len(rows)),
    }


def build_bank_input(n: int, path: Path, seed: int = 0) -> dict[str, Any]:
    """Up to n distinct answers to the bank's own questions: the golden set and the writers' batches in
    evals/writers. The learned model grades only these (on the external sets' questions it hands the
    embedding grade back), so its cost is measured here."""
    files = [REPO / "evals" / "golden.jsonl", *sorted((REPO / "evals" / "writers").glob("w*/ch*.jsonl"))]
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for f in files:
        for line in f.read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            text = r["answer"].strip()
            if text and text not in seen:
                seen.add(text)
                rows.append({k: r[k] for k in ("id", "question_id", "answer", "label")})
    random.Random(seed).shuffle(rows)
    rows = rows[:n]
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return {
        "rows": len(rows),
        "mix": {"bank questions (golden + writers)": len(rows)},
        "mean_answer_chars": sum(len(r["answer"]) for r in rows) / max(1, len(rows)),
    }


def repeat_input(src: Path, dst: Path, times: int) -> int:
    lines = src.read_text(encoding="utf-8").splitlines()
    with dst.open("w", encoding="utf-8") as f:
        for k in range(times):
            for line in lines:
                r = json.loads(line)
                r["id"] = f"{k}:{r['id']}"
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return len(lines) * times


# ---------------------------------------------------------------------------------------- processes


def _tree_rss_kb(root: int) -> int:
    """Resident memory of a process and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            status = (d / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        pid = int(d.name)
        children.setdefault(int(fields.get("PPid", "0").strip()), []).append(pid)
        rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0]) if "VmRSS" in fields else 0
    total, todo = 0, [root]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo += children.get(p, [])
    return total


# A small launcher starts each run and reports the child's own peak RSS (ru_maxrss from wait4): a child
# forked straight from this process (which holds the model) could be charged for this process's pages.
LAUNCHER = """
import json, os, subprocess, sys
cmd = json.loads(sys.argv[1])
with open(sys.argv[2], "w") as out:
    p = subprocess.Popen(cmd, stdout=out)
    _, status, usage = os.wait4(p.pid, 0)
print(json.dumps({"rss_mb": usage.ru_maxrss / 1024, "code": os.waitstatus_to_exitcode(status)}))
"""


def run_cli(args: Sequence[str], workdir: Path) -> dict[str, Any]:
    """Run `tutor ARGS`: wall time, the summary line's figures, the process's peak RSS, and the peak RSS of
    its whole process tree (sampled every 0.2 s: Ray's driver, raylet and actors together)."""
    cmd = [str(BIN / "tutor"), *args]
    stdout = workdir / "stdout.txt"
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, json.dumps(cmd), str(stdout)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak_tree = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak_tree
        while not stop.wait(0.2):
            peak_tree = max(peak_tree, _tree_rss_kb(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    launcher_out, err = proc.communicate()
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    result = json.loads(launcher_out.strip().splitlines()[-1])
    out = stdout.read_text()
    if result["code"] != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result['code']}): {err[-3000:]}")
    m = SUMMARY.search(out)
    assert m, out
    graded = int(m.group(2).replace(",", ""))
    return {
        "wall_s": wall,
        "rows": int(m.group(1).replace(",", "")),
        "graded": graded,
        "errors": int(m.group(3).replace(",", "")),
        "grading_s": float(m.group(4)),
        "answers_per_s": float(m.group(5)),
        "answers_per_s_with_startup": graded / wall,
        "peak_rss_mb": result["rss_mb"],
        "peak_rss_tree_mb": peak_tree / 1024,
        "summary": out.strip().splitlines()[-1],
    }


# ---------------------------------------------------------------------------------------- in-process


def _load(in_path: Path) -> tuple[Any, Any, list[bytes], list[Any]]:
    from tutor.batch.rows import Questions, parse, read_lines
    from tutor.grader import get_grader
    from tutor.rubric import default_bank

    grader = get_grader()
    questions = Questions(default_bank())
    lines = [raw for _, raw in read_lines(in_path)]
    rows = [parse(n, raw, questions) for n, raw in enumerate(lines, start=1)]
    return grader, questions, lines, rows


def warm_rubrics(in_path: Path) -> dict[str, Any]:
    """Embed every rubric text of the input once (cached on disk in TUTOR_HOME), so that no measured run
    pays for rubric embedding and every run sees the same cache."""
    from tutor.batch.rows import Item

    t0 = time.perf_counter()
    grader, _, _, rows = _load(in_path)
    qs = {it.question.model_dump_json(): it.question for it in rows if isinstance(it, Item)}
    grader.warm(list(qs.values()))
    return {"questions": len(qs), "seconds": time.perf_counter() - t0}


def _embedding(grader: Any) -> Any:
    """The embedding grader inside (the learned grader wraps one) or the grader itself."""
    return getattr(grader, "embedding", grader)


def _prepared(grader: Any, items: Sequence[Any]) -> list[tuple[Any, bool]]:
    """Each answer's guards-and-units step, and whether the grader also embeds the whole answer (the
    learned grader does, in the same call, for the questions its model grades)."""
    applies = getattr(grader, "applies", lambda _q: False)
    emb = _embedding(grader)
    return [(emb._prepare(it.question, it.answer), applies(it.question)) for it in items]


def _texts(prepared: list[tuple[Any, bool]]) -> list[str]:
    """The distinct texts one encoder call receives for these answers."""
    from tutor.models import Grade

    return list(
        dict.fromkeys(
            t
            for p, whole in prepared
            if not isinstance(p, Grade)
            for t in (*(u.text for u in p.units), *((p.text,) if whole else ()))
        )
    )


def _distinct_units(grader: Any, items: Sequence[Any]) -> list[str]:
    return _texts(_prepared(grader, items))


def same_run(in_path: Path, batch_size: int, workdir: Path, block_batches: int = 4) -> dict[str, Any]:
    """The local engine's whole path against the bare encoder on the same units, in blocks of a few
    batches, interleaved (even blocks encoder first, odd blocks engine first) so that a machine whose load
    changes slows both alike. The engine grades a block as it grades a file (two batches in flight); the
    encoder encodes the distinct units of each of the block's batches, one call per batch."""
    from tutor.batch.engine import Summary, run_local
    from tutor.batch.outfile import OutFile
    from tutor.batch.rows import Item, iter_rows
    from tutor.batch.scoring import Scorer

    grader, questions, lines, rows = _load(in_path)
    scorer = Scorer(grader)
    t_bare = t_full = 0.0
    units = answers = 0
    block = batch_size * block_batches
    out_path = workdir / "same-run.jsonl"
    out_path.unlink(missing_ok=True)
    with OutFile(out_path) as out:
        for k, start in enumerate(range(0, len(lines), block)):
            chunk = lines[start : start + block]
            batches = [
                _distinct_units(grader, [r for r in rows[i : i + batch_size] if isinstance(r, Item)])
                for i in range(start, start + len(chunk), batch_size)
            ]
            units += sum(map(len, batches))
            answers += sum(isinstance(r, Item) for r in rows[start : start + block])

            def bare(batches: list[list[str]] = batches) -> None:
                for texts in batches:
                    grader.embedder.encode(texts)

            def full(chunk: list[bytes] = chunk) -> None:
                run_local(iter_rows(chunk, questions), out, scorer, Summary(engine="local"), batch_size)

            for fn in (bare, full) if k % 2 == 0 else (full, bare):
                t = time.perf_counter()
                fn()
                dt = time.perf_counter() - t
                if fn is bare:
                    t_bare += dt
                else:
                    t_full += dt
    return {
        "answers": answers,
        "distinct_units": units,
        "units_per_answer": units / answers,
        "encoder_s": t_bare,
        "grader_s": t_full,
        "encoder_units_per_s": units / t_bare,
        "grader_units_per_s": units / t_full,
        "grader_answers_per_s": answers / t_full,
        "ratio": t_bare / t_full,
    }


def breakdown(
    in_path: Path, batch_size: int, sample: int, judge_sample: int, workdir: Path
) -> dict[str, Any]:
    """Per-answer cost of each step of one batch, summed over `sample` answers."""
    import numpy as np

    from tutor.batch.outfile import OutFile
    from tutor.batch.rows import Item, parse
    from tutor.batch.scoring import Scorer, graded_row, make_judge
    from tutor.models import Grade

    grader, questions, lines, _ = _load(in_path)
    emb = grader.embedder
    tok = getattr(emb, "_tokenizer", None)
    lines = lines[:sample]
    model = hasattr(grader, "model")
    steps = ("read", "guards", "tokenise", "encode", "match", *(("model",) if model else ()), "write")
    cost = dict.fromkeys(steps, 0.0)
    n = units = tokens = 0
    out_path = workdir / "breakdown.jsonl"
    out_path.unlink(missing_ok=True)
    with OutFile(out_path) as out:
        for start in range(0, len(lines), batch_size):
            t = time.perf_counter()
            rows = [parse(i, raw, questions) for i, raw in enumerate(lines[start : start + batch_size], 1)]
            items = [r for r in rows if isinstance(r, Item)]
            cost["read"] += time.perf_counter() - t
            t = time.perf_counter()
            prepared = _prepared(grader, items)
            cost["guards"] += time.perf_counter() - t
            texts = _texts(prepared)
            if tok is not None:
                t = time.perf_counter()
                tokens += sum(len(e.ids) for e in tok.encode_batch(texts))
                cost["tokenise"] += time.perf_counter() - t
            t = time.perf_counter()
            vecs = emb.encode(texts)
            cost["encode"] += time.perf_counter() - t
            index = {x: i for i, x in enumerate(texts)}
            t = time.perf_counter()
            grades = [
                p
                if isinstance(p, Grade)
                else _embedding(grader)._finish(p, vecs[[index[u.text] for u in p.units]])
                for p, _ in prepared
            ]
            cost["match"] += time.perf_counter() - t
            if model:
                # The learned model's own step, as LearnedGrader.grade_many takes it: features (nearest
                # labeled answers, rubric similarities) for the answers it grades, then one ONNX call.
                t = time.perf_counter()
                todo = [
                    i
                    for i, ((p, whole), g) in enumerate(zip(prepared, grades, strict=True))
                    if whole and g.signals and not isinstance(p, Grade)
                ]
                if todo:
                    x = np.stack(
                        [
                            grader.features(
                                items[i].question,
                                items[i].answer,
                                grades[i],
                                vecs[index[prepared[i][0].text]],
                            )
                            for i in todo
                        ]
                    )
                    probs = grader.model.predict_proba(x)
                    for i, p in zip(todo, probs, strict=True):
                        grades[i] = grader._final(grades[i], p)
                cost["model"] += time.perf_counter() - t
            t = time.perf_counter()
            out.append([graded_row(it, g) for it, g in zip(items, grades, strict=True)])
            cost["write"] += time.perf_counter() - t
            n += len(items)
            units += len(texts)
    # encode() tokenises too: its model share is what is left after tokenising.
    cost["encode"] -= cost["tokenise"]
    # The judge path's own cost (threads, prompts, parsing, fusion, the reply cache) with the scripted
    # judge, which answers instantly, on embedding grades made beforehand: the model's time comes on top.
    items = [r for r in (parse(i, raw, questions) for i, raw in enumerate(lines[:judge_sample], 1))]
    items = [r for r in items if isinstance(r, Item)]
    base = Scorer(grader).grade(items)

    class Made:  # hands the judge path the grades already made
        t = getattr(grader, "t", None)

        def grade_many(self, _items: Any) -> list[Grade]:
            return base

    t = time.perf_counter()
    Scorer(Made(), make_judge("fake:partial", 8)).grade(items)
    t_judge = time.perf_counter() - t
    per = {k: 1000 * v / n for k, v in cost.items()}
    per["judge_path"] = 1000 * t_judge / len(items)
    return {
        "answers": n,
        "distinct_units": units,
        "tokens": tokens,
        "ms_per_answer": per,
        "judge_sample": len(items),
    }


# ---------------------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000, help="distinct answers (default 10,000)")
    ap.add_argument("--big", type=int, default=100_000, help="rows for the memory run (0: skip)")
    ap.add_argument("--batch-size", type=int, default=None, help="default: grade-batch's default")
    ap.add_argument("--sample", type=int, default=2000, help="answers in the cost breakdown")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: local,ray,same,breakdown")
    ap.add_argument(
        "--grader",
        choices=("learned", "embedding"),
        default=os.environ.get("TUTOR_GRADER") or "learned",
        help="the grader every part measures (default: TUTOR_GRADER, else learned)",
    )
    ap.add_argument(
        "--source",
        choices=("mix", "bank"),
        default="mix",
        help="mix: golden + external sets (default); bank: golden + writers' answers to the bank's questions",
    )
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--workdir", type=Path, help="keep inputs and outputs here (default: a temp dir)")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    if args.source == "mix" and not SHARED.is_dir():
        sys.exit(f"{SHARED} not found: the external sets are needed to build the input")

    from tutor.batch import DEFAULT_BATCH_SIZE
    from tutor.paths import models_dir

    batch = args.batch_size or DEFAULT_BATCH_SIZE
    os.environ.setdefault("TUTOR_MODELS", str(models_dir()))
    os.environ["TUTOR_HOME"] = tempfile.mkdtemp(prefix="tutor-bench-batch-home-")
    os.environ["TUTOR_GRADER"] = args.grader  # this process and every `tutor grade-batch` it starts
    work = args.workdir or Path(tempfile.mkdtemp(prefix="tutor-bench-batch-"))
    work.mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {
        "n": args.n,
        "batch_size": batch,
        "cpus": os.cpu_count(),
        "grader": args.grader,
        "source": args.source,
        "loadavg_start": os.getloadavg(),
        "started": time.strftime("%Y-%m-%d %H:%M"),
    }
    src = work / "answers.jsonl"
    res["input"] = (build_input if args.source == "mix" else build_bank_input)(args.n, src)
    print(f"input: {res['input']}", flush=True)
    res["rubric_warmup"] = warm_rubrics(src)
    print(f"rubric embeddings cached: {res['rubric_warmup']}", flush=True)
    bs = ["--batch-size", str(batch), "--no-progress"]

    if "local" not in skip:
        out = work / "local.jsonl"
        out.unlink(missing_ok=True)
        res["local"] = run_cli(["grade-batch", str(src), "--out", str(out), *bs], work)
        print(f"local: {res['local']}", flush=True)
    if "ray" not in skip:
        out = work / "ray.jsonl"
        out.unlink(missing_ok=True)
        res["ray"] = run_cli(
            ["grade-batch", str(src), "--out", str(out), "--engine", "ray", "--num-actors", "2", *bs], work
        )
        print(f"ray: {res['ray']}", flush=True)
        if "local" not in skip:
            same = sorted(json.loads(x)["id"] for x in (work / "local.jsonl").read_text().splitlines())
            res["ray_same_ids_as_local"] = same == sorted(
                json.loads(x)["id"] for x in out.read_text().splitlines()
            )
    if "same" not in skip:
        res["same_run"] = same_run(src, batch, work)
        print(f"grader vs bare encoder: {res['same_run']}", flush=True)
    if "breakdown" not in skip:
        res["breakdown"] = breakdown(src, batch, args.sample, min(500, args.sample), work)
        print(f"breakdown: {res['breakdown']}", flush=True)
    if args.big:
        big = work / "answers-big.jsonl"
        rows = repeat_input(src, big, max(1, args.big // res["input"]["rows"]))
        out = work / "big.jsonl"
        out.unlink(missing_ok=True)
        res["big"] = {"rows": rows, **run_cli(["grade-batch", str(big), "--out", str(out), *bs], work)}
        print(f"big: {res['big']}", flush=True)
    res["loadavg_end"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    report(res)


def report(r: dict[str, Any]) -> None:
    print(f"\ngrader: {r.get('grader', 'embedding')}, input: {r.get('source', 'mix')}")
    print(
        f"{r['input']['rows']:,} distinct answers, batch size {r['batch_size']}, {r['cpus']} CPUs, started {r['started']}"
    )
    print(f"input mix: {r['input']['mix']}; mean answer {r['input']['mean_answer_chars']:.0f} chars")
    for name in ("local", "ray"):
        if name in r:
            v = r[name]
            print(
                f"{name:6} {v['answers_per_s']:6.1f} answers/s grading ({v['answers_per_s_with_startup']:.1f} with "
                f"start-up, wall {v['wall_s']:.0f} s), peak RSS {v['peak_rss_mb']:.0f} MB "
                f"(process tree {v['peak_rss_tree_mb']:.0f} MB)"
            )
    if "same_run" in r:
        s = r["same_run"]
        print(
            f"same run, same {s['distinct_units']:,} units ({s['units_per_answer']:.2f}/answer): bare encoder "
            f"{s['encoder_units_per_s']:.0f} units/s, grader end to end {s['grader_units_per_s']:.0f} units/s "
            f"= {100 * s['ratio']:.1f}% ({s['grader_answers_per_s']:.1f} answers/s)"
        )
    if "breakdown" in r:
        b = r["breakdown"]
        total = sum(v for k, v in b["ms_per_answer"].items() if k != "judge_path")
        parts = ", ".join(f"{k} {v:.2f} ms" for k, v in b["ms_per_answer"].items())
        print(
            f"per answer ({b['answers']} answers, {b['tokens'] / b['answers']:.0f} tokens): {parts}; total {total:.2f} ms"
        )
    if "big" in r:
        v = r["big"]
        print(
            f"{v['rows']:,} rows: {v['answers_per_s']:.1f} answers/s, peak RSS {v['peak_rss_mb']:.0f} MB "
            f"(process tree {v['peak_rss_tree_mb']:.0f} MB)"
        )
    print(f"load average {r['loadavg_start'][0]:.1f} at start, {r['loadavg_end'][0]:.1f} at end")


if __name__ == "__main__":
    main()
