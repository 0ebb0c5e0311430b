"""`hallmark generate`: the whole gateway in one process (gate → generate → mark → sign → record), with a progress
bar. The clip is written to -o only when it was released."""

from __future__ import annotations

import base64
import os
import shutil
import socket
from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from api import generation as pipeline
from api.cli.common import EXIT_DENIED, EXIT_FAILED, err, fail, hallmark, out, print_json
from api.context import Hallmark
from api.schemas import GenerationCreate
from registry import Account, Accounts, Generation, Role, Status


def acting_account(hm: Hallmark, name: str | None) -> Account:
    """The account a local command acts as: `--as NAME`, else the first admin (the operator at the console)."""
    with hm.db.session() as session:
        accounts = Accounts(session)
        if name:
            return accounts.require_by_name(name)
        admin = next((a for a in accounts.list() if a.role == Role.admin), None)
    if admin is None:
        fail("There is no admin account yet.", hint="Run `hallmark init` first.")
    return admin


def _parse_size(size: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in size.lower().split("x"))
    except ValueError:
        fail(f"--size must look like 256x256; got {size!r}.")
    return width, height


def summary(generation: Generation, output: Path | None) -> dict[str, object]:
    return {
        "generation_id": generation.id,
        "status": generation.status,
        "decision": generation.decision,
        "output": str(output) if output else None,
        "watermark_payload": generation.watermark_payload,
        "manifest_label": generation.manifest_label,
        "error": generation.error,
    }


def register(app: typer.Typer) -> None:
    @app.command()
    def generate(
        prompt: str = typer.Argument(..., help="What to generate; mention cameos as @handle."),
        output: Path = typer.Option(..., "-o", "--output", help="Where to write the released MP4."),
        frames: int = typer.Option(24, help="Number of frames."),
        fps: float = typer.Option(12.0, help="Frames per second."),
        size: str = typer.Option("256x256", help="WIDTHxHEIGHT, multiples of 16."),
        seed: int = typer.Option(None, help="Random seed (random when omitted)."),
        cameo: list[str] = typer.Option([], "--cameo", help="Cameo handle to use (repeatable)."),
        as_account: str = typer.Option(None, "--as", help="Account to generate as (default: the admin)."),
        commercial: bool = typer.Option(False, "--commercial", help="Commercial use (non-commercial licences "
                                                                   "do not cover it)."),
        reference_image: Path = typer.Option(None, "--reference-image",
                                             help="A reference image for image-to-video backends (its faces are "
                                                  "checked against every cameo and protected person)."),
        json_output: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    ) -> None:
        """Generate a marked, signed and recorded clip."""
        if output.exists() and output.is_dir():
            fail(f"{output} is a directory.", hint="Give a file name, e.g. -o clip.mp4.")
        if not output.parent.exists():
            fail(f"The directory {output.parent} does not exist.")
        hm = hallmark()
        width, height = _parse_size(size)
        requester = acting_account(hm, as_account)
        if reference_image is not None and not reference_image.is_file():
            fail(f"{reference_image} is not a file.", hint="Give the path of a PNG, JPEG or WebP image.")
        request = GenerationCreate(
            prompt=prompt, cameos=cameo, frames=frames, fps=fps, width=width, height=height, seed=seed,
            commercial=commercial,
            reference_image_base64=base64.b64encode(reference_image.read_bytes()).decode() if reference_image else None)
        # Claimed as it is recorded: a `hallmark serve` worker on the same database cannot take it from us.
        worker = f"cli:{os.getpid()}@{socket.gethostname()}"[:64]  # the worker column holds 64 characters
        generation = pipeline.submit(hm, requester, request, worker=worker)
        if generation.status == Status.denied:
            _report(generation, None, json_output)
            raise SystemExit(EXIT_DENIED)
        with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
                      console=err, transient=True, disable=json_output) as bar:
            task = bar.add_task("generating", total=100)

            def on_progress(percent: float) -> None:
                bar.update(task, completed=percent,
                           description="generating" if percent < 80 else "marking and signing")

            generation = pipeline.run(hm, generation.id, worker=worker, on_progress=on_progress)
        released = None
        if generation.status == Status.completed and generation.output_path:
            partial = output.with_name(f".{output.name}.part")
            shutil.copyfile(generation.output_path, partial)
            partial.replace(output)
            released = output
        _report(generation, released, json_output)
        if generation.status == Status.withheld:
            raise SystemExit(EXIT_DENIED)
        if generation.status != Status.completed:
            raise SystemExit(EXIT_FAILED)


def _report(generation: Generation, output: Path | None, json_output: bool) -> None:
    if json_output:
        print_json(summary(generation, output))
        return
    if generation.status == Status.completed:
        out.print(f"[green]released[/] {output}  generation {generation.id}  watermark {generation.watermark_payload}")
        return
    out.print(f"[red]{generation.status}[/] generation {generation.id}")
    for reason in generation.decision.get("reasons", []) or generation.decision.get("release", {}).get("reasons", []):
        out.print(f"  - [bold]{reason['code']}[/] {reason['message']}")
    if generation.error:
        out.print(f"  {generation.error}")
