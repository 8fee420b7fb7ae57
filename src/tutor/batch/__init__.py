"""Batch grading of large answer files: `tutor grade-batch` (resumable, streaming; local or Ray Data).

The pieces: `rows` reads and checks input lines, `outfile` owns the resumable output file, `scoring`
grades one batch (the same code in every engine), `engine` runs the local engine and the whole job,
`ray_engine` runs the batches on Ray Data actors (optional extra `tutor[scale]`).
"""

from tutor.batch.engine import (
    DEFAULT_BATCH_SIZE,
    ENGINES,
    DuplicateIds,
    Engine,
    Summary,
    grade_file,
    grade_stream,
)
from tutor.batch.outfile import OutFileError

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "ENGINES",
    "DuplicateIds",
    "Engine",
    "OutFileError",
    "Summary",
    "grade_file",
    "grade_stream",
]
