"""Work directories for large temporary files that never outlive the process using them.

An export built on disk (gigabytes for a week of Amplitude events) must not stay behind: not when the
request fails, not when the client hangs up, not when the server is killed halfway. The first two
are the job of :func:`work_directory`, which removes its directory however its block ends. The last
cannot be done by the dying process, so each directory is locked (``flock``) by the process that made
it for as long as it exists: the kernel drops the lock when that process ends, however it ends, and
:func:`remove_abandoned` removes exactly the directories nobody holds any more, leaving those that
other workers sharing the parent directory are still using.

POSIX only (``fcntl``), as Airflow is; the parent must be on a local file system (``flock`` over NFS
is not reliable).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import logging
import os
import shutil
import tempfile
from collections.abc import Generator
from pathlib import Path

log = logging.getLogger(__name__)


def _parent(parent: str | Path | None) -> Path:
    return Path(parent) if parent else Path(tempfile.gettempdir())


def _is_at(fd: int, path: Path) -> bool:
    """Whether the directory open as ``fd`` is still the one at ``path`` (not removed meanwhile)."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path, follow_symlinks=False))
    except FileNotFoundError:
        return False


def _open_directory(path: Path) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)


@contextlib.contextmanager
def work_directory(parent: str | Path | None, prefix: str) -> Generator[Path]:
    """A new directory named ``prefix...`` under ``parent`` (created if need be; None: the system's
    temporary directory), locked by this process until the block ends, then removed with everything
    in it. A file opened inside stays readable after the removal, until it is closed."""
    base = _parent(parent)
    base.mkdir(parents=True, exist_ok=True)
    while True:
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
        try:
            fd = _open_directory(path)
        except FileNotFoundError:  # another process took it for abandoned before we held it
            continue
        fcntl.flock(fd, fcntl.LOCK_EX)
        if _is_at(fd, path):
            break
        os.close(fd)
    try:
        yield path
    finally:
        try:
            shutil.rmtree(path, ignore_errors=True)
        finally:
            os.close(fd)


def remove_abandoned(parent: str | Path | None, prefix: str) -> list[Path]:
    """Remove the directories named ``prefix...`` under ``parent`` that no process holds (left by a
    process that was killed, or made before they were locked); return them."""
    base = _parent(parent)
    removed: list[Path] = []
    if not base.is_dir():
        return removed
    for path in base.glob(f"{glob.escape(prefix)}*"):
        try:
            fd = _open_directory(path)
        except OSError:  # not a directory (or a symlink to one), or gone meanwhile
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # in use
                continue
            if _is_at(fd, path):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        finally:
            os.close(fd)
    if removed:
        log.warning("Removed abandoned work directories: %s", ", ".join(str(path) for path in removed))
    return removed
