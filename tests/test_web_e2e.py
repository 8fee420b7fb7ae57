"""`tutor web` end to end in a real headless Chromium (Debian's `chromium`, driven by Playwright; nothing
downloads a browser). The real command serves a temporary TUTOR_HOME on a free port of 127.0.0.1.

One test walks through a study session the way a learner does, including killing the server right after
an answer is posted. Screenshots of each step go to reports/web-e2e/ (git-ignored). Without chromium or
playwright the test is skipped, except in CI (CI set), where that is a failure: `make browser` installs it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.web_helpers import CORRECT_13_1, FIRST_SENTENCE_13_1, XSS

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parent.parent
SHOTS = REPO / "reports" / "web-e2e"
TUTOR = Path(sys.executable).parent / "tutor"
STARTUP_TIMEOUT = 300  # model load + embedding all 40 rubrics in a fresh TUTOR_HOME on a busy 2-core machine


def unavailable(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{why}: CI must run the browser tests (`make browser` installs Debian's chromium)")
    pytest.skip(why)


@pytest.fixture(scope="module")
def browser() -> Any:
    chromium = shutil.which("chromium")
    if chromium is None:
        unavailable("chromium is not installed")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield b
        b.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`tutor web` in a subprocess; its output goes to a log file shown when something fails."""

    def __init__(self, home: Path, port: int):
        self.home, self.port = home, port
        self.url = f"http://127.0.0.1:{port}"
        self.log = home.parent / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *args: str) -> None:
        env = {**os.environ, "TUTOR_HOME": str(self.home), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(TUTOR), "web", "--port", str(self.port), *args], env=env, stdout=log, stderr=log
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"tutor web exited with {self.proc.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(self.url + "/", timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise AssertionError(f"tutor web did not answer within {STARTUP_TIMEOUT} s:\n{self.output()}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]


def attempts_in_db(home: Path) -> list[tuple[str, str, str | None]]:
    db = home / "progress.sqlite"
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute("SELECT question_id, answer, verdict FROM attempts ORDER BY id").fetchall()
    except sqlite3.OperationalError:  # the schema is being created
        return []
    finally:
        con.close()


