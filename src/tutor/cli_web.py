"""`tutor web`: parse options, build the app (tutor.web), serve it with uvicorn.

Imported by tutor.cli (one line at its end), which registers the command on the main app.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import threading
import time
import webbrowser
from typing import Annotated

import typer
from rich.markup import escape

from tutor.cli import app, err, fail, load_bank, out


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def page_url(host: str, port: int) -> str:
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


def startup_line(host: str, port: int) -> str:
    """What `tutor web` prints once it serves: the address, and who can reach it."""
    if is_loopback(host):
        return f"tutor web: {page_url(host, port)} (only this computer can connect; Ctrl-C stops it)"
    return (
        f"tutor web: listening on {host} port {port}, REACHABLE FROM OTHER COMPUTERS on your network. There "
        "is no login: anyone who can open the page can read and add to your progress. Ctrl-C stops it."
    )


def _check_port(host: str, port: int) -> None:
    """A clear error instead of uvicorn's traceback when the port is taken or the address is not ours."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host.strip("[]"), port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                fail(f"port {port} on {host} is already in use; pick another with --port")
            fail(f"cannot listen on {host}:{port} ({e.strerror})")


@app.command()
def web(
    host: Annotated[
        str,
        typer.Option(help="Address to listen on. Anything but 127.0.0.1/localhost lets other computers in."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    judge: Annotated[
        str | None,
        typer.Option(
            "--judge",
            metavar="SPEC",
            help="Sharpen grades with an LLM judge: local, openai:MODEL, ollama:MODEL, fake.",
        ),
    ] = None,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the page in a browser.")] = False,
) -> None:
    """Study in the browser: questions, feedback, progress, and a JSON API (docs at /docs)."""
    import uvicorn

    from tutor.paths import GraderUnavailable
    from tutor.store import StoreError
    from tutor.web import create_app

    bank = load_bank()
    from tutor.paths import tutor_home

    tutor_home()  # a data dir that cannot be written is an error now, not a failed request later
    judge_obj = None
    if judge is not None:
        from tutor.judge import JudgeSpecError, resolve_judge

        try:
            judge_obj = resolve_judge(judge)
        except JudgeSpecError as e:
            fail(f"--judge: {e}")
    _check_port(host, port)
    local_only = is_loopback(host)
    url = page_url(host, port)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    t0 = time.perf_counter()
    err.print("Loading the grading model…")
    try:
        from tutor.web.app import warm_grader

        warm_grader(bank.questions)  # here, so an unusable grader is a clear error before serving
        web_app = create_app(
            bank=bank,
            judge=judge_obj,
            # On 127.0.0.1 only loopback Host names are answered (no DNS-rebinding site gets in); on another
            # address the learner chose to be reachable under whatever name others use.
            allowed_hosts=_loopback_names(host) if local_only else None,
            warm=False,
        )
    except (GraderUnavailable, StoreError) as e:
        fail(str(e))
    err.print(f"Model ready in {time.perf_counter() - t0:.1f} s.")
    out.print(escape(startup_line(host, port)))
    if judge_obj is not None:
        out.print(
            f"Grades are sharpened by the LLM judge {judge_obj.spec!r}; judged grades appear when ready."
        )
    config = uvicorn.Config(web_app, host=host.strip("[]"), port=port, log_level="info", access_log=False)
    server = uvicorn.Server(config)
    if open_browser:

        def open_when_up() -> None:
            for _ in range(200):
                if server.started:
                    webbrowser.open(url)
                    return
                time.sleep(0.05)

        threading.Thread(target=open_when_up, daemon=True).start()
    server.run()


def _loopback_names(host: str) -> list[str]:
    from tutor.web.app import LOOPBACK_HOSTS

    return sorted({*LOOPBACK_HOSTS, host})
