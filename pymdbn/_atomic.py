"""Atomic file writes: the one helper behind every file the package writes.

A reader (or a crash, or Ctrl-C) sees either the old file or the complete new one,
never a partial write: data goes to a temporary file in the destination's folder,
is flushed to disk, then renamed over the destination with ``os.replace``.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid

__all__ = ["atomic_write", "write_text", "write_json"]


@contextlib.contextmanager
def atomic_write(path, mode="wb", encoding=None):
    """Open a temporary file that replaces ``path`` when the block ends without error.

    Parameters
    ----------
    path : str or os.PathLike
        Destination, written exactly as given.
    mode : {'wb', 'w'}, default='wb'
    encoding : str, optional
        Text encoding for ``mode='w'`` (default UTF-8).

    Yields
    ------
    file object
        Open for writing. If the block raises (``KeyboardInterrupt`` included),
        the temporary file is removed, ``path`` is left as it was and the original
        exception propagates unchanged.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    # os.open with 0o666 lets the umask set the final permissions, as a plain open()
    # would (tempfile.mkstemp would leave the file private, 0o600).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    replaced = False
    try:
        kwargs = {"encoding": encoding or "utf-8"} if mode == "w" else {}
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        replaced = True
    finally:
        # After a successful rename there is nothing to clean up; before it the
        # temporary file is removed without masking the exception in flight.
        if not replaced:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def write_text(path, text):
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_write(path, "w") as f:
        f.write(text)


def write_json(path, obj):
    """Write ``obj`` as indented JSON to ``path`` atomically (NumPy scalars as floats)."""
    write_text(path, json.dumps(obj, indent=2, default=float) + "\n")
