"""The real `tutor study` in a pseudo-terminal (pexpect), with the real embedding model.

Kept to two tests: each pays for loading the model in a fresh process.
"""

from __future__ import annotations

import io
import os
import re
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

pexpect = pytest.importorskip("pexpect")

from tutor.store import Store  # noqa: E402

TUTOR = Path(sys.executable).parent / "tutor"
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
GRADING_TIMEOUT = 300  # model load + first rubric embedding on a busy 2-core machine


def spawn(home: Path, *args: str):
    env = {**os.environ, "TUTOR_HOME": str(home), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    child = pexpect.spawn(
        str(TUTOR), ["study", *args], env=env, encoding="utf-8", dimensions=(50, 120), timeout=60
    )
    child.logfile_read = io.StringIO()
    return child


def screen(child) -> str:
    return ANSI.sub("", child.logfile_read.getvalue()).replace("\r", "")


def test_study_session_in_a_terminal(tutor_home: Path, bank) -> None:
    q = bank.questions[0]
    c = spawn(tutor_home, "--new", "2")
    try:
        c.expect(re.escape(q.id))
        c.expect("> ")
        c.sendline("?")
        c.expect(r"Hint 1/\d")
        c.expect("> ")
        # A clear correct answer by evals/LABELING.md: the core claim with its reason and the implication.
        first = (
            "For a fixed compute budget, Chinchilla grows parameters and training tokens equally, about 20 "
            "tokens per parameter."
        )
        second = "It means GPT-3 and Gopher were too big for the data they saw, so they were undertrained."
        c.sendline(first)
        c.sendline(second)
        c.sendline("")
        c.expect("Answer saved")
        c.expect("Reference explanation", timeout=GRADING_TIMEOUT)
        c.expect("dispute")
        c.sendline("q")
        c.expect(pexpect.EOF)
    finally:
        c.close(force=True)
    assert c.exitstatus == 0, screen(c)
    out = screen(c)
    assert q.hints[0][:40] in out
    assert re.search(r"\bCORRECT\s+score \d\.\d\d", out) and "INCORRECT" not in out
    assert "Covered" in out and "you wrote: “" in out  # a key point quoted back from the answer
    assert "Reference explanation" in out and q.reference[:40] in out
    assert "Session over" in out

    with Store(tutor_home / "progress.sqlite") as s:
        [a] = s.attempts()
        assert a.question_id == q.id and a.answer == f"{first}\n{second}"
        assert a.hints_used == 1 and a.verdict == "correct"
        assert a.grade is not None and a.grade.feedback
        card = s.card(q.id)
        assert card is not None and card.due > datetime.now(UTC)  # scheduled for a later review


def test_answer_survives_a_kill_right_after_submitting(tutor_home: Path, bank) -> None:
    q = bank.questions[0]
    c = spawn(tutor_home, "--new", "1")
    try:
        c.expect("> ")
        c.sendline("Chinchilla says to scale parameters and tokens together.")
        c.sendline("")
        c.expect("Answer saved")
        c.kill(signal.SIGKILL)
        c.expect(pexpect.EOF)
    finally:
        c.close(force=True)
    assert c.signalstatus == signal.SIGKILL
    with Store(tutor_home / "progress.sqlite") as s:  # opens cleanly after the kill (WAL recovery)
        [a] = s.attempts()
        assert a.question_id == q.id
        assert a.answer == "Chinchilla says to scale parameters and tokens together."
