"""Markdown tables, for the QA report and the web UI's metadata (one writer for both)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def md_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A Markdown table of `rows` with `columns` (a missing cell is empty)."""
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    body = "".join("| " + " | ".join(str(r.get(c, "")) for c in columns) + " |\n" for r in rows)
    return head + body
