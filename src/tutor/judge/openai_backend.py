"""`openai:MODEL`: any OpenAI-compatible chat server (OpenAI, vLLM, llama.cpp, LM Studio...).

Honours OPENAI_API_KEY and OPENAI_BASE_URL. The reply is constrained with the standard
``response_format={"type": "json_schema", ...}``. The SDK's own retries are off: the engine retries.
"""

from __future__ import annotations

import email.utils
import os
import time
from typing import Any

from tutor.judge.base import (
    BaseJudge,
    Completion,
    JudgeError,
    JudgeRequest,
    JudgeSettings,
    TransientJudgeError,
    check_allow_model_requests,
)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After is either seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class OpenAIJudge(BaseJudge):
    backend = "openai"

    def __init__(
        self,
        model: str,
        *,
        client: Any = None,
        base_url: str | None = None,
        api_key: str | None = None,
        spec: str | None = None,
        settings: JudgeSettings | None = None,
    ):
        super().__init__(model=model, spec=spec, settings=settings, client=client)
        self._base_url = base_url
        self._api_key = api_key

    def _make_client(self) -> Any:
        base_url = self._base_url or os.environ.get("OPENAI_BASE_URL") or None
        # A local OpenAI-compatible server usually needs no key, but the SDK insists on one.
        api_key = self._api_key or os.environ.get("OPENAI_API_KEY") or ("not-needed" if base_url else None)
        if api_key is None:
            raise JudgeError(
                "OPENAI_API_KEY is not set: export it, or point OPENAI_BASE_URL at an OpenAI-compatible "
                "server (e.g. `tutor judge serve`)"
            )
        return self._openai_client(api_key, base_url)

    def _openai_client(self, api_key: str, base_url: str | None) -> Any:
        import openai

        # No SDK retries: the engine retries, with its own backoff and Retry-After handling.
        return openai.OpenAI(
            api_key=api_key, base_url=base_url, timeout=self.settings.timeout_s, max_retries=0
        )

    def request_kwargs(self, request: JudgeRequest) -> dict[str, Any]:
        s = self.settings
        return {
            "model": self.model,
            "messages": request.messages,
            "temperature": s.temperature,
            "seed": s.seed,
            "max_tokens": s.max_tokens,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": request.schema_name, "schema": request.schema, "strict": True},
            },
        }

    def complete(self, request: JudgeRequest) -> Completion:
        check_allow_model_requests()
        import openai

        try:
            r = self.client.chat.completions.create(**self.request_kwargs(request))
        except openai.APITimeoutError as e:
            raise TransientJudgeError(f"timed out after {self.settings.timeout_s:g} s") from e
        except openai.APIConnectionError as e:
            raise TransientJudgeError(f"cannot reach the server ({e})") from e
        except openai.RateLimitError as e:
            raise TransientJudgeError(
                "rate limited (HTTP 429)",
                retry_after=parse_retry_after(e.response.headers.get("retry-after")),
            ) from e
        except openai.APIStatusError as e:
            if e.status_code >= 500:
                raise TransientJudgeError(
                    f"server error (HTTP {e.status_code})",
                    retry_after=parse_retry_after(e.response.headers.get("retry-after")),
                ) from e
            raise JudgeError(f"HTTP {e.status_code}: {e.message}") from e
        except openai.OpenAIError as e:
            raise JudgeError(str(e)) from e
        if not r.choices:
            return Completion("")
        text = r.choices[0].message.content or ""
        usage = r.usage
        return Completion(
            text,
            prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
        )


def from_spec(spec: str, arg: str | None, settings: JudgeSettings | None) -> OpenAIJudge:
    assert arg
    return OpenAIJudge(arg, spec=spec, settings=settings)
