"""`ollama:MODEL`: an Ollama server through the `ollama` client (honours OLLAMA_HOST).

Sends ``format=<json schema>``, ``options={"temperature": 0, "seed": ..., "num_predict": ...}`` and
``stream=False`` to /api/chat.
"""

from __future__ import annotations

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


class OllamaJudge(BaseJudge):
    backend = "ollama"

    def __init__(
        self,
        model: str,
        *,
        client: Any = None,
        host: str | None = None,
        spec: str | None = None,
        settings: JudgeSettings | None = None,
    ):
        super().__init__(model=model, spec=spec, settings=settings, client=client)
        self._host = host

    def _make_client(self) -> Any:
        import ollama

        # host=None lets the client read OLLAMA_HOST (default http://127.0.0.1:11434)
        return ollama.Client(host=self._host, timeout=self.settings.timeout_s)

    def complete(self, request: JudgeRequest) -> Completion:
        check_allow_model_requests()
        import httpx
        import ollama

        s = self.settings
        try:
            r = self.client.chat(
                model=self.model,
                messages=request.messages,
                format=request.schema,
                options={"temperature": s.temperature, "seed": s.seed, "num_predict": s.max_tokens},
                stream=False,
            )
        except ollama.ResponseError as e:
            if e.status_code == 429 or e.status_code >= 500:
                raise TransientJudgeError(f"Ollama HTTP {e.status_code}: {e.error}") from e
            raise JudgeError(f"Ollama HTTP {e.status_code}: {e.error}") from e
        except httpx.TimeoutException as e:
            raise TransientJudgeError(f"timed out after {s.timeout_s:g} s") from e
        except (httpx.TransportError, ConnectionError) as e:
            raise TransientJudgeError(f"cannot reach the Ollama server ({e})") from e
        except ollama.RequestError as e:
            raise JudgeError(str(e)) from e
        return Completion(
            r.message.content or "",
            prompt_tokens=r.prompt_eval_count or 0,
            completion_tokens=r.eval_count or 0,
        )


def from_spec(spec: str, arg: str | None, settings: JudgeSettings | None) -> OllamaJudge:
    assert arg
    return OllamaJudge(arg, spec=spec, settings=settings)
