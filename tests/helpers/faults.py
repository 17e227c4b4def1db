"""Builders for the fault catalogue (tests/faults/): fingerprints of folders on disk."""

from __future__ import annotations

import hashlib
from pathlib import Path


def tree_digest(path: str | Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``path`` (``"<empty dir>"`` for empty folders).

    Compare the digest of an input tree before and after a command to prove nothing changed.
    """
    root = Path(path)
    digest: dict[str, str] = {}
    for item in sorted(root.rglob("*")):
        key = item.relative_to(root).as_posix()
        if item.is_file():
            digest[key] = hashlib.sha256(item.read_bytes()).hexdigest()
        elif item.is_dir() and not any(item.iterdir()):
            digest[key] = "<empty dir>"
    return digest
