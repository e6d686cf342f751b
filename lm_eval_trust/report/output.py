"""The report's output folder: always the files of one report, old or new, never a mix.

Every file is written into a fresh sibling folder (`atomic.atomic_path`) that replaces the output
folder only once all are written; an error or Ctrl-C before that leaves the previous report as it
was. SIGINT and SIGTERM are held during the swap itself, so it is never left half done. As the
whole folder is replaced, one holding anything a report does not write is refused up front.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

from lm_eval_trust import atomic
from lm_eval_trust.report.runs import ReportError

# Every file a report may write; anything else in the output folder would be lost with the old set.
REPORT_FILES = (
    "report.json",
    "report.md",
    "report.html",
    "radar.png",
    "compression.png",
    "leaderboard.csv",
    "leaderboard.json",
)
HELD = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C that came while the new report was moved into place: the folder holds the new report."""


def check_output(out_dir: Path) -> None:
    """Refuse, before any work, an output that is a file, cannot be made, or holds other files."""
    out_dir = Path(out_dir)
    if out_dir.is_symlink():
        try:
            out_dir.resolve()
        except (OSError, RuntimeError) as err:  # a symlink loop
            raise ReportError(
                f"--output {out_dir}: a symlink that cannot be followed ({err}); pick another"
            ) from err
    if out_dir.exists() and not out_dir.is_dir():
        raise ReportError(f"--output {out_dir}: cannot make the folder (a file is there); pick another")
    if out_dir.is_dir():
        other = sorted(p.name for p in out_dir.iterdir() if p.name not in REPORT_FILES or not p.is_file())
        if other:
            listed = ", ".join(other[:5]) + (f" and {len(other) - 5} more" if len(other) > 5 else "")
            raise ReportError(
                f"--output {out_dir}: holds files a report does not write ({listed}); the report replaces "
                "the whole folder, so pick an empty or new folder"
            )
        return
    existing = next(p for p in (out_dir.absolute(), *out_dir.absolute().parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        what = "is a file" if not existing.is_dir() else "is not writable"
        raise ReportError(f"--output {out_dir}: cannot make the folder ({existing} {what}); pick another")


class _HeldSignals:
    """From `hold()` to the end of the block, SIGINT and SIGTERM are recorded, then take effect.

    Only the main thread can set handlers; elsewhere nothing is held. A Ctrl-C held over a block that
    ended without error becomes `Interrupted`.
    """

    def __init__(self):
        self.old: dict[int, object] = {}
        self.caught: list[int] = []

    def hold(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in HELD:
            old = signal.getsignal(signum)
            if old is not None:  # None: set outside Python, so it could not be put back
                self.old[signum] = old
                signal.signal(signum, lambda n, _frame: self.caught.append(n))

    def __enter__(self) -> _HeldSignals:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        for signum, handler in self.old.items():
            signal.signal(signum, handler)
        try:
            for signum in dict.fromkeys(self.caught):
                signal.raise_signal(signum)
        except KeyboardInterrupt:
            if exc_type is None:
                raise Interrupted from None
            raise
        return False


@contextlib.contextmanager
def staged(out_dir: Path) -> Iterator[Path]:
    """A fresh folder beside `out_dir` to write the report into; it becomes `out_dir` when the block ends
    without error (a symlinked `out_dir` keeps pointing to it), else it is removed."""
    out_dir = Path(out_dir)
    target = out_dir.resolve() if out_dir.is_symlink() else out_dir
    try:
        with _HeldSignals() as held, atomic.atomic_path(target, directory=True) as folder:
            yield folder
            held.hold()  # the swap of old for new runs on leaving atomic_path
    except OSError as err:
        raise ReportError(f"--output {out_dir}: cannot write the report there ({err}); pick another") from err
