"""Where a command writes: checked usable before any work (a bad path fails at once, not after the
reading or the table), and a sweep's folder held by one process at a time (a second sweep into it
stops at once, naming the first)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from lm_eval_trust import atomic

# Held in the output folder while a sweep runs; the owner file says which process holds it.
LOCK_NAME = "sweep.lock"
OWNER_NAME = "sweep.lock.owner.json"


class FolderError(ValueError):
    """The output folder cannot be used; the message names it and the fix."""


def writable_folder(path: Path, flag: str) -> None:
    """Make `path` and check a file can be written in it, so a sweep fails now, not hours in."""
    if path.exists() and not path.is_dir():
        raise FolderError(
            f"{flag} {path} is a file; give a folder (a sweep writes one subfolder per setting)"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise FolderError(f"{flag} {path} cannot be written ({err}); pick a folder you can write to") from err


@contextlib.contextmanager
def output_lock(output: Path, command: str) -> Iterator[None]:
    """Hold `OUTPUT/sweep.lock` while the sweep writes there; held by another process, refuse at once.

    The kernel frees the lock when its process ends, killed or not, so a lock file left behind
    blocks nothing. `command` goes into the owner file as given: redact it first.
    """
    lock = FileLock(output / LOCK_NAME)
    owner = output / OWNER_NAME
    try:
        lock.acquire(timeout=0)
    except Timeout:
        try:
            holder = json.loads(owner.read_text())
            who = f"pid {holder['pid']} on {holder['host']}, started {holder['started']}: {holder['command']}"
        except (OSError, ValueError, KeyError):
            who = "another process"
        raise FolderError(
            f"another sweep is writing to {output}: {output / LOCK_NAME} is held by {who}. Wait for it to "
            "end, or give a different --output_path"
        ) from None
    try:
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": command,
        }
        atomic.write_text(owner, json.dumps(record))
        yield
    finally:
        owner.unlink(missing_ok=True)
        lock.release()


def unusable_output(path: Path, flag: str, folder: bool) -> str | None:
    """Why `path` cannot be written as the folder (or file) a command writes, or None; checked
    before any work, so a bad output path fails at once rather than after the reading or the table."""
    if path.exists() and path.is_dir() != folder:
        what = "a file; give a folder" if folder else "a folder; give a file path, e.g. plan.json"
        return f"{flag} {path} is {what}"
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if probe != path and not probe.is_dir():
        return f"{flag} {path} lies below {probe}, which is a file; give a path outside it"
    if not os.access(probe, os.W_OK | (os.X_OK if probe.is_dir() else 0)):
        return f"{flag} {path} cannot be written ({probe} is not writable); pick a folder you can write to"
    return None
