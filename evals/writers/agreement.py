"""Inter-rater agreement between the writers' own labels and the blind second rater (issue 11).

    python3 evals/writers/agreement.py            # QWK, accuracy, confusion matrix, disagreements
    python3 evals/writers/agreement.py --json OUT  # also write the disagreements for adjudication

The second rater saw only LABELING.md, the rubrics and the answers under opaque ids (to_label.jsonl);
key.json maps those ids back to the writers' rows after rating.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sklearn.metrics import accuracy_score, cohen_kappa_score, confusion_matrix

HERE = Path(__file__).resolve().parent
ORDER = ["incorrect", "partial", "correct"]


def load() -> list[dict]:
    key = json.loads((HERE / "second_rater" / "key.json").read_text())
    second = {
        r["rid"]: r
        for r in map(json.loads, (HERE / "second_rater" / "labels.jsonl").read_text().splitlines())
    }
    first = {}
    for f in HERE.glob("w*/ch*.jsonl"):
        for line in f.read_text(encoding="utf-8").splitlines():
            if line.strip():
                r = json.loads(line)
                first[r["id"]] = r
    rows = []
    for rid, row_id in sorted(key.items()):
        w = first[row_id]
        rows.append(
            {
                "rid": rid,
                "id": row_id,
                "question_id": w["question_id"],
                "answer": w["answer"],
                "writer_label": w["label"],
                "writer_rationale": w["rationale"],
                "second_label": second[rid]["label"],
                "second_reason": second[rid]["reason"],
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", type=Path, help="write the disagreements here")
    args = ap.parse_args()
    rows = load()
    a = [ORDER.index(r["writer_label"]) for r in rows]
    b = [ORDER.index(r["second_label"]) for r in rows]
    print(f"{len(rows)} answers rated twice")
    print(f"QWK {cohen_kappa_score(a, b, weights='quadratic'):.3f}  accuracy {accuracy_score(a, b):.3f}")
    print("confusion (rows: writer incorrect/partial/correct, columns: second rater):")
    for label, line in zip(ORDER, confusion_matrix(a, b, labels=[0, 1, 2]), strict=True):
        print(f"  {label:9} {' '.join(f'{v:4d}' for v in line)}")
    dis = [r for r in rows if r["writer_label"] != r["second_label"]]
    print(f"{len(dis)} disagreements")
    if args.json:
        args.json.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in dis) + "\n")


if __name__ == "__main__":
    main()
