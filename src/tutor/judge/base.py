"""The judge interface every backend implements, its settings, and the errors backends raise.

A backend only turns a chat request into text (plus token counts) and maps its SDK's failures onto two
exceptions: `TransientJudgeError` (timeouts, 429, 5xx: worth retrying) and `JudgeError` (anything else).
Retries, the re-ask on an unparseable reply, caching and the position swap live in `engine.py`, once for
all backends.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from tutor.models import JudgeOrder


class JudgeError(Exception):
    """A judge call failed in a way that retrying will not fix (bad model name, auth, refused)."""


class TransientJudgeError(JudgeError):
    """Timeout, HTTP 429 or 5xx: retried with backoff. `retry_after` is the server's Retry-After, if any."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class ModelRequestsDisabled(JudgeError):
    """`tutor.judge.ALLOW_MODEL_REQUESTS` is False (tests set it so nothing reaches a network by accident)."""


class JudgeSpecError(ValueError):
    """An unknown or malformed judge spec; the message lists the valid forms."""


def check_allow_model_requests() -> None:
    import tutor.judge

    if not tutor.judge.ALLOW_MODEL_REQUESTS:
        raise ModelRequestsDisabled(
            "model requests are disabled (tutor.judge.ALLOW_MODEL_REQUESTS = False); "
            "tests that really need a model server must enable it explicitly"
        )


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


@dataclass
class JudgeSettings:
    """Sampling and reliability knobs; all of them except the last four are part of the cache key."""

    temperature: float = 0.0
    seed: int = 1234
    max_tokens: int = 300
    timeout_s: float = 120.0
    max_retries: int = 3  # on TransientJudgeError, after the first attempt
    backoff_s: float = 1.0  # first wait; doubles per retry, capped by max_backoff_s (Retry-After wins)
    max_backoff_s: float = 30.0
    max_concurrency: int = field(default_factory=lambda: max(1, _env_int("TUTOR_JUDGE_CONCURRENCY", 2)))

    def cache_params(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "seed": self.seed, "max_tokens": self.max_tokens}


@dataclass
class JudgeRequest:
    """One chat request: messages, the JSON schema the reply must follow, and which order it is."""

    messages: list[dict[str, str]]
    schema: dict[str, Any]
    order: JudgeOrder
    schema_name: str = "judge_reply"


@dataclass
class Completion:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


@runtime_checkable
class Judge(Protocol):
    spec: str  # what the user typed, e.g. "openai:gpt-4o-mini"; shown in reports
    backend: str  # "openai", "ollama", "local", "fake": part of every cache key
    model: str
    settings: JudgeSettings
    limiter: threading.Semaphore  # caps concurrent requests to this judge across threads

    def complete(self, request: JudgeRequest) -> Completion:
        """Send one request; raise TransientJudgeError / JudgeError on failure."""
        ...


class BaseJudge:
    """Shared plumbing: settings, the concurrency limiter, and the SDK client (injected, or made on first
    use by `_make_client`, so constructing a judge never imports an SDK or reaches a server)."""

    backend = "base"

    def __init__(
        self, model: str, spec: str | None = None, settings: JudgeSettings | None = None, client: Any = None
    ):
        self.model = model
        self.spec = spec or f"{self.backend}:{model}"
        self.settings = settings or JudgeSettings()
        self.limiter = threading.BoundedSemaphore(self.settings.max_concurrency)
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._make_client()
        return self._client

    def _make_client(self) -> Any:
        raise JudgeError(f"the {self.backend} judge has no SDK client")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spec}>"
