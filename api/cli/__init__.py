"""The `hallmark` command. Each group lives in its own module; `main` turns any project error into a message and
an exit code."""

from __future__ import annotations

import logging
import signal

import typer
from pydantic import ValidationError
from pydantic_settings import SettingsError

from api.cli import accounts, audit, cameo, gate, generate, keys, policy, serve, setup, verify, watermark, works
from api.cli.common import EXIT_BAD_INPUT, EXIT_FAILED, fail
from generator import GeneratorError
from guard.errors import HallmarkError
from registry.errors import RegistryError

app = typer.Typer(
    name="hallmark",
    help="Provenance, watermarking and consent-gating for AI video generation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
setup.register(app)
serve.register(app)
generate.register(app)
verify.register(app)
app.add_typer(accounts.app, name="accounts")
app.add_typer(watermark.app, name="watermark")
app.add_typer(cameo.app, name="cameo")
app.add_typer(keys.app, name="keys")
app.add_typer(works.app, name="works")
app.add_typer(gate.app, name="gate")
app.add_typer(policy.app, name="policy")
app.add_typer(audit.app, name="audit")


def _terminated(signum: int, frame: object) -> None:
    # SIGTERM (kill, a container stopping) unwinds like Ctrl-C, so every `finally` runs and removes its temp files.
    raise KeyboardInterrupt


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _terminated)
    try:
        app()
    except (HallmarkError, RegistryError, GeneratorError) as exc:
        fail(exc.message, hint=exc.hint, code=EXIT_BAD_INPUT if exc.status < 500 else EXIT_FAILED)
    except ValidationError as exc:  # e.g. a HALLMARK_* setting or hallmark.toml entry that is not valid
        fail(f"Invalid {exc.title}: " + "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()),
            hint="For a Settings field, fix its HALLMARK_* environment variable or hallmark.toml entry.")
    except SettingsError as exc:  # a complex setting (JSON list or object) whose environment value is not JSON
        fail(f"Invalid setting: {exc}.", hint="Settings that hold a list or an object take JSON in their HALLMARK_* "
             'variable, e.g. HALLMARK_TRUST_ANCHORS=\'["/etc/hallmark/root.pem"]\'.')
    except KeyboardInterrupt:
        fail("interrupted", code=130)
