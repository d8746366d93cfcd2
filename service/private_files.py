"""Files that hold applications or key hashes are created readable by their owner only (mode 0600).

The decision database holds every application in full; exports, batch outputs and error lists hold
applications too, and the key file holds the hashes that grant access. They are created with
``os.open(..., 0o600)`` rather than left to the process umask (commonly 022, which gives 0644: readable by
every local user). Existing files keep the mode their owner gave them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

PRIVATE_MODE = 0o600


def open_private(path: str, flags: int) -> int:
    """An ``opener`` for :func:`open`: a file it creates has mode 0600 (whatever the umask)."""
    return os.open(path, flags, PRIVATE_MODE)


def create_private(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if it does not exist yet (an existing file is left as it is)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_MODE)
    os.close(fd)


def open_private_text(path: str | Path, mode: str = "w", **kwargs: Any) -> IO[Any]:
    """``open(path, mode, ...)`` creating the file with mode 0600."""
    return open(path, mode, opener=open_private, **kwargs)
