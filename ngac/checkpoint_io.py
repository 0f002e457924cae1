"""Checkpoints written atomically on any file system, as a Lightning ``CheckpointIO`` plugin.

Lightning's own atomic save writes the whole file through fsspec, which on a local disk may
stage it in ``$TMPDIR`` and move it: across file systems (a tmpfs ``/tmp``) that move is a copy
that truncates the target first, so ``kill -9`` or a full disk during it destroys the only
checkpoint. :func:`atomic_save` writes beside the target instead:

1. a temp file ``.<name>.<pid>.tmp`` in the target's folder (same file system), created with
   ``O_EXCL`` and the usual permissions (``0o666`` less the umask);
2. ``torch.save`` into it, ``flush`` and ``fsync``;
3. ``os.replace`` onto the target (atomic within one file system), then ``fsync`` of the folder.

Until step 3 the previous checkpoint is untouched. A failed write (ENOSPC, EIO, a quota)
removes the temp file and raises :class:`CheckpointWriteError`, one line. A temp file left by a
process that was killed mid-write is removed by the next save in that folder once its writer is
gone.

:class:`AtomicCheckpointIO` is a ``lightning.fabric`` ``TorchCheckpointIO`` (the class
``lightning.pytorch`` re-exports), so ``L.Trainer(plugins=[...])`` and ``Fabric(plugins=[...])``
both take it unchanged. It depends on nothing of the training run.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins import TorchCheckpointIO

__all__ = ["AtomicCheckpointIO", "CheckpointWriteError", "atomic_save", "temp_path"]


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (one line; ``errno`` is the OS error's); the previous one is intact."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


def temp_path(target: Path, pid: int | None = None) -> Path:
    """Where :func:`atomic_save` stages ``target`` (hidden, beside it, named after the writer's pid)."""
    return target.with_name(f".{target.name}.{os.getpid() if pid is None else pid}.tmp")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(target: Path) -> list[Path]:
    """Remove the temp files of ``target`` whose writer process has ended (a write cut short)."""
    removed = []
    for tmp in target.parent.glob(f".{target.name}.*.tmp"):
        pid = tmp.name[len(target.name) + 2 : -len(".tmp")]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed.append(tmp)
    return removed


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable (a no-op where directories cannot be opened, e.g. some network file systems)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_save(obj: Any, target: str | Path) -> None:
    """``torch.save(obj)`` to ``target``, which holds either its old content or the new, never a part."""
    target = Path(target)
    tmp = temp_path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(target)
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()  # our own, from an earlier write in this process that failed
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        reason = exc.strerror or type(exc).__name__
        kept = "the previous checkpoint is kept" if target.is_file() else "no earlier checkpoint exists"
        raise CheckpointWriteError(
            f"checkpoint {str(target)!r} could not be written ({reason}); {kept}", exc.errno
        ) from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(target.parent)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``torch.save`` checkpoints, written by :func:`atomic_save`; loading is Lightning's."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"storage_options={storage_options!r} is not supported by {type(self).__name__}; pass None")
        atomic_save(checkpoint, Path(path))
