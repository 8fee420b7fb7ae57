"""`tutor web` routes through FastAPI's test client: every page, the API, CSRF refusals, 404s, escaping,
long and empty answers, concurrent writers, the judge in the background. Grading is the real embedding
grader (loaded once per test session); each test has its own TUTOR_HOME."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.web_helpers import (
    CORRECT_13_1,
    FIRST_SENTENCE_13_1,
    MISCONCEPTION_13_1,
    XSS,
    csrf_token,
)
from tutor.cli import app as cli_app
from tutor.judge.fake import FakeJudge
from tutor.models import Grade, Question
from tutor.store import Store
from tutor.study import flag_candidates
from tutor.web import create_app

BASE = "http://127.0.0.1:8000"
runner = CliRunner()


@pytest.fixture
def client(tutor_home: Path, grader) -> Iterator[TestClient]:
    # `grader` loads the model once per session; warm=False skips re-embedding all 40 rubrics per test.
    app = create_app(warm=False)
    with TestClient(app, base_url=BASE) as c:
        yield c


def store(home: Path) -> Store:
    return Store(home / "progress.sqlite")


def submit(client: TestClient, qid: str, answer: str, hints_used: int = 0, **extra: str) -> str:
    """Post an answer as the page's form does; returns the feedback page's URL."""
    token = csrf_token(client, f"/q/{qid}")
    data = {"csrf_token": token, "answer": answer, "hints_used": str(hints_used), "started_at": "", **extra}
    r = client.post(f"/q/{qid}/answer", data=data, follow_redirects=False)
    assert r.status_code == 303, r.text
    return r.headers["location"]


# ---------------------------------------------------------------------------------------------- pages


def test_every_page_renders_offline(client: TestClient, tutor_home: Path) -> None:
    home = client.get("/")
    assert home.status_code == 200
    assert "0</strong> reviews due now" in home.text and "40</strong> new questions" in home.text
    assert 'href="/q/ch11-1"' in home.text  # the first new question, as `tutor study` orders them
    assert 'id="chapter-13"' in home.text and "13 · Mixed precision training: fp16, bf16" in home.text
    q = client.get("/q/ch13-1")
    assert q.status_code == 200 and "bf16 is generally considered the safer" in q.text
    assert 'id="hint-button"' in q.text and "Show a hint (2 left)" in q.text and 'id="skip"' in q.text
    url = submit(client, "ch13-1", CORRECT_13_1)
    attempt_id = int(re.search(r"/attempts/(\d+)", url).group(1))  # type: ignore[union-attr]
    pages = {
        "/progress": "Mastery by chapter",
        "/q/ch13-1/history": f'id="attempt-{attempt_id}"',
        url: "Reference explanation",
        f"/attempts/{attempt_id}/feedback": 'id="feedback"',
        "/docs": "/static/docs/swagger-ui-bundle.js",
        "/static/app/htmx.min.js": "htmx 2.0.11",
        "/static/app/app.js": "Ctrl+Enter",
        "/static/app/app.css": ".hl-covered",
        "/static/docs/swagger-ui-bundle.js": "SwaggerUIBundle",
    }
    for path, expected in pages.items():
        r = client.get(path)
        assert r.status_code == 200, path
        assert expected in r.text, path
        # Offline: no page loads a script, style, image or font from another host.
        assert not re.search(r'(src|href)="(https?:)?//', r.text), path
    assert client.get("/openapi.json").json()["paths"].keys() >= {
        "/api/questions",
        "/api/grade",
        "/api/progress",
    }


def test_study_round_serves_reviews_first_and_skip_moves_on(client: TestClient, tutor_home: Path) -> None:
    first = client.get("/study", follow_redirects=False)
    assert first.headers["location"] == "/q/ch11-1"  # nothing due: the first new question
    assert client.get("/study?after=ch11-1", follow_redirects=False).headers["location"] == "/q/ch11-2"
    assert (
        client.get("/study?chapter=13", follow_redirects=False).headers["location"] == "/q/ch13-1?chapter=13"
    )
    # An answer graded incorrect is due again in 10 minutes: not now, so the round moves on.
    submit(client, "ch11-1", "I have no real idea, maybe it is about GPUs.")
    assert client.get("/study", follow_redirects=False).headers["location"] == "/q/ch11-2"
    last = client.get("/study?chapter=11&after=ch11-4", follow_redirects=False)
    assert last.headers["location"] == "/?done=1"
    assert "That was the last question of this round" in client.get("/?done=1").text


# ---------------------------------------------------------------------------------------------- answering


def test_correct_paraphrase_is_graded_correct_and_its_sentences_highlighted(
    client: TestClient, tutor_home: Path
) -> None:
    url = submit(client, "ch13-1", CORRECT_13_1)
    assert url.endswith("?submitted=1")
    page = client.get(url).text
    from tutor.grader import get_grader
    from tutor.rubric import default_bank

    expected = get_grader().grade(default_bank().get("ch13-1"), CORRECT_13_1)  # the library's own grade
    assert expected.verdict == "correct"
    assert (
        f'<span class="verdict-word">Correct</span> <span class="score">{expected.score:.2f}</span>' in page
    )
    # The sentence that earned key point 1 is marked inside the answer, with the point's number after it.
    first = FIRST_SENTENCE_13_1.replace("'", "&#39;")
    assert f'<mark class="hl-covered ">{first}</mark><sup class="ref ref-kp">1</sup>' in page
    assert page.count('<sup class="ref ref-kp">') == 4 and "Key points missed" not in page
    assert "Reference explanation" in page and 'id="next-review"' in page
    assert 'data-clear-draft="ch13-1"' in page
    with store(tutor_home) as s:
        [a] = s.attempts("ch13-1")
        assert (a.answer, a.verdict, a.hints_used, a.flagged) == (CORRECT_13_1, "correct", 0, False)
        assert s.review_count("ch13-1") == 1
        card = s.card("ch13-1")
        assert card is not None and card.due > card.last_review  # type: ignore[operator]


def test_misconception_is_shown_with_its_correction(client: TestClient, tutor_home: Path) -> None:
    page = client.get(submit(client, "ch13-1", MISCONCEPTION_13_1)).text
    assert '<span class="verdict-word">Incorrect</span>' in page
    assert '<mark class="hl-misconception ">' in page and '<sup class="ref ref-mis">M1</sup>' in page
    assert "Correction:</strong>" in page and "Key points missed" in page


def test_hints_are_counted_and_saved_with_the_answer(client: TestClient, tutor_home: Path) -> None:
    token = csrf_token(client, "/q/ch14-3")
    htmx = client.post(
        "/q/ch14-3/hint", data={"csrf_token": token, "hints_used": "0"}, headers={"HX-Request": "true"}
    )
    assert htmx.status_code == 200 and htmx.text.lstrip().startswith('<div id="hints"')
    assert (
        "Hint 1/2:" in htmx.text and 'name="hints_used" value="1"' in htmx.text and "<html" not in htmx.text
    )
    assert "Show a hint (1 left)" in htmx.text
    # Without JavaScript the whole page comes back, with the draft answer kept.
    plain = client.post(
        "/q/ch14-3/hint", data={"csrf_token": token, "hints_used": "1", "answer": "my draft so far"}
    )
    assert "Hint 2/2:" in plain.text and "my draft so far</textarea>" in plain.text
    assert 'id="no-more-hints"' in plain.text and 'name="hints_used" value="2"' in plain.text
    submit(client, "ch14-3", "It decides how much of the data each GPU sees.", hints_used=2)
    submit(client, "ch14-1", "Something.", hints_used=99)  # a forged count is capped at the hints there are
    with store(tutor_home) as s:
        assert [a.hints_used for a in s.attempts()] == [2, 1]


def test_dispute_is_recorded_like_the_cli_flag(client: TestClient, tutor_home: Path) -> None:
    url = submit(client, "ch13-1", MISCONCEPTION_13_1)
    attempt_id = int(re.search(r"/attempts/(\d+)", url).group(1))  # type: ignore[union-attr]
    page = client.get(url).text
    assert "Dispute this grade" in page
    token = csrf_token(client, url)
    r = client.post(
        f"/attempts/{attempt_id}/dispute",
        data={"csrf_token": token, "comment": "  I meant the exponent, not precision.  "},
        headers={"HX-Request": "true"},
    )
    assert r.status_code == 200 and 'id="disputed"' in r.text and "I meant the exponent" in r.text
    with store(tutor_home) as s:
        [f] = s.flagged()
        assert (f.id, f.flag_comment) == (attempt_id, "I meant the exponent, not precision.")
        [row] = flag_candidates(s)
        assert row["learner_claim"] == "I meant the exponent, not precision." and row["label"] is None
    # Without a comment, as `!` then Enter in `tutor study`.
    url2 = submit(client, "ch13-2", "No idea.")
    second = int(re.search(r"/attempts/(\d+)", url2).group(1))  # type: ignore[union-attr]
    r = client.post(f"/attempts/{second}/dispute", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303
    with store(tutor_home) as s:
        assert s.attempt(second).flag_comment == "(no comment)"
    assert "You disputed this grade" in client.get(f"/attempts/{second}").text


def test_empty_answer_is_graded_as_the_cli_grades_it(client: TestClient, tutor_home: Path) -> None:
    page = client.get(submit(client, "ch13-1", "   \r\n  ")).text
    cli = json.loads(runner.invoke(cli_app, ["grade", "ch13-1", "   \n ", "--json"]).stdout)
    assert (cli["verdict"], cli["score"]) == ("incorrect", 0)
    assert '<span class="verdict-word">Incorrect</span> <span class="score">0.00</span>' in page
    assert "Nothing was answered" in page and "(empty answer)" in page
    with store(tutor_home) as s:
        [a] = s.attempts()
        assert (a.answer, a.verdict, a.score) == ("", "incorrect", 0.0)
        assert a.grade is not None and a.grade.flags == cli["flags"] == ["empty"]


def test_over_long_answer_is_saved_whole_and_graded_on_its_first_5000(
    client: TestClient, tutor_home: Path
) -> None:
    long = "bf16 has the same exponent width as fp32, so its dynamic range is the same. " * 100  # 7,600
    page = client.get(submit(client, "ch13-1", long)).text
    assert "Only the first 5,000 characters were graded." in page
    with store(tutor_home) as s:
        [a] = s.attempts()
        assert a.answer == long.strip() and len(a.answer) > 7000
        assert a.grade is not None and "truncated" in a.grade.flags
    cli = json.loads(runner.invoke(cli_app, ["grade", "ch13-1", long, "--json"]).stdout)
    api = client.post("/api/grade", json={"question_id": "ch13-1", "answer": long}).json()
    assert api == cli and "truncated" in api["flags"]
    # Past the request guard (100,000 characters) the post is refused whole: a 413 page, nothing saved.
    token = csrf_token(client)
    r = client.post("/q/ch13-1/answer", data={"csrf_token": token, "answer": "x" * 100_001})
    assert r.status_code == 413 and "over 100,000 characters" in r.text
    with store(tutor_home) as s:
        assert len(s.attempts()) == 1


# ---------------------------------------------------------------------------------------------- safety


def test_form_posts_without_a_valid_token_are_refused(client: TestClient, tutor_home: Path) -> None:
    token = csrf_token(client)
    form = {"answer": "forged answer", "hints_used": "0"}
    cases = {
        "no token": ({**form}, {}),
        "wrong token": ({**form, "csrf_token": "0" * 64}, {}),
        "other site": ({**form, "csrf_token": token}, {"Origin": "http://evil.example"}),
        "other port": ({**form, "csrf_token": token}, {"Origin": "http://127.0.0.1:9999"}),
        "cross-site fetch": ({**form, "csrf_token": token}, {"Sec-Fetch-Site": "cross-site"}),
    }
    for name, (data, headers) in cases.items():
        r = client.post("/q/ch13-1/answer", data=data, headers=headers, follow_redirects=False)
        assert r.status_code == 403, name
        assert "cross-site request protection" in r.text, name
    # A token minted for another browser (another cookie) is worthless in this one.
    other = TestClient(client.app, base_url=BASE)
    r = other.post("/q/ch13-1/answer", data={**form, "csrf_token": token}, follow_redirects=False)
    assert r.status_code == 403
    for path in ("/q/ch13-1/hint", "/attempts/1/dispute", "/attempts/1/grade"):
        assert client.post(path, data={"comment": "x"}).status_code == 403, path
    with store(tutor_home) as s:
        assert s.attempts() == []
    ok = client.post(
        "/q/ch13-1/answer",
        data={**form, "csrf_token": token},
        headers={"Origin": BASE},
        follow_redirects=False,
    )
    assert ok.status_code == 303


def test_learner_text_is_escaped_everywhere(client: TestClient, tutor_home: Path) -> None:
    url = submit(client, "ch15-1", XSS)
    attempt_id = int(re.search(r"/attempts/(\d+)", url).group(1))  # type: ignore[union-attr]
    token = csrf_token(client, url)
    client.post(f"/attempts/{attempt_id}/dispute", data={"csrf_token": token, "comment": XSS})
    for path in (url, "/q/ch15-1/history", f"/attempts/{attempt_id}/feedback"):
        r = client.get(path)
        assert "<script>window.__xss" not in r.text and "<img src=x" not in r.text, path
        assert "&lt;script&gt;window.__xss = 1; alert(&#34;xss&#34;)&lt;/script&gt;" in r.text, path
        assert "{{ 7 * 7 }}" in r.text and "{% if true %}jinja{% endif %}" in r.text, path
        assert "**not bold**" in r.text and "&amp;amp; done" in r.text, path
        assert "script-src 'self'" in r.headers["content-security-policy"], path
    with store(tutor_home) as s:
        assert s.attempt(attempt_id).answer == XSS and s.attempt(attempt_id).flag_comment == XSS


def test_unknown_ids_are_404_pages(client: TestClient) -> None:
    r = client.get("/q/ch13-9")
    assert r.status_code == 404 and "text/html" in r.headers["content-type"]
    assert "There is no question &#39;ch13-9&#39;." in r.text and "Did you mean:" in r.text
    assert '<a href="/q/ch13-2">ch13-2</a>' in r.text
    assert client.get("/q/ch13-9/history").status_code == 404
    token = csrf_token(client)
    assert client.post("/q/nope/answer", data={"csrf_token": token, "answer": "x"}).status_code == 404
    r = client.get("/attempts/999")
    assert r.status_code == 404 and "There is no attempt #999." in r.text
    r = client.get("/no/such/page")
    assert r.status_code == 404 and "There is no page at this address." in r.text
    api = client.post("/api/grade", json={"question_id": "ch13-9", "answer": "x"})
    assert api.status_code == 404 and "Did you mean: ch13-" in api.json()["detail"]


def test_errors_never_show_a_stack_trace(
    tutor_home: Path, grader, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(q: Question, answer: str) -> Grade:
        raise RuntimeError("internal detail /secret/path")

    with TestClient(
        create_app(grade_fn=broken, warm=False), base_url=BASE, raise_server_exceptions=False
    ) as c:
        r = c.post("/q/ch13-1/answer", data={"csrf_token": csrf_token(c), "answer": "kept anyway"})
        assert r.status_code == 500 and "was saved (attempt #1)" in r.text
        assert "Traceback" not in r.text and "/secret/path" not in r.text
        # The server's log has it all.
        [logged] = [rec for rec in caplog.records if rec.name == "tutor.web"]
        assert logged.getMessage() == "grading attempt 1 failed" and logged.exc_info is not None
        assert "internal detail /secret/path" in str(logged.exc_info[1])
        import tutor.web.app as web_app

        monkeypatch.setattr(web_app, "progress_report", lambda *a, **k: 1 / 0)
        r = c.get("/progress")
        assert r.status_code == 500 and "Something went wrong" in r.text and "ZeroDivision" not in r.text
        api = c.get("/api/progress")
        assert api.status_code == 500 and "Traceback" not in api.text
    with store(tutor_home) as s:
        [a] = s.attempts()
        assert a.answer == "kept anyway" and not a.graded
    with TestClient(create_app(warm=False), base_url=BASE) as c:  # no grade yet: nothing to dispute
        r = c.post("/attempts/1/dispute", data={"csrf_token": csrf_token(c, "/attempts/1"), "comment": "x"})
        assert r.status_code == 409 and "no grade to dispute" in r.text
    # The saved answer can be graded later, from its page.
    with TestClient(create_app(warm=False), base_url=BASE) as c:
        page = c.get("/attempts/1")
        assert 'id="grade-now"' in page.text
        r = c.post(
            "/attempts/1/grade", data={"csrf_token": csrf_token(c, "/attempts/1")}, follow_redirects=False
        )
        assert r.status_code == 303
        again = c.post("/attempts/1/grade", data={"csrf_token": csrf_token(c, "/attempts/1")})
        assert again.status_code == 200  # already graded: nothing happens twice
    with store(tutor_home) as s:
        assert s.attempt(1).verdict == "incorrect" and s.review_count("ch13-1") == 1


def test_requests_for_another_host_name_are_refused(tutor_home: Path) -> None:
    # A DNS-rebinding page (evil.example resolving to 127.0.0.1) must not reach the app.
    with TestClient(create_app(warm=False), base_url="http://evil.example") as c:
        assert c.get("/").status_code == 400
    with TestClient(create_app(warm=False), base_url="http://localhost:8000") as c:
        assert c.get("/").status_code == 200


# ---------------------------------------------------------------------------------------------- API


def test_api_returns_the_cli_json(client: TestClient, tutor_home: Path) -> None:
    cli_questions = json.loads(runner.invoke(cli_app, ["questions", "--json"]).stdout)
    assert client.get("/api/questions").json() == cli_questions
    assert [q["id"] for q in client.get("/api/questions?chapter=17").json()] == [
        "ch17-1",
        "ch17-2",
        "ch17-3",
        "ch17-4",
    ]
    assert client.get("/api/questions?chapter=3").status_code == 404
    api = client.post("/api/grade", json={"question_id": "ch13-1", "answer": CORRECT_13_1})
    cli = json.loads(runner.invoke(cli_app, ["grade", "ch13-1", CORRECT_13_1, "--json"]).stdout)
    assert api.status_code == 200 and api.json() == cli and cli["verdict"] == "correct"
    with store(tutor_home) as s:
        assert s.attempts() == []  # like `tutor grade`, the API saves nothing
    submit(client, "ch12-1", "Pipeline parallelism splits layers across GPUs.")
    cli_progress = json.loads(runner.invoke(cli_app, ["progress", "--json"]).stdout)
    assert client.get("/api/progress").json() == cli_progress
    assert cli_progress[1]["seen"] == 1
    # Validation errors are JSON, and a body sent as a form (what another site can post) is not parsed.
    assert client.post("/api/grade", json={"answer": "x"}).status_code == 422
    plain = client.post(
        "/api/grade",
        content=json.dumps({"question_id": "ch13-1", "answer": "x"}),
        headers={"Content-Type": "text/plain"},
    )
    assert plain.status_code == 422
    no_judge = client.post("/api/grade", json={"question_id": "ch13-1", "answer": "x", "judge": True})
    assert no_judge.status_code == 400 and "without --judge" in no_judge.json()["detail"]


# ---------------------------------------------------------------------------------------------- concurrency


def test_two_tabs_and_the_cli_at_once_lose_no_attempt(tutor_home: Path, grader) -> None:
    app = create_app(warm=False)
    qids = ["ch11-1", "ch11-2", "ch11-3", "ch12-1", "ch12-2", "ch12-3"]
    cli_input = "".join(f"CLI answer {i} about scaling.\n\n\n" for i in range(3))  # answer, blank, Enter
    env = {**os.environ, "TUTOR_HOME": str(tutor_home)}
    cli = subprocess.Popen(
        [str(Path(sys.executable).parent / "tutor"), "study", "--new", "3"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    posted: list[tuple[str, str]] = []
    errors: list[BaseException] = []

    def tab(name: str) -> None:
        # Keeps answering (the same questions the CLI serves) for as long as the CLI session runs.
        c = TestClient(app, base_url=BASE)  # its own cookie: another browser; one app, one server
        try:
            for i in range(60):
                qid = qids[i % len(qids)]
                answer = f"Tab {name} answer {i}: it scales the compute budget."
                submit(c, qid, answer)
                posted.append((qid, answer))
                if cli.poll() is not None and i >= 3:
                    return
        except BaseException as e:
            errors.append(e)

    tabs = [threading.Thread(target=tab, args=(name,)) for name in "AB"]
    for t in tabs:
        t.start()
    out, _ = cli.communicate(cli_input, timeout=300)
    for t in tabs:
        t.join(timeout=300)
    assert not errors, errors
    assert cli.returncode == 0 and "Answered 3" in out, out
    with store(tutor_home) as s:
        attempts = s.attempts()
        assert sorted((a.question_id, a.answer) for a in attempts if a.answer.startswith("Tab ")) == sorted(
            posted
        )
        assert sorted(a.answer for a in attempts if a.answer.startswith("CLI")) == [
            f"CLI answer {i} about scaling." for i in range(3)
        ]
        assert len(attempts) == len(posted) + 3 and all(a.graded for a in attempts)
        # Every graded attempt advanced its question's card exactly once, whoever wrote it.
        for qid in {a.question_id for a in attempts}:
            assert s.review_count(qid) == sum(a.question_id == qid for a in attempts), qid


def test_grading_runs_off_the_event_loop(tutor_home: Path) -> None:
    started = threading.Event()

    def slow(q: Question, answer: str) -> Grade:
        started.set()
        time.sleep(2.0)
        return Grade(question_id=q.id, score=0.5, verdict="partial", feedback="slow", grader="slow")

    with TestClient(create_app(grade_fn=slow, warm=False), base_url=BASE) as c:
        result: dict[str, int] = {}
        t = threading.Thread(
            target=lambda: result.update(
                code=c.post("/api/grade", json={"question_id": "ch13-1", "answer": "x"}).status_code
            )
        )
        t.start()
        assert started.wait(5)
        t0 = time.perf_counter()
        assert c.get("/").status_code == 200
        assert time.perf_counter() - t0 < 1.0  # served while the grade is still running
        t.join()
        assert result["code"] == 200


def test_startup_loads_the_model_once(tutor_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tutor.web.app as web_app

    calls: list[int] = []
    monkeypatch.setattr(web_app, "warm_grader", lambda qs: calls.append(len(qs)))
    with TestClient(create_app(), base_url=BASE) as c:
        assert calls == [40]  # before the first request
        c.get("/")
        c.post("/api/grade", json={"question_id": "ch13-1", "answer": "x"})
    assert calls == [40]


# ---------------------------------------------------------------------------------------------- the judge


class GatedJudge(FakeJudge):
    """The scripted judge, held until the test opens the gate: a judged grade still in progress."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.gate = threading.Event()

    def complete(self, request):  # type: ignore[no-untyped-def]
        assert self.gate.wait(30), "the test never opened the gate"
        return super().complete(request)


