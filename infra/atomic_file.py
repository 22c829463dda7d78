"""Replacing a small file whole: the one way photostack writes its JSON state (secrets, the shard
map, records, silences, the alert store, page markers).

Readers see the old file or the new one, never a part of either: the text goes to a temp file in
the same directory, created exclusively (`mkstemp`: no link followed, no name guessed), given its
final mode on the open descriptor, synced to disk, then renamed over the target (`os.replace`,
which replaces a link at `path` rather than following it).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Replace the file at `path` with `text`, with permissions `mode` whatever the umask (0600
    for a file only its owner may read); owned by whoever writes it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
