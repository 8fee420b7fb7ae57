"""Check one writer's batch file (evals/writers/<writer>/chNN.jsonl) before it is handed in.

Writers run this on their own files; it reads only the rubrics, never the grader or other batches.
    python3 evals/writers/check_batch.py evals/writers/wa/ch13.jsonl [--expect 10]
Exit 1 with one line per problem (file:line: what, how to fix); exit 0 prints a summary.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
LABELS = {"correct", "partial", "incorrect"}
FIELDS = {"id", "question_id", "writer", "style", "answer", "label", "annotations", "rationale"}
ANN_FIELDS = {"quote", "states", "contradicts", "holds"}


def rubric_ids() -> dict[str, tuple[list[str], list[str]]]:
    """question id -> (key point ids, misconception ids)."""
    out = {}
    for f in sorted((ROOT / "rubrics").glob("ch*.yaml")):
        for q in yaml.safe_load(f.read_text())["questions"]:
            out[q["id"]] = ([k["id"] for k in q["key_points"]], [m["id"] for m in q["misconceptions"]])
    return out


def check_row(row: dict, ids: dict, where: str) -> list[str]:
    errs = []
    missing, extra = FIELDS - row.keys(), row.keys() - FIELDS
    if missing:
        errs.append(f"{where}: missing field(s) {sorted(missing)}")
    if extra:
        errs.append(f"{where}: unknown field(s) {sorted(extra)}; allowed: {sorted(FIELDS)}")
    if missing:
        return errs
    qid = row["question_id"]
    if qid not in ids:
        return [*errs, f"{where}: unknown question_id {qid!r}"]
    if not row["id"].startswith(f"{row['writer']}-{qid}-"):
        errs.append(f"{where}: id {row['id']!r} must start with '{row['writer']}-{qid}-'")
    if row["label"] not in LABELS:
        errs.append(f"{where}: label {row['label']!r} must be one of {sorted(LABELS)}")
    if not isinstance(row["answer"], str):
        errs.append(f"{where}: answer must be a string")
        return errs
    kps, mis = ids[qid]
    anns = row["annotations"]
    if not isinstance(anns, list):
        return [*errs, f"{where}: annotations must be a list"]
    held, stated = set(), set()
    for i, a in enumerate(anns):
        w = f"{where}: annotations[{i}]"
        if not isinstance(a, dict) or a.keys() != ANN_FIELDS:
            errs.append(f"{w}: must have exactly the fields {sorted(ANN_FIELDS)}")
            continue
        if not a["quote"] or a["quote"] not in row["answer"]:
            errs.append(f"{w}: quote is not an exact substring of the answer: {a['quote'][:60]!r}")
        for field, allowed in (("states", kps), ("contradicts", kps), ("holds", mis)):
            bad = [x for x in a[field] if x not in allowed]
            if bad:
                errs.append(f"{w}: {field} has unknown id(s) {bad}; allowed for {qid}: {allowed}")
        held |= set(a["holds"]) | {f"contra:{x}" for x in a["contradicts"]}
        stated |= set(a["states"])
    if row["label"] == "correct" and held:
        errs.append(
            f"{where}: labeled correct but annotated with a misconception/contradiction {sorted(held)}"
        )
    if row["label"] == "correct" and kps[0] not in stated:
        errs.append(f"{where}: labeled correct but no annotation states the core key point {kps[0]!r}")
    if row["label"] == "partial" and not stated:
        errs.append(f"{where}: labeled partial but no annotation states any key point")
    return errs


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--expect", type=int, default=None, help="answers expected per question")
    args = ap.parse_args()
    ids = rubric_ids()
    errs: list[str] = []
    seen: set[str] = set()
    per_q: Counter = Counter()
    labels: Counter = Counter()
    for f in args.files:
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{f}:{n}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                errs.append(f"{where}: not valid JSON ({e})")
                continue
            if not isinstance(row, dict):
                errs.append(f"{where}: each line must be a JSON object")
                continue
            errs += check_row(row, ids, where)
            if row.get("id") in seen:
                errs.append(f"{where}: duplicate id {row.get('id')!r}")
            seen.add(row.get("id"))
            per_q[row.get("question_id")] += 1
            labels[row.get("label")] += 1
    if args.expect:
        chapters = {f.stem for f in args.files}
        for qid in ids:
            if qid.split("-")[0] in chapters and per_q[qid] < args.expect:
                errs.append(f"{qid}: {per_q[qid]} answers, expected {args.expect}")
    for e in errs:
        print(e)
    if errs:
        return 1
    print(f"ok: {sum(per_q.values())} answers, {dict(labels)}, per question {dict(per_q)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
