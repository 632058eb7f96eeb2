"""Files and folders only their owner may read: keys, profiles, cluster state. No third-party imports."""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable by the owner only (0600 from creation on, no window)."""
    private_dir(path.parent)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def private_dir(path: Path) -> Path:
    """Create ``path`` with mode 0700 when it is missing; an existing folder keeps its mode.

    Never chmod what the user already has: ``--out /tmp`` must not turn a shared 1777 folder
    into a private one. The key files themselves are 0600 wherever they land.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.mkdir(mode=0o700, exist_ok=True)
        os.chmod(path, 0o700)  # mkdir's mode is masked by the umask; a new folder is ours to set
    return path
