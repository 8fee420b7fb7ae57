"""Merge the golden-set parts and assign the train/test split.

Question-stratified random split: each question's answers are shuffled with SEED and the first
round(TEST_SHARE * n) go to `test`. The test split is reported and never tuned on.

Parts a and b (the first 560 answers) were split together. A part added later is split on its own, with
the same seed, so that adding answers never moves an existing answer between train and test.

    python evals/split.py            # writes evals/golden.jsonl from evals/golden_part_*.jsonl
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path

SEED = 20261127
TEST_SHARE = 0.4
HERE = Path(__file__).resolve().parent
FIRST_BATCH = "v1"
FIRST_PARTS = ("golden_part_a.jsonl", "golden_part_b.jsonl")


def _split(rows: list[dict]) -> list[dict]:
    by_q: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_q[r["question_id"]].append(r)
    rng = random.Random(SEED)
    out = []
    for qid in sorted(by_q, key=lambda q: (int(q[2:4]), int(q.split("-")[1]))):
        group = sorted(by_q[qid], key=lambda r: r["id"])
        rng.shuffle(group)
        n_test = round(TEST_SHARE * len(group))
        for i, r in enumerate(group):
            r["split"] = "test" if i < n_test else "train"
        out.extend(sorted(group, key=lambda r: r["id"]))
    return out


def merged() -> list[dict]:
    """Every part's rows with their split, in the order of evals/golden.jsonl."""
    batches: dict[str, list[dict]] = defaultdict(list)
    for part in sorted(HERE.glob("golden_part_*.jsonl")):
        batch = FIRST_BATCH if part.name in FIRST_PARTS else part.name
        for n, line in enumerate(part.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    batches[batch].append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{part}:{n}: not valid JSON: {e}") from None
    out = []
    for batch in sorted(batches, key=lambda b: b != FIRST_BATCH):
        out.extend(_split(batches[batch]))
    ids = [r["id"] for r in out]
    if len(ids) != len(set(ids)):
        raise ValueError("duplicate ids in the golden parts")
    return out


def main() -> None:
    try:
        out = merged()
    except ValueError as e:
        raise SystemExit(str(e)) from None
    (HERE / "golden.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out), "utf-8"
    )
    n_test = sum(r["split"] == "test" for r in out)
    print(f"wrote {len(out)} rows ({len(out) - n_test} train, {n_test} test) to evals/golden.jsonl")


if __name__ == "__main__":
    main()
