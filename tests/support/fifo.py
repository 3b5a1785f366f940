"""FIFOs as a tool that hangs: ``file_read`` on a FIFO nobody writes to blocks in ``open``."""

from __future__ import annotations

import os
from pathlib import Path


def release_fifo(fifo: Path) -> None:
    """Open the FIFO's write end once, so a reader still blocked on it gets EOF and its
    (abandoned) thread ends with the test."""
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:  # no reader left (ENXIO)
        pass
