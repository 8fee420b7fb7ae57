"""`local`: the packaged Qwen2.5-Coder-1.5B judge, served by llama.cpp (xllamacpp) inside this process.

The server binds 127.0.0.1 on a free port and is spoken to through the `openai` backend, so the local
judge exercises exactly the code path of any OpenAI-compatible server. One server per process, started
on first use (about 2 s on an idle machine, RSS ~2 GB); `tutor judge serve` exposes the same server to
other tools.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from typing import Any

from tutor.judge.base import JudgeError, JudgeRequest, JudgeSettings, check_allow_model_requests
from tutor.judge.model import MODEL_FILE, ModelSetupError, find_model
from tutor.judge.openai_backend import OpenAIJudge

SLOTS = 2  # the two orders of one answer decode together (continuous batching)
CTX_PER_SLOT = 2048  # system + user prompt is ~1,100 tokens, the reply ~150


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalServer:
    """An xllamacpp (llama.cpp) OpenAI-compatible server on 127.0.0.1."""

    def __init__(self, model_path: Path, port: int = 0, threads: int | None = None, quiet: bool = True):
        # llama.cpp's OpenMP threads spin while waiting for each other; on a shared 2-core machine a
        # spinning thread starves its descheduled partner and decoding slows 10-30x. Sleep instead.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        try:
            import xllamacpp
        except ImportError as e:
            raise ModelSetupError(
                "the local judge needs the optional extra: pip install -e '.[judge]' (or make setup-judge)"
            ) from e
        p = xllamacpp.CommonParams()
        p.model.path = str(model_path)
        p.model_alias = MODEL_FILE
        p.hostnames = ["127.0.0.1"]
        p.port = port or free_port()
        p.n_parallel = SLOTS
        p.n_ctx = SLOTS * CTX_PER_SLOT
        n = threads or int(os.environ.get("TUTOR_JUDGE_THREADS", 0)) or (os.cpu_count() or 2)
        p.cpuparams.n_threads = n
        p.cpuparams_batch.n_threads = n
        # No busy-waiting between ops: on a shared 2-core machine spinning threads starve everyone.
        p.cpuparams.poll = 0
        p.cpuparams_batch.poll = 0
        p.ui = False
        if quiet:
            p.verbosity = 0
        self.port = p.port
        self._server = xllamacpp.Server(p)
        self.base_url = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._server = None  # the C++ destructor stops the HTTP listener and frees the model


_server: LocalServer | None = None
_server_lock = threading.Lock()


def get_server(model_path: Path | None = None) -> LocalServer:
    """The process-wide local server, started on first use."""
    global _server
    with _server_lock:
        if _server is None:
            _server = LocalServer(model_path or find_model())
        return _server


class LocalJudge(OpenAIJudge):
    backend = "local"

    def __init__(
        self, *, model_path: Path | None = None, settings: JudgeSettings | None = None, spec: str = "local"
    ):
        # CPU decoding is slow and slower still when other work shares the cores: allow for it.
        super().__init__(MODEL_FILE, spec=spec, settings=settings or JudgeSettings(timeout_s=600.0))
        self.model_path = model_path

    def _make_client(self) -> Any:
        try:
            server = get_server(self.model_path)
        except ModelSetupError as e:
            raise JudgeError(str(e)) from e
        return self._openai_client("not-needed", server.base_url + "/v1")

    def complete(self, request: JudgeRequest):  # type: ignore[override]
        check_allow_model_requests()  # before starting a 2 GB server, not just before the HTTP call
        return super().complete(request)


def from_spec(spec: str, arg: str | None, settings: JudgeSettings | None) -> LocalJudge:
    return LocalJudge(spec=spec, settings=settings)
