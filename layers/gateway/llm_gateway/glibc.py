"""The C allocator's own knobs, where the process runs on glibc (elsewhere they do nothing)."""

from __future__ import annotations

M_MMAP_THRESHOLD = -3  # mallopt parameter, from malloc.h


def call(name: str, *args: int) -> None:
    """Call glibc's `name` (malloc_trim, mallopt) with `args`, if this process runs on glibc."""
    try:
        import ctypes

        getattr(ctypes.CDLL("libc.so.6"), name)(*args)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune
