"""Merge the golden-set parts and assign the train/test split.

Question-stratified random split: each question's answers are shuffled with SEED and the first
round(TEST_SHARE * n) go to `test`. The test split is reported and never tuned on.

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


def main() -> None:
    rows = []
    for part in sorted(HERE.glob("golden_part_*.jsonl")):
        for n, line in enumerate(part.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise SystemExit(f"{part}:{n}: not valid JSON: {e}") from None
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
    ids = [r["id"] for r in out]
    if len(ids) != len(set(ids)):
        raise SystemExit("duplicate ids in the golden parts")
    (HERE / "golden.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out), "utf-8"
    )
    n_test = sum(r["split"] == "test" for r in out)
    print(f"wrote {len(out)} rows ({len(out) - n_test} train, {n_test} test) to evals/golden.jsonl")


if __name__ == "__main__":
    main()
