"""What every CLI command shares: loading the wired application, printing, and turning errors into a message and
an exit code (never a traceback)."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

from rich.console import Console

from api.context import Hallmark
from api.settings import load_settings

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

EXIT_FAILED = 1  # the operation ran and failed (e.g. a generation failed)
EXIT_BAD_INPUT = 2  # usage or input error
EXIT_DENIED = 3  # the gate denied or withheld


def hallmark(*, require_schema: bool = True) -> Hallmark:
    hm = Hallmark(load_settings())
    if require_schema:
        hm.db.require_schema()
    return hm


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def fail(message: str, *, hint: str | None = None, code: int = EXIT_BAD_INPUT) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}")
    if hint:
        err.print(f"  [dim]hint:[/] {hint}")
    raise SystemExit(code)
