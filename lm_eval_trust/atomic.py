"""Atomic writes: a uniquely named partial beside the target, renamed into place.

Readers never see a half-written file or folder, concurrent writers never share a partial (threads
share a pid), and a writer killed part way leaves only a `.<name>.*.part` that `clean_partials`
removes (call it under the lock that guards the target); `build_once` does all of it for a cache
entry made once and shared by processes. A damaged sqlite cache is set aside
(`set_aside_if_damaged`), never deleted, and its entries are computed again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from filelock import FileLock, Timeout

log = logging.getLogger(__name__)


def partial_prefix(target: Path) -> str:
    return f".{target.name}."


@contextlib.contextmanager
def atomic_path(target: Path, directory: bool = False) -> Iterator[Path]:
    """Yield a fresh partial path beside `target`; on success it replaces `target`, else it is removed.

    With `directory=True` the partial is an empty folder and an existing `target` folder is replaced.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=partial_prefix(target), suffix=".part"))
    else:
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=partial_prefix(target), suffix=".part")
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if directory and target.is_dir():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def write_text(target: Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes(target: Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def clean_partials(target: Path) -> None:
    """Remove partials of `target` left by killed writers (only safe while holding its lock)."""
    target = Path(target)
    for stale in target.parent.glob(partial_prefix(target) + "*.part"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def build_once(
    target: Path, is_whole: Callable[[Path], bool], build: Callable[[Path], None], what: str
) -> None:
    """Make the folder `target` with `build(partial)` unless `is_whole(target)`: under a file lock
    beside it, so a second process waits (saying so: a silent wait looks like a hang) and then finds
    it made; partials of killed runs are removed and a damaged `target` is made again."""
    target = Path(target)
    if is_whole(target):
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(target) + ".lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.warning("Waiting for another process making %s (lock %s)", what, lock.lock_file)
        lock.acquire()
    try:
        if is_whole(target):
            return
        clean_partials(target)  # under the lock, partials are from runs killed part way
        if target.exists():
            log.warning("%s in %s is incomplete or damaged; making it again", what, target)
        with atomic_path(target, directory=True) as tmp:
            build(tmp)
    finally:
        lock.release()


def set_aside_if_damaged(db: Path, what: str) -> Path | None:
    """Move a sqlite file that fails `PRAGMA quick_check` to `<name>.damaged-<time>`, with a warning
    naming both; the new path, or None when it is absent or sound."""
    db = Path(db)
    if not db.is_file():
        return None
    try:
        with contextlib.closing(sqlite3.connect(db)) as conn:
            if conn.execute("PRAGMA quick_check").fetchone()[0] == "ok":
                return None
    except sqlite3.DatabaseError:
        pass
    aside = db.with_name(f"{db.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    db.rename(aside)
    log.warning(
        "%s %s is damaged (not a readable sqlite database); moved it to %s and what it held will be "
        "computed again",
        what,
        db,
        aside,
    )
    return aside
