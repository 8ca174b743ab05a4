"""`python run.py serve`: the guarded chat as an OpenAI-compatible endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from chaperone.audit import logging_setup
from chaperone.errors import ChaperoneError, ConfigError
from chaperone.startup import fail, ready_pool


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # any other host name may resolve to a public address


# After the grace period the service stops the requests still running, and each answers at once (503, or
# an error event in its stream); uvicorn's own deadline, which cancels request tasks mid-flight and drops
# their connections, is only a backstop this much later.
BACKSTOP_S = 15.0


def _server_class():
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, stopping gracefully on SIGHUP too, telling the service when a stop signal
        arrives (`on_stop(at_once)`), announcing itself (`on_ready`) only once it serves and handles
        those signals, and leaving the exit status to us."""

        on_stop: Callable[[bool], None] | None = None
        on_ready: Callable[[], None] | None = None

        async def startup(self, sockets=None) -> None:
            await super().startup(sockets=sockets)
            if self.on_ready is not None:
                self.on_ready()

        @contextlib.contextmanager
        def capture_signals(self):
            handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
            original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
            try:
                yield
            finally:
                for sig, handler in original.items():
                    signal.signal(sig, handler)

        def handle_exit(self, sig, frame) -> None:
            self._captured_signals.append(sig)
            self.force_exit = self.should_exit and sig == signal.SIGINT  # a second Ctrl-C stops at once
            self.should_exit = True
            if self.on_stop is not None:
                self.on_stop(self.force_exit)

    return Server


@click.command()
@click.option("--host", default=None, help="Address to listen on (default: config/serve.yaml, 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Port (default: config/serve.yaml, 8000).")
@click.option(
    "--keys-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Bearer keys, one a line (name=key or name=sha256:HEX), outside the project folder.",
)
@click.option("--policy", default=None, help="Review every served model under this policy.")
@click.option("--assistant", default=None, help="Assistant agent for every served model.")
@click.option("--reviewer", default=None, help="Reviewer agent for every served model.")
@click.option("--assistant-model", default=None, help="Model from config/models.yaml for every assistant.")
@click.option("--reviewer-model", default=None, help="Model from config/models.yaml for every reviewer.")
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None, keys_file: Path | None, **overrides) -> None:
    """Serve the guarded chat as an OpenAI-compatible endpoint (POST /v1/chat/completions)."""
    import uvicorn

    from chaperone.config.project import load_project
    from chaperone.serve.app import create_app
    from chaperone.serve.config import load_serve_config
    from chaperone.serve.keys import load_keys
    from chaperone.serve.service import GuardedService, check_against_project

    err = Console(stderr=True, highlight=False)
    try:
        project = load_project(ctx.obj["project_root"])
        logging_setup.configure(
            project.writable(project.settings.log_file) if project.settings.log_file else None,
            verbose=ctx.obj["verbose"],
            terminal_level="INFO",
        )
        config = load_serve_config(project.root)
        given = {k: v for k, v in overrides.items() if v is not None}
        if given:  # the command line overrides every served configuration
            config = config.model_copy(
                update={"models": {n: m.model_copy(update=given) for n, m in config.models.items()}}
            )
        wanted = check_against_project(config, project, project.root / "config/serve.yaml", flags=given)
        keys = load_keys(config.keys, project.root, keys_file)
        host = host or config.host
        port = config.port if port is None else port
        if not keys and not is_loopback(host):
            raise ConfigError(
                "serve",
                f"refusing to listen on {host} without API keys: anyone who can reach it "
                f"could use your models. Set {config.keys.env or 'keys.env'} (name=key, "
                "comma-separated) or keys.file in config/serve.yaml, or --keys-file; or listen on "
                "127.0.0.1",
            )
        with err.status("loading models…"):  # now (the embedded model takes seconds), not inside a request
            pool = ready_pool(project, wanted, load=True)
    except ChaperoneError as exc:
        fail(str(exc))

    service = GuardedService(project, pool, config)
    app = create_app(service, keys)
    try:  # bind here, so a busy port is one line and the real port (for --port 0) is known
        sock = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    bound = sock.getsockname()[1]
    where = f"[{host}]" if ":" in host else host
    served = ", ".join(f"{n} (scripted)" if service.scripted_models(n) else n for n in config.models)

    def announce() -> None:  # once it serves: a signal from then on stops it gracefully
        err.print(
            f"[bold]Chaperone[/] serving on [bold]http://{where}:{bound}/v1[/] · models: "
            f"{escape(served)} · transcripts: {escape(str(project.transcripts_dir))}"
        )
        if any(service.scripted_models(n) for n in config.models):
            err.print("[yellow]scripted[/]: those models answer by fixed rules from config/models.yaml, not by a model")
        if keys:
            err.print(f"{len(keys)} API key(s): {escape(', '.join(n for n, _ in keys.entries))}")
        else:
            err.print("[yellow]no API keys configured[/]: listening on loopback only; any local process can call it")
        sys.stderr.flush()

    server = _server_class()(
        uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=config.shutdown_grace_s + BACKSTOP_S,
            timeout_keep_alive=30,
        )
    )

    async def run() -> None:
        loop = asyncio.get_running_loop()

        def on_stop(at_once: bool) -> None:  # in the signal handler: hand it to the loop
            grace = 0.0 if at_once else config.shutdown_grace_s
            loop.call_soon_threadsafe(service.stop_after, grace)

        server.on_stop, server.on_ready = on_stop, announce
        try:
            await server.serve(sockets=[sock])
        finally:
            # Normally a no-op (the app's shutdown closed everything); after a forced stop, this is where
            # the requests still running are stopped and their transcripts closed.
            await service.close_all("the server shut down before the request finished")
            await pool.close()

    # The event loop uvicorn itself would pick (loop: "auto"): uvloop when it is installed, else asyncio's own.
    with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
        runner.run(run())
    err.print(f"stopped; the transcripts of {service.served} request(s) are closed")
    if server._captured_signals:
        sys.exit(128 + int(server._captured_signals[0]))
