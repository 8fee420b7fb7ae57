"""A scripted judge for tests and offline demos: canned verdicts, optional position bias, a record of
every request it received (so tests can assert on exactly what a real model would have seen)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable

from tutor.judge.base import BaseJudge, Completion, JudgeError, JudgeRequest, JudgeSettings, JudgeSpecError
from tutor.models import VERDICTS, Verdict

_SCORES: dict[Verdict, int] = {"correct": 9, "partial": 6, "incorrect": 2}


def answer_shown_first(request: JudgeRequest) -> bool:
    """True if the learner's answer comes before the reference in the request's user message."""
    user = request.messages[1]["content"] if len(request.messages) > 1 else request.messages[0]["content"]
    return user.find("<learner_answer>") < user.find("Reference explanation:")


class FakeJudge(BaseJudge):
    backend = "fake"

    def __init__(
        self,
        verdict: Verdict = "correct",
        *,
        bias: str | None = None,
        script: Iterable[str | Exception] = (),
        mode: str | None = None,
        spec: str | None = None,
        settings: JudgeSettings | None = None,
    ):
        """`bias="first"`/`"second"`: one verdict level higher when the answer is shown first/second.
        `script`: replies (text) or exceptions to raise, consumed one per request before the canned
        verdict. `mode="garbage"`: every reply is unparseable; `mode="down"`: every request fails."""
        if bias not in (None, "first", "second"):
            raise JudgeSpecError(f"fake judge bias must be 'first' or 'second', not {bias!r}")
        model = ",".join(x for x in (verdict, f"bias={bias}" if bias else "", mode or "") if x)
        super().__init__(model=model, spec=spec, settings=settings or JudgeSettings(backoff_s=0.0))
        self.verdict: Verdict = verdict
        self.bias = bias
        self.mode = mode
        self.script: list[str | Exception] = list(script)
        self.requests: list[JudgeRequest] = []
        self._lock = threading.Lock()

    @property
    def prompts(self) -> list[str]:
        """The user message of every request received, in arrival order."""
        return [r.messages[-1]["content"] if r.messages[-1]["role"] == "user" else "" for r in self.requests]

    def complete(self, request: JudgeRequest) -> Completion:
        with self._lock:
            self.requests.append(request)
            item = self.script.pop(0) if self.script else None
        if isinstance(item, Exception):
            raise item
        if isinstance(item, str):
            return Completion(item, prompt_tokens=100, completion_tokens=20)
        if self.mode == "down":
            raise JudgeError("fake judge is down")
        if self.mode == "garbage":
            return Completion("I think this answer is pretty good!", prompt_tokens=100, completion_tokens=8)
        verdict = self.verdict
        first = answer_shown_first(request)
        if (self.bias == "first" and first) or (self.bias == "second" and not first):
            verdict = VERDICTS[min(VERDICTS.index(verdict) + 1, len(VERDICTS) - 1)]
        props = request.schema["properties"]
        kps = list(props["key_points_covered"]["properties"])
        mis = list(props["misconceptions_found"]["properties"])
        core = re.search(r"^- (\w+) \(core point\)", request.messages[1]["content"], re.MULTILINE)
        made = kps if verdict == "correct" else [core.group(1)] if core and verdict == "partial" else []
        held = mis[:1] if verdict == "incorrect" else []
        reply = {
            "key_points_covered": {k: k in made for k in kps},
            "misconceptions_found": {m: m in held for m in mis},
            "verdict": verdict,
            "score": _SCORES[verdict],
            "reason": f"Scripted {verdict} verdict.",
        }
        return Completion(json.dumps(reply), prompt_tokens=100, completion_tokens=40)


def from_spec(spec: str, arg: str | None, settings: JudgeSettings | None) -> FakeJudge:
    verdict: Verdict = "correct"
    bias = mode = None
    for opt in filter(None, (arg or "").split(",")):
        opt = opt.strip()
        if opt in VERDICTS:
            verdict = opt  # type: ignore[assignment]
        elif opt.startswith("bias="):
            bias = opt.removeprefix("bias=")
        elif opt in ("garbage", "down"):
            mode = opt
        else:
            raise JudgeSpecError(
                f"unknown fake judge option {opt!r} in {spec!r}; options: correct|partial|incorrect, "
                "bias=first|bias=second, garbage, down (e.g. fake:partial,bias=first)"
            )
    return FakeJudge(verdict, bias=bias, mode=mode, spec=spec, settings=settings)
