"""Policy-as-code that operators edit: Cedar policies and schema, default lists. Not Python logic: this module
only tells the rest of Hallmark where the files are."""

from pathlib import Path

POLICY_DIR = Path(__file__).resolve().parent
