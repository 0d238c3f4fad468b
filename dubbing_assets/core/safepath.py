"""Names that may become paths: slugs and containment checks.

Episode keys and asset names reach the filesystem; every such join goes
through `safe_join`, so no key, file name or upload can leave its root.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path

from dubbing_assets.errors import UnsafeNameError

_SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,118}[a-z0-9])?$")


#: Hex digits of the digest that keeps apart names whose letters have no ASCII form.
DIGEST_LEN = 8


def slugify(text: str, *, max_len: int = 60) -> str:
    """Lowercase `[a-z0-9-]` slug; accents folded, everything else becomes '-'.

    Letters or digits with no ASCII form (Japanese, Chinese, Cyrillic...) would vanish, and two series
    named only in them would share one slug, one library folder and one character store ("進撃の巨人" and
    "鬼滅の刃" were both "" and so both "series"). Such a name keeps a short digest of itself (of its NFC
    form, so a name from a Mac share's NFD file system gets the same one): "第1話" is "1-" + 8 hex digits.
    """
    decomposed, slug = _ascii_slug(text)
    lost = any(ord(c) > 127 and unicodedata.category(c)[0] in "LN" for c in decomposed)
    if not lost:
        return slug[:max_len].strip("-")
    digest = hashlib.sha256(unicodedata.normalize("NFC", text).strip().encode()).hexdigest()[:DIGEST_LEN]
    room = max_len - DIGEST_LEN - 1
    head = slug[:room].strip("-") if room > 0 else ""
    return f"{head}-{digest}" if head else digest[:max_len]


def slug_before_digest(text: str, *, max_len: int = 60, fallback: str = "series") -> str:
    """The slug `slugify` gave `text` before names kept a digest (``fallback`` where nothing was left).

    Only for finding what an earlier release stored under it: all series named only in Japanese shared
    "series", so what is found there may belong to several of them (`characters.adopt` sorts it out).
    """
    return _ascii_slug(text)[1][:max_len].strip("-") or fallback


def _ascii_slug(text: str) -> tuple[str, str]:
    """(NFKD form, its ASCII letters and digits joined by '-')."""
    decomposed = unicodedata.normalize("NFKD", text)
    folded = decomposed.encode("ascii", "ignore").decode("ascii").lower()
    return decomposed, re.sub(r"[^a-z0-9]+", "-", folded).strip("-")


def is_slug(name: str) -> bool:
    return bool(_SLUG_RE.fullmatch(name))  # not .match: `$` also matches before a final newline


def check_slug(name: str, what: str = "name") -> str:
    """Return `name` if it is a safe slug, else raise UnsafeNameError."""
    if not isinstance(name, str) or not is_slug(name):
        raise UnsafeNameError(
            f"{what} {name!r} is not allowed: use lowercase letters, digits and '-' only "
            "(1-120 characters, no leading or trailing '-')."
        )
    return name


def safe_join(root: Path, *parts: str) -> Path:
    """Join slug-like `parts` under `root`, refusing anything that would escape it."""
    root_resolved = root.resolve()
    for part in parts:
        if not part or part in (".", "..") or "/" in part or "\\" in part or "\x00" in part:
            raise UnsafeNameError(f"Path part {part!r} is not allowed under {root}.")
    candidate = root_resolved.joinpath(*parts).resolve()
    if candidate != root_resolved and root_resolved not in candidate.parents:
        raise UnsafeNameError(f"{'/'.join(parts)!r} would leave {root}; refusing.")
    return candidate
