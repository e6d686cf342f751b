"""An on-disk cache of toxicity scores, keyed by the caller (text and everything that changes its score).

Scores are computed in chunks and committed after each, so an interrupted scoring keeps what it
finished. A score of None (the scorer could not score the text) is returned but never stored. A
damaged cache file is set aside with a warning and its scores are computed again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from lm_eval_trust.atomic import set_aside_if_damaged


def cached_scores(
    path: Path,
    what: str,
    keys: Sequence[str],
    texts: Sequence[str],
    compute: Callable[[list[str]], list[float | None]],
    chunk: int,
) -> list[float | None]:
    """The score of each text: from the cache at `path`, else from `compute`, `chunk` texts at a time."""
    from sqlitedict import SqliteDict

    path.parent.mkdir(parents=True, exist_ok=True)
    set_aside_if_damaged(path, what)
    out: list[float | None] = [None] * len(texts)
    with SqliteDict(str(path), tablename="toxicity") as cache:
        todo = []
        for i, key in enumerate(keys):
            if key in cache:
                out[i] = cache[key]
            else:
                todo.append(i)
        for start in range(0, len(todo), chunk):
            part = todo[start : start + chunk]
            for i, value in zip(part, compute([texts[i] for i in part]), strict=True):
                out[i] = value
                if value is not None:
                    cache[keys[i]] = value
            cache.commit()
    return out
