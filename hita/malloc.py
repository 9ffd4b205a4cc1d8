"""A fixed malloc mmap threshold, so the heap does not creep under load.

asyncio reads each socket into a fresh 256 KiB buffer and shrinks it to what
arrived. glibc serves the first such buffer with mmap; freeing it raises the
mmap threshold to its size (the "dynamic threshold"), so from then on every
read buffer comes from the heap, is shrunk in place, and leaves small live
objects scattered through it: the heap can no longer shrink, and RSS creeps
up for as long as the service runs (0.5 to 1 MB per minute at 50 requests/s
in the soak, with Python's own heap flat under tracemalloc). Pinning the
threshold at glibc's default (128 KiB) keeps large transient buffers in
mmap, returned to the system when freed. See docs/soak.md.

The HTTP connections no longer take that road (``hita.api.serving`` reads
them into one shared buffer, with no allocation per read and so no system
call); the pin stays for the other sockets asyncio reads so, Redis's and
PostgreSQL's, whose reads a warm request served from L1 does not make.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
from typing import Final

from hita.constants import MALLOC_MMAP_THRESHOLD_BYTES

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD: Final = -3  # glibc's mallopt parameter number
ENV_OVERRIDE: Final = "MALLOC_MMAP_THRESHOLD_"  # glibc's own setting wins when given


def pin_mmap_threshold(threshold: int = MALLOC_MMAP_THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold (no-op elsewhere, or when the environment
    already sets it). Returns whether it was set here."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if ENV_OVERRIDE in os.environ:
        return False
    libc = ctypes.CDLL(None)
    if libc.mallopt(M_MMAP_THRESHOLD, threshold) != 1:
        log.warning("mallopt(M_MMAP_THRESHOLD, %d) failed; heap may creep", threshold)
        return False
    return True
