"""Files that hold conversations or logs are readable by their owner only (0600, folders 0700):
transcripts carry what users typed and what models answered, logs carry request details."""

from __future__ import annotations

import os
import stat
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_opener(path: str, flags: int) -> int:
    """An `opener` for open(): a new file is created 0600 whatever the umask."""
    return os.open(path, flags, FILE_MODE)


def private_dir(path: Path) -> Path:
    """Create the folder (and parents) 0700 when it does not exist; an existing folder is left as it is."""
    path = Path(path)
    if not path.exists():
        path.mkdir(parents=True, mode=DIR_MODE, exist_ok=True)
        os.chmod(path, DIR_MODE)  # mkdir's mode is filtered by the umask
    return path


def write_private_text(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to a file readable by its owner only: created 0600, or an existing regular file
    made 0600 before the new text goes in (a device or pipe, such as /dev/stdout, is left as it is)."""
    with open(path, "w", encoding="utf-8", opener=private_opener) as fh:
        if stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            os.fchmod(fh.fileno(), FILE_MODE)
        fh.write(text)
