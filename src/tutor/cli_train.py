"""`tutor train`: rebuild the learned grader from the labeled answers in the repository."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tutor.cli import app, fail, out


@app.command()
def train(
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Where to write the model (default: the shipped model's place)."),
    ] = None,
    no_test: Annotated[bool, typer.Option("--no-test", help="Skip the report on the test sets.")] = False,
) -> None:
    """Train the verdict model (make train): writer-grouped CV, fit, ONNX export, model card."""
    from tutor.grading.learned import TRAINED_DIR
    from tutor.grading.train import repo_root, run_training, write_model_card_md
    from tutor.paths import GraderUnavailable

    root = repo_root()
    if not (root / "evals" / "writers" / "split.json").is_file():
        fail(
            f"{root}/evals/writers/split.json not found: `tutor train` runs in a source checkout (make train)"
        )
    target = out_dir or TRAINED_DIR
    try:
        record = run_training(target, root, evaluate_tests=not no_test, log=out.print)
    except (GraderUnavailable, ValueError) as e:  # ValueError: bad labeled data, named by file/row
        fail(str(e))
    md = write_model_card_md(target)
    out.print(f"model written to {target} ({record['train_seconds']} s); model card: {md}")
