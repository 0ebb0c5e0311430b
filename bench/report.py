"""Writing a benchmark's results into its own section of BENCHMARKS.md, leaving the other sections as they are."""

from __future__ import annotations

import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"
HEADER = ("# Benchmarks\n\nEach section is written by the command named in it; rerun that command to refresh it. "
          "Timings are ratios against a baseline measured side by side in the same run, because these machines "
          "are shared and noisy; absolute times are given for orientation only.\n")


def machine_line() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=BENCHMARKS.parent, check=False).stdout.strip()
    except OSError:
        commit = "?"
    return (f"_Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC at commit {commit or '?'} on "
            f"{platform.machine()}, Python {platform.python_version()}._")


def write_section(name: str, title: str, command: str, body: str) -> None:
    """Replace (or append) the section `name` of BENCHMARKS.md."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    section = f"{start}\n## {title}\n\nCommand: `{command}`\n\n{machine_line()}\n\n{body.strip()}\n{end}"
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else HEADER
    if start in text and end in text:
        before, rest = text.split(start, 1)
        _, after = rest.split(end, 1)
        text = before + section + after
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    BENCHMARKS.write_text(text)


def markdown_table(headers: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