def test_judged_grade_replaces_the_embedding_grade_when_it_arrives(tutor_home: Path, grader) -> None:
    # Reference first it says partial, answer first one level higher: the two orders disagree.
    judge = GatedJudge("partial", bias="first", spec="fake:partial,bias=first")
    app = create_app(judge=judge, warm=False)
    with TestClient(app, base_url=BASE) as c:
        url = submit(c, "ch13-1", CORRECT_13_1)
        attempt_id = int(re.search(r"/attempts/(\d+)", url).group(1))  # type: ignore[union-attr]
        page = c.get(url).text
        # The embedding grade at once, recorded, with the judge still working.
        assert '<span class="verdict-word">Correct</span>' in page and 'id="judging"' in page
        assert (
            f'hx-get="/attempts/{attempt_id}/feedback"' in page and "judge: fake:partial,bias=first" in page
        )
        t0 = time.perf_counter()
        assert c.get("/api/progress").status_code == 200 and time.perf_counter() - t0 < 1.0
        with store(tutor_home) as s:
            pending = s.attempt(attempt_id)
            assert pending.verdict == "correct" and pending.grade is not None and pending.grade.judge is None
        judge.gate.set()
        assert app.state.tutor.jobs.wait(attempt_id, timeout=30) == "done"
        fragment = c.get(f"/attempts/{attempt_id}/feedback").text
        assert 'id="judging"' not in fragment and 'id="judge-note"' in fragment
        assert (
            "reading the reference first it said partial; reading your answer first it said correct"
            in fragment
        )
        assert "The two readings disagree" in fragment
    with store(tutor_home) as s:
        a = s.attempt(attempt_id)
        assert a.grade is not None and a.grade.judge is not None and a.grade.judge.rule == "inconsistent"
        # The calibration makes an inconsistent judge abstain: the embedding verdict stands, reviewed once.
        assert a.verdict == "correct" and s.review_count("ch13-1") == 1


