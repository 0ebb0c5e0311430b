"""`hallmark watermark embed|detect`: the invisible (and optionally visible) marks on any video file, with the
operator's key. The gateway uses the same code."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from api.cli.common import err, hallmark, out, print_json
from guard.marks import parse_payload_hex
from guard.marks.apply import detect_file, stamp_file
from guard.media import probe

app = typer.Typer(help="Embed or detect the invisible watermark.", no_args_is_help=True)


@app.command("embed")
def embed(
    source: Path = typer.Argument(..., help="Input video."),
    target: Path = typer.Argument(..., help="Output MP4."),
    payload: str = typer.Option(..., "--payload", help="64-bit payload as 16 hex digits."),
    visible: str = typer.Option(None, "--visible", help="Also draw this visible (moving) label."),
    visible_opacity: float = typer.Option(None, "--visible-opacity", min=0.05, max=1.0,
                                          help="Opacity of the visible label (default: the settings')."),
    visible_scale: float = typer.Option(None, "--visible-scale", min=0.25, max=4.0,
                                        help="Size of the visible label, 1.0 = 4.5 % of the short side."),
    strength: float = typer.Option(1.0, "--strength", min=0.25, max=4.0,
                                   help="Invisible mark strength; 2 for flat content (smooth gradients, blank "
                                        "skies) that does not read back at 1. PSNR stays >= 42.2 dB."),
) -> None:
    """Embed the invisible watermark (keyed with this operator's secret) and write an MP4, keeping audio."""
    payload_bytes = parse_payload_hex(payload)
    hm = hallmark(require_schema=False)
    method = hm.watermark
    total = probe(source).frame_count
    with Progress(TextColumn("embedding"), BarColumn(), MofNCompleteColumn(), console=err, transient=True) as bar:
        task = bar.add_task("embed", total=total)
        frames = stamp_file(source, target, method=method, payload=payload_bytes, visible_label=visible,
                            visible_opacity=visible_opacity or hm.settings.visible_opacity,
                            visible_scale=visible_scale or hm.settings.visible_scale,
                            crf=hm.settings.output_crf, preset=hm.settings.output_preset,
                            progress=lambda done: bar.update(task, completed=done), strength=strength)
    out.print(f"wrote {target} ({frames} frames, method {method.name})")
    if total and frames < 0.98 * total:  # a damaged or cut file: say so, the output is shorter than the input
        err.print(f"[yellow]warning:[/] {source} declares {total} frames but only {frames} could be decoded; "
                  f"{target} holds those {frames}.", highlight=False)


@app.command("detect")
def detect(
    file: Path = typer.Argument(..., help="Video to examine."),
    json_output: bool = typer.Option(False, "--json"),
) -> None:
    """Detect the invisible watermark and print its payload and p-value."""
    hm = hallmark(require_schema=False)
    detection = detect_file(file, hm.watermark)
    if json_output:
        print_json(detection.as_dict())
        return
    if detection.detected:
        p_value = f"  p={detection.p_value:.1e}" if detection.p_value is not None else ""
        retired = f", retired key {detection.retired_key}" if detection.retired_key else ""
        out.print(f"detected  payload {detection.payload.hex() if detection.payload else '?'}{p_value}"
                  f"  ({detection.frames_used} frames, {detection.method}{retired})")
    else:
        out.print(f"not detected ({detection.frames_used} frames, {detection.method})")
