"""Whole-file writes that never leave a half-written file behind.

A results or state file is written to a temporary file in the same
directory, flushed to disk, then renamed over the target (``os.replace`` is
atomic on POSIX and Windows): a reader, or a run resumed after a crash,
sees either the old file or the complete new one. A leaf module (standard
library only).
"""

import os
import tempfile

__all__ = ["atomic_write"]


def atomic_write(path, data=None, writer=None):
    """Writes ``data`` (str or bytes), or whatever ``writer(file)`` writes, to ``path`` atomically.

    Args:
        path: the target file (str or ``pathlib.Path``); its directory must exist.
        data: the whole content; ``str`` is written as UTF-8.
        writer: instead of ``data``, a function given the open binary file
            (e.g. ``lambda f: np.savez(f, *arrays)``).

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "r.json")
    >>> atomic_write(path, '{"ok": 1}')
    >>> open(path).read()
    '{"ok": 1}'
    """
    if (data is None) == (writer is None):
        raise ValueError("atomic_write: give exactly one of `data` or `writer`.")
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                               dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            if writer is not None:
                writer(f)
            else:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
