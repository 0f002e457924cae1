"""One process owns a run's output folder: ``<out_dir>/.ngac.lock``, held for the run's life.

The lock is the kernel's ``fcntl.flock`` on that file, so it ends with its holder whatever the way
(exit, crash, ``kill -9``): nothing is left to clean up by hand. The file says who holds it (pid,
host, start time), for the one-line refusal a second ``ngac train`` or resume on the same folder
gets. A holder that ended without releasing (killed) leaves that text behind; the next run takes
the lock over and says so in one line. Release empties the file; the file itself stays (deleting a
flock'd file would let two processes hold locks on two different files of one name).

Local file systems and NFSv4 (where Linux maps ``flock`` onto NFS byte-range locks) both hold it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any, TextIO

LOCK_NAME = ".ngac.lock"


class FolderInUse(RuntimeError):
    """Another process holds the output folder (one line naming it)."""


def _describe(holder: dict[str, Any]) -> str:
    since = holder.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if isinstance(since, (int, float)) else "?"
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} (since {when})"


def _read(fh: TextIO) -> dict[str, Any]:
    fh.seek(0)
    text = fh.read()
    try:
        holder = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError:
        holder = {"pid": "?", "host": "?"}  # a holder killed mid-write of this small file
    return holder if isinstance(holder, dict) else {}


class RunLock:
    """``with RunLock(out_dir) as lock:`` or :meth:`acquire` / :meth:`release`; ``note`` says what was taken over."""

    def __init__(self, out_dir: str | Path) -> None:
        self.path = Path(out_dir) / LOCK_NAME
        self.note: str | None = None
        self._fh: TextIO | None = None

    @property
    def held(self) -> bool:
        return self._fh is not None

    def acquire(self) -> RunLock:
        """Take the lock or raise :class:`FolderInUse`; ``note`` is set when a dead holder's lock was taken over."""
        if self._fh is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")  # noqa: SIM115 - held open for the run's life
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fh)
            fh.close()
            raise FolderInUse(
                f"out_dir={str(self.path.parent)!r} is in use by {_describe(holder)}: wait for it to end, "
                f"stop it, or choose another out_dir"
            ) from None
        except OSError:
            fh.close()
            raise
        if previous := _read(fh):
            self.note = f"took over the lock of {_describe(previous)}, which is no longer running, on {self.path}"
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}))
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is None:
            return
        fh, self._fh = self._fh, None
        with contextlib.suppress(OSError):
            fh.seek(0)
            fh.truncate()
            fh.flush()
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
