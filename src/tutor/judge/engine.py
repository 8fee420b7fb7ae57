"""Running a judge on one answer: both orders concurrently, retries, one re-ask, the cache.

Failure policy (the grade never depends on the judge being up):
- TransientJudgeError (timeout, 429, 5xx): up to `settings.max_retries` retries with exponential backoff,
  honouring Retry-After; then the order is an `error`.
- A reply that does not parse (not JSON, wrong fields, out-of-range score): one re-ask showing the error;
  if that fails too, the order is `unscored` -- never a verdict of "incorrect".
- Any other exception from a backend: `error`.
Only parsed replies are cached.
"""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

from pydantic import ValidationError

from tutor.judge.base import Completion, Judge, JudgeError, JudgeRequest, TransientJudgeError
from tutor.judge.cache import JudgeCache, cache_key
from tutor.judge.prompts import JudgePrompts, reply_schema
from tutor.models import JudgeCall, JudgeOrder, JudgeReply, Question, Verdict

ORDERS: tuple[JudgeOrder, JudgeOrder] = ("A", "B")
# Score bands per verdict, as the prompt states them; a score outside its verdict's band is moved into it,
# and a verdict that contradicts the reply's own findings is corrected (see parse_reply).
SCORE_BANDS: dict[Verdict, tuple[int, int]] = {"incorrect": (0, 3), "partial": (4, 7), "correct": (8, 10)}

_sleep = time.sleep  # tests replace it to check backoff without waiting


@lru_cache(maxsize=4)
def default_prompts() -> JudgePrompts:
    return JudgePrompts.load()


def parse_reply(text: str, q: Question) -> JudgeReply:
    """Parse a judge reply; raise ValueError saying what is wrong (shown to the model in the re-ask)."""
    s = text.strip()
    fence = re.search(r"```(?:json)?\s*(.*?)```", s, re.DOTALL)
    if fence:
        s = fence.group(1).strip()
    try:
        data = json.loads(s)
    except json.JSONDecodeError:
        start, end = s.find("{"), s.rfind("}")
        if start < 0 or end <= start:
            raise ValueError("the reply is not a JSON object") from None
        try:
            data = json.loads(s[start : end + 1])
        except json.JSONDecodeError as e:
            raise ValueError(f"the reply is not valid JSON ({e.msg})") from None
    if not isinstance(data, dict):
        raise ValueError("the reply is JSON but not an object")
    for field in ("key_points_covered", "misconceptions_found"):
        # The schema asks for {id: true/false}; lists of ids (other servers, older caches) are accepted too.
        if isinstance(data.get(field), dict):
            data[field] = [k for k, v in data[field].items() if v is True]
    try:
        reply = JudgeReply.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(object)"
        raise ValueError(f"field {field}: {first['msg']}") from None
    kp_ids = {k.id for k in q.key_points}
    mis_ids = {m.id for m in q.misconceptions}
    covered = [i for i in dict.fromkeys(reply.key_points_covered) if i in kp_ids]
    held = [i for i in dict.fromkeys(reply.misconceptions_found) if i in mis_ids]
    # The verdict must follow from the model's own findings, as the prompt's bands say: a small model
    # often ticks a misconception, or no key point, and still writes "correct".
    verdict: Verdict = "incorrect" if held or not covered else reply.verdict
    lo, hi = SCORE_BANDS[verdict]
    return reply.model_copy(
        update={
            "key_points_covered": covered,
            "misconceptions_found": held,
            "verdict": verdict,
            "score": min(max(reply.score, lo), hi),
            "reason": reply.reason.strip()[:300],
        }
    )


class JudgeEngine:
    """A judge plus its prompts and cache. Cheap to create; thread-safe."""

    def __init__(
        self, judge: Judge, prompts: JudgePrompts | None = None, cache: JudgeCache | bool | None = True
    ):
        self.judge = judge
        self.prompts = prompts or default_prompts()
        self.cache: JudgeCache | None = JudgeCache() if cache is True else (cache or None)

    def key(self, q: Question, answer: str, order: JudgeOrder, rubric_version: str) -> str:
        j = self.judge
        return cache_key(
            backend=j.backend,
            model=j.model,
            template=self.prompts.hash,
            rubric=rubric_version,
            question=q.id,
            answer=answer,
            order=order,
            params=j.settings.cache_params(),
        )

    def judge_answer(self, q: Question, answer: str, rubric_version: str) -> list[JudgeCall]:
        """Both orders, concurrently. Never raises: failures come back as error / unscored calls."""
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="judge") as pool:
            futures = [pool.submit(self.run_order, q, answer, o, rubric_version) for o in ORDERS]
            return [f.result() for f in futures]

    def run_order(self, q: Question, answer: str, order: JudgeOrder, rubric_version: str) -> JudgeCall:
        t0 = time.perf_counter()
        call = JudgeCall(order=order, status="error")
        try:
            call = self._run_order(q, answer, order, rubric_version, call)
        except Exception as e:  # a judge failure never loses a grade
            call.status, call.error = "error", f"{type(e).__name__}: {e}"
        call.latency_s = round(time.perf_counter() - t0, 3)
        return call

    def _run_order(
        self, q: Question, answer: str, order: JudgeOrder, rubric_version: str, call: JudgeCall
    ) -> JudgeCall:
        key = self.key(q, answer, order, rubric_version)
        if self.cache is not None and (hit := self.cache.get(key)) is not None:
            reply, pt, ct = hit
            return JudgeCall(
                order=order, status="ok", reply=reply, cached=True, prompt_tokens=pt, completion_tokens=ct
            )
        messages = self.prompts.messages(q, answer, order)
        schema = reply_schema(q, order)
        try:
            comp = self._request(JudgeRequest(messages, schema, order), call)
            try:
                reply = parse_reply(comp.text, q)
            except ValueError as err:
                retry = [
                    *messages,
                    {"role": "assistant", "content": comp.text[:2000]},
                    self.prompts.reask_message(str(err)),
                ]
                comp = self._request(JudgeRequest(retry, schema, order), call)
                try:
                    reply = parse_reply(comp.text, q)
                except ValueError as err2:
                    call.status, call.error, call.raw = (
                        "unscored",
                        f"unparseable reply: {err2}",
                        comp.text[:1000],
                    )
                    return call
        except JudgeError as e:
            call.status, call.error = "error", str(e)
            return call
        call.status, call.reply = "ok", reply
        if self.cache is not None:
            self.cache.put(key, reply, call.prompt_tokens, call.completion_tokens)
        return call

    def _request(self, request: JudgeRequest, call: JudgeCall) -> Completion:
        s = self.judge.settings
        attempt = 0
        while True:
            call.requests += 1
            try:
                with self.judge.limiter:
                    comp = self.judge.complete(request)
                call.prompt_tokens += comp.prompt_tokens
                call.completion_tokens += comp.completion_tokens
                return comp
            except TransientJudgeError as e:
                if attempt >= s.max_retries:
                    raise JudgeError(f"{e} (gave up after {attempt + 1} attempts)") from e
                wait = e.retry_after if e.retry_after is not None else s.backoff_s * 2**attempt
                _sleep(max(0.0, min(wait, s.max_backoff_s)))
                attempt += 1