def test_a_failing_judge_leaves_the_embedding_grade(tutor_home: Path, grader) -> None:
    judge = FakeJudge("correct", mode="down", spec="fake:down")
    app = create_app(judge=judge, warm=False)
    with TestClient(app, base_url=BASE) as c:
        url = submit(c, "ch13-1", MISCONCEPTION_13_1)
        attempt_id = int(re.search(r"/attempts/(\d+)", url).group(1))  # type: ignore[union-attr]
        assert app.state.tutor.jobs.wait(attempt_id, timeout=30) == "done"
        page = c.get(url).text
        assert '<span class="verdict-word">Incorrect</span>' in page
        assert "The LLM judge could not grade this answer" in page


def test_an_answer_the_judge_never_saw_says_so(tutor_home: Path, grader) -> None:
    # Answered while the server ran without the judge (or the judge's job was lost in a restart).
    with TestClient(create_app(warm=False), base_url=BASE) as c:
        url = submit(c, "ch13-1", CORRECT_13_1)
        assert 'id="judge-absent"' not in c.get(url).text
    judged = create_app(judge=FakeJudge("correct", spec="fake:correct"), warm=False)
    with TestClient(judged, base_url=BASE) as c:
        page = c.get(url).text
        assert 'id="judge-absent"' in page and 'id="judging"' not in page


