"""The openai and ollama backends through their real SDKs against small HTTP servers on 127.0.0.1.

The Ollama server here speaks Ollama's documented /api/chat (no Ollama server exists for this platform's
package registries); the OpenAI-compatible one replays errors (429 with Retry-After, 5xx) to check the
SDK errors are mapped onto retries.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import tutor.judge
import tutor.judge.engine as engine_mod
from tutor.grader import Thresholds
from tutor.judge.engine import JudgeEngine
from tutor.judge.fuse import grade_with_judge
from tutor.judge.ollama_backend import OllamaJudge
from tutor.judge.openai_backend import OpenAIJudge, parse_retry_after
from tutor.models import Grade, MissedPoint, Question

ANSWER = "bf16 has more mantissa bits than fp16, so it is more precise."
REPLY = {
    "key_points_covered": [],
    "misconceptions_found": ["more_mantissa"],
    "verdict": "incorrect",
    "score": 1,
    "reason": "It claims bf16 has more mantissa bits, which is backwards.",
}

Handler = Callable[[str, dict[str, Any]], tuple[int, dict[str, str], dict[str, Any]]]


class Recorder:
    def __init__(self, handler: Handler):
        self.handler = handler
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()


@pytest.fixture
def http_server() -> Iterator[Callable[[Handler], tuple[str, Recorder]]]:
    servers: list[ThreadingHTTPServer] = []

    def start(handler: Handler) -> tuple[str, Recorder]:
        rec = Recorder(handler)

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                with rec.lock:
                    rec.requests.append((self.path, body))
                status, headers, payload = rec.handler(self.path, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}", rec

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


@pytest.fixture
def allow_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tutor.judge, "ALLOW_MODEL_REQUESTS", True)  # only to the servers above


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waited: list[float] = []
    monkeypatch.setattr(engine_mod, "_sleep", waited.append)
    return waited


class StubGrader:
    t = Thresholds()

    def grade(self, q: Question, answer: str) -> Grade:
        return Grade(
            question_id=q.id,
            score=0.3,
            verdict="incorrect",
            feedback="emb",
            missed=[MissedPoint(id=k.id, text=k.text) for k in q.key_points],
            grader="embedding:stub",
        )


@pytest.fixture
def q(bank) -> Question:
    return bank.get("ch13-1")


def assert_both_orders(q: Question, bodies: list[dict[str, Any]], schema_of: Callable[[dict], dict]) -> None:
    """The recorded requests are one order A (reference first, ids as in the rubric) and one order B (answer
    first, ids reversed), each with its reply schema in the order its prompt lists the ids."""
    mis_ids = [m.id for m in q.misconceptions]
    kp_ids = [k.id for k in q.key_points]
    seen = []
    for body in bodies:
        user = body["messages"][1]["content"]
        answer_first = user.index("<learner_answer>") < user.index("Reference explanation:")
        step = -1 if answer_first else 1
        listed = sorted(kp_ids, key=lambda i: user.index(f"- {i}"))
        assert listed == kp_ids[::step]
        props = schema_of(body)["properties"]
        assert list(props["misconceptions_found"]["properties"]) == mis_ids[::step]
        assert list(props["key_points_covered"]["properties"]) == kp_ids[::step]
        seen.append("B" if answer_first else "A")
    assert sorted(set(seen)) == ["A", "B"]
    a = next(b for b, o in zip(bodies, seen, strict=True) if o == "A")
    b = next(b for b, o in zip(bodies, seen, strict=True) if o == "B")
    assert a["messages"][0] == b["messages"][0]  # same system prompt; only the user message's order differs
    for part in (ANSWER, q.reference.strip(), *(m.statement for m in q.misconceptions)):
        assert part in a["messages"][1]["content"] and part in b["messages"][1]["content"]


def ollama_chat(path: str, body: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
    """A reply in the shape Ollama documents for a non-streaming /api/chat."""
    assert path == "/api/chat"
    return (
        200,
        {},
        {
            "model": body["model"],
            "created_at": "2025-01-01T00:00:00Z",
            "message": {"role": "assistant", "content": json.dumps(REPLY)},
            "done": True,
            "done_reason": "stop",
            "total_duration": 1,
            "load_duration": 1,
            "prompt_eval_count": 812,
            "prompt_eval_duration": 1,
            "eval_count": 57,
            "eval_duration": 1,
        },
    )


def test_ollama_backend_sends_schema_options_no_stream_and_parses(
    q, http_server, allow_requests, monkeypatch
):
    url, rec = http_server(ollama_chat)
    monkeypatch.setenv("OLLAMA_HOST", url)  # the client reads it: no host passed
    judge = OllamaJudge("qwen2.5:1.5b")
    g = grade_with_judge(q, ANSWER, JudgeEngine(judge, cache=False), StubGrader())

    assert len(rec.requests) == 2
    for path, body in rec.requests:
        assert path == "/api/chat" and body["model"] == "qwen2.5:1.5b"
        assert body["stream"] is False
        assert body["format"]["type"] == "object"
        assert set(body["format"]["properties"]["verdict"]["enum"]) == {"correct", "partial", "incorrect"}
        assert set(body["format"]["properties"]["misconceptions_found"]["properties"]) == {
            m.id for m in q.misconceptions
        }
        assert body["options"]["temperature"] == 0 and body["options"]["seed"] == judge.settings.seed
        assert body["options"]["num_predict"] == judge.settings.max_tokens
        assert [m["role"] for m in body["messages"]] == ["system", "user"]
        assert "<learner_answer>\n" + ANSWER in body["messages"][1]["content"]
    assert_both_orders(q, [body for _, body in rec.requests], lambda body: body["format"])
    r = g.judge
    assert r is not None and r.backend == "ollama" and r.consistent is True and r.rule == "fused"
    w = StubGrader.t.judge_weight  # both orders agree: judge score 1/10 fused with the embedding's 0.3
    assert r.score == 0.1 and (g.verdict, g.score) == ("incorrect", round(w * 0.1 + (1 - w) * 0.3, 3))
    assert [c.reply.misconceptions_found for c in r.calls if c.reply] == [["more_mantissa"]] * 2
    assert (r.prompt_tokens, r.completion_tokens) == (2 * 812, 2 * 57)
    assert any(m.id == "more_mantissa" for m in g.misconceptions)


def test_ollama_server_errors_are_retried(q, http_server, allow_requests, no_sleep):
    seen = {"n": 0}

    def flaky(path: str, body: dict[str, Any]):
        seen["n"] += 1
        if seen["n"] <= 2:
            return 503, {}, {"error": "model is loading"}
        return ollama_chat(path, body)

    url, rec = http_server(flaky)
    g = grade_with_judge(q, ANSWER, JudgeEngine(OllamaJudge("m", host=url), cache=False), StubGrader())
    assert g.judge is not None and [c.status for c in g.judge.calls] == ["ok", "ok"]
    assert len(rec.requests) == 4 and len(no_sleep) == 2


def openai_chat(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "x",
        "object": "chat.completion",
        "created": 0,
        "model": body["model"],
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": json.dumps(REPLY)},
            }
        ],
        "usage": {"prompt_tokens": 700, "completion_tokens": 50, "total_tokens": 750},
    }


def test_openai_backend_request_shape_and_429_retry_after(
    q, http_server, allow_requests, no_sleep, monkeypatch
):
    seen = {"n": 0}

    def handler(path: str, body: dict[str, Any]):
        assert path == "/v1/chat/completions"
        seen["n"] += 1
        if seen["n"] == 1:
            return 429, {"Retry-After": "7"}, {"error": {"message": "slow down", "type": "rate_limit"}}
        if seen["n"] == 2:
            return 500, {}, {"error": {"message": "oops", "type": "server_error"}}
        return 200, {}, openai_chat(body)

    url, rec = http_server(handler)
    monkeypatch.setenv("OPENAI_BASE_URL", url + "/v1")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    g = grade_with_judge(q, ANSWER, JudgeEngine(OpenAIJudge("judge-model"), cache=False), StubGrader())
    assert g.judge is not None and [c.status for c in g.judge.calls] == ["ok", "ok"]
    assert 7.0 in no_sleep and len(no_sleep) == 2 and len(rec.requests) == 4
    body = rec.requests[-1][1]
    assert body["temperature"] == 0 and body["seed"] == 1234 and body["model"] == "judge-model"
    rf = body["response_format"]
    assert rf["type"] == "json_schema" and rf["json_schema"]["strict"] is True
    assert rf["json_schema"]["schema"]["required"] == [
        "misconceptions_found",
        "key_points_covered",
        "verdict",
        "score",
        "reason",
    ]
    assert g.judge.prompt_tokens == 1400 and g.judge.rule == "fused"
    w = StubGrader.t.judge_weight
    assert (g.verdict, g.score) == ("incorrect", round(w * 0.1 + (1 - w) * 0.3, 3))
    # The retried requests repeat their order's body; the two orders are A and B.
    bodies = [body for _, body in rec.requests]
    assert len({json.dumps(b, sort_keys=True) for b in bodies}) == 2
    assert_both_orders(q, bodies, lambda body: body["response_format"]["json_schema"]["schema"])


def test_openai_client_errors_are_not_retried(q, http_server, allow_requests, no_sleep):
    url, rec = http_server(lambda p, b: (404, {}, {"error": {"message": "no such model"}}))
    judge = OpenAIJudge("missing", base_url=url + "/v1", api_key="k")
    g = grade_with_judge(q, ANSWER, JudgeEngine(judge, cache=False), StubGrader())
    assert g.judge is not None and g.judge.rule == "fallback" and no_sleep == []
    assert len(rec.requests) == 2 and all("HTTP 404" in (c.error or "") for c in g.judge.calls)
    assert (g.verdict, g.score) == ("incorrect", 0.3)


def test_retry_after_parsing():
    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: no wait
