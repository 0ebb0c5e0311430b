"""`hallmark serve` (the HTTP API with in-process workers) and `hallmark worker` (workers only)."""

from __future__ import annotations

import signal
import threading

import typer

from api.cli.common import err, hallmark
from api.settings import Settings, load_settings


def _warn_about_signing(settings: Settings) -> None:
    from api.keystore import signing_warnings

    for warning in signing_warnings(settings):
        err.print(f"[yellow]note:[/] {warning}", highlight=False)


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        host: str = typer.Option(None, help="Bind address (default 127.0.0.1: not exposed to the network)."),
        port: int = typer.Option(None, help="Port (default 8000)."),
        workers: int = typer.Option(None, help="In-process generation worker threads (0: API only)."),
    ) -> None:
        """Serve the HTTP API (OpenAPI docs at /docs)."""
        import uvicorn

        from api.app import create_app

        settings = load_settings()
        application = create_app(settings, workers=workers)
        _warn_about_signing(settings)
        uvicorn.run(application, host=host or settings.host, port=port or settings.port, log_level="info")

    @app.command()
    def worker(threads: int = typer.Option(1, min=1, max=32, help="Worker threads.")) -> None:
        """Run generation workers only, sharing the queue (the database) with every other worker."""
        from api.audit import record_policy_loaded
        from api.jobs import WorkerPool
        from guard.gate.policy import require_passing_cases

        hm = hallmark()
        require_passing_cases(hm.policy)  # as `serve` does: a worker re-checks every job at release with these rules
        hm.watermark  # as `serve` does: the watermark keys, retired ones included, are readable
        record_policy_loaded(hm)
        _warn_about_signing(hm.settings)
        pool = WorkerPool(hm, threads)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        pool.start()
        err.print(f"hallmark worker {pool.name}: {threads} thread(s); Ctrl-C to stop")
        stop.wait()
        pool.stop()