def test_startup_line_says_who_can_connect() -> None:
    from tutor.cli_web import is_loopback, startup_line

    assert startup_line("127.0.0.1", 8000) == (
        "tutor web: http://127.0.0.1:8000/ (only this computer can connect; Ctrl-C stops it)"
    )
    assert startup_line("::1", 8001).startswith("tutor web: http://[::1]:8001/ (only this computer")
    assert "REACHABLE FROM OTHER COMPUTERS" in startup_line("0.0.0.0", 8000)
    assert "REACHABLE FROM OTHER COMPUTERS" in startup_line("192.168.1.20", 8000)
    assert [is_loopback(h) for h in ("localhost", "127.0.0.2", "[::1]", "0.0.0.0", "example.org")] == [
        True,
        True,
        True,
        False,
        False,
    ]


def test_web_command_refuses_a_bad_judge_and_a_busy_port(tutor_home: Path) -> None:
    import socket

    bad = runner.invoke(cli_app, ["web", "--judge", "gpt"])
    assert bad.exit_code == 2 and "unknown judge 'gpt'" in bad.output
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        busy = runner.invoke(cli_app, ["web", "--port", str(port)])
    assert busy.exit_code == 2 and f"port {port} on 127.0.0.1 is already in use" in busy.output


def test_web_command_refuses_an_unusable_grader_before_serving(tutor_home: Path, monkeypatch) -> None:
    import socket

    monkeypatch.setenv("TUTOR_GRADER", "nope")  # like a missing or damaged trained model: GraderUnavailable
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free once closed
    res = runner.invoke(cli_app, ["web", "--port", str(port)])
    assert res.exit_code == 2 and "TUTOR_GRADER='nope' is not a grader" in res.output, res.output