def test_study_in_a_real_browser(browser: Any, tmp_path: Path) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):
        old.unlink()
    home = tmp_path / "home"
    server = Server(home, free_port())
    server.start()
    assert f"tutor web: {server.url}/ (only this computer can connect" in server.output()
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    problems: list[str] = []  # uncaught script errors, console errors (a CSP violation is one), dialogs
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)

    def on_dialog(d: Any) -> None:
        problems.append(f"dialog: {d.message}")
        d.dismiss()

    page.on("dialog", on_dialog)
    step = iter(range(1, 100))

    def shot(name: str) -> None:
        page.screenshot(path=str(SHOTS / f"{next(step):02d}-{name}.png"), full_page=True)

    base = server.url
    try:
        # Home: nothing due yet, 40 new questions, the first new one offered.
        page.goto(base + "/")
        assert page.inner_text("#start").startswith("Start a new question")
        assert page.locator("#new-list li").first.inner_text().startswith("ch11-1")
        shot("home")

        # A correct paraphrase of ch13-1, submitted with Ctrl+Enter.
        page.goto(base + "/q/ch13-1")
        page.fill("#answer", CORRECT_13_1)
        assert page.inner_text("#count") == f"{len(CORRECT_13_1):,}"
        shot("answer")
        page.press("#answer", "Control+Enter")
        page.wait_for_url(re.compile(r"/attempts/\d+\?submitted=1$"))
        assert page.inner_text(".result .verdict-word") == "Correct"
        # The learned grader's expected grade: at or above the shipped model's cut-off for "correct".
        from tutor.grading.learned import LearnedModel

        assert float(page.inner_text(".result .score")) >= LearnedModel.load().card.cut_correct
        first_mark = page.locator("#answer-text mark.hl-covered").first
        assert first_mark.inner_text() == FIRST_SENTENCE_13_1
        assert page.locator("#answer-text sup.ref-kp").all_inner_texts() == ["1", "2", "3", "4"]
        assert page.locator("#next-review").inner_text().startswith("Next review of ch13-1:")
        shot("feedback")

        # A hint on another question, then an answer that is graded without a highlight.
        page.goto(base + "/q/ch14-3")
        page.click("#hint-button")
        page.wait_for_selector(".hint-list li")
        assert page.inner_text(".hint-list li").startswith("Hint 1/2:")
        assert page.inner_text("#hint-button") == "Show a hint (1 left)"
        page.fill("#answer", "It is about how the data is split between the GPUs.")
        shot("hint")
        page.click("#submit")
        page.wait_for_url(re.compile(r"/attempts/\d+"))
        assert "1 hint used" in page.inner_text(".crumbs")
        hint_attempt = page.url.split("?")[0]

        # Dispute that grade; the comment is shown as typed, never as markup or template.
        comment = "My answer <b>does</b> say {{ it }} **twice**"
        page.click("text=Dispute this grade")
        page.fill("#comment", comment)
        page.click("#dispute-button")
        page.wait_for_selector("#disputed")
        assert page.inner_text("#disputed q.comment") == comment
        assert page.locator("#disputed b").count() == 0
        shot("disputed")

        # Reload: the dispute, the progress and the history were saved.
        page.goto(hint_attempt)
        page.reload()
        assert page.inner_text("#disputed q.comment") == comment
        page.goto(base + "/progress")
        assert page.inner_text("#summary").startswith("2 of 40 questions answered, in 2 attempts")
        assert page.inner_text("#row-ch13-1 .verdict-word") == "Correct"
        assert page.locator("#mastery-chart").count() == 1 and page.locator("#forecast-chart").count() == 1
        shot("progress")
        page.goto(base + "/q/ch14-3/history")
        assert "1 hint" in page.inner_text("#history") and comment in page.inner_text("#history")
        assert page.evaluate("localStorage.getItem('tutor-draft:ch13-1')") is None  # cleared on feedback

        # An answer full of markup and script: shown literally, nothing runs.
        page.goto(base + "/q/ch15-1")
        page.fill("#answer", XSS)
        page.click("#submit")
        page.wait_for_url(re.compile(r"/attempts/\d+"))
        assert page.evaluate("window.__xss") is None
        assert page.locator("#answer-text script, #answer-text img, #answer-text a").count() == 0
        assert page.inner_text("#answer-text") == XSS
        shot("script-answer")

        # Kill the server the moment the answer is in the database (before its grade, most of the
        # time: the long answer takes a while to grade), restart it: the answer is in the history.
        long_answer = (
            "Loss is masked on the prompt tokens so the model only learns the responses. " * 55
        ).strip()
        page.goto(base + "/q/ch16-1")
        page.fill("#answer", long_answer)
        page.click("#submit", no_wait_after=True)
        deadline = time.monotonic() + 120
        while not any(a[0] == "ch16-1" for a in attempts_in_db(home)):
            assert time.monotonic() < deadline, "the answer never reached the database"
            time.sleep(0.005)
        server.kill()
        graded_before_kill = [a[2] for a in attempts_in_db(home) if a[0] == "ch16-1"]
        # After the restart, with the LLM judge (a scripted one whose two readings disagree).
        server.start("--judge", "fake:partial,bias=first")
        page.goto(base + "/q/ch16-1/history")
        history = page.inner_text("#history")
        assert long_answer[:200] in history
        assert ("not graded" in history) == (graded_before_kill == [None])
        shot("history-after-kill")
        if graded_before_kill == [None]:  # killed mid-grading: the saved answer can be graded now
            page.click("text=grade it now")
            page.click("#grade-now")
            page.wait_for_selector(".result .verdict-word")
            assert page.locator("#answer-text mark").count() >= 1

        # The judged grade arrives after the embedding grade, and the page says the readings disagreed.
        page.goto(base + "/q/ch13-1")
        page.fill("#answer", CORRECT_13_1)
        page.click("#submit")
        page.wait_for_url(re.compile(r"/attempts/\d+"))
        assert page.inner_text(".result .verdict-word") == "Correct"
        page.wait_for_selector("#judge-note", timeout=30_000)
        note = page.inner_text("#judge-note")
        assert (
            "reading the reference first it said partial; reading your answer first it said correct" in note
        )
        assert "The two readings disagree" in note
        shot("judged")
        assert problems == []
    except BaseException:
        with_log = SHOTS / "server.log"
        with_log.write_text(server.output())
        page.screenshot(path=str(SHOTS / "failure.png"), full_page=True)
        raise
    finally:
        server.stop()
        page.close()
