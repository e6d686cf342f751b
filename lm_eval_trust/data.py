"""Where DecodingTrust's data lives: resolving a data root, the shipped manifest, fetch and verify.

A data root holds `decodingtrust/data/...` (the public repository's layout) and `advglue/dev.json`,
the layout of the offline mirror. Files are looked up in this order:

1. an explicit root: `--metadata '{"data_dir": ...}'` (`--data_dir` for our subcommands), else the
   `TRUST_DATA_DIR` environment variable (`explicit_root`);
2. the user cache (`$TRUST_CACHE_DIR/data`, default `~/.cache/lm_eval_trust/data`);
3. a download into the user cache, only when no explicit root is given (an explicit root is a
   mirror its owner manages: a file absent there is an error that names the fetch command).

Every file is checked against the manifest (git blob sha1) when it is fetched or verified.
Downloads come from GitHub at the pinned commits, or from `TRUST_DATA_URL` (or `--base_url`): any
HTTP server that serves a data root's tree, such as an internal mirror.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import http.client
import json
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock
from tqdm import tqdm

from lm_eval_trust.atomic import atomic_path, clean_partials

log = logging.getLogger(__name__)

DECODINGTRUST_COMMIT = "161ae8321ced62f45fcd9ceb412e05b47c603cd4"
ADVGLUE_COMMIT = "2e18301c3e6b0fed775834d64e9e431745df92ed"
SOURCE_URLS = {
    "decodingtrust": f"https://raw.githubusercontent.com/AI-secure/DecodingTrust/{DECODINGTRUST_COMMIT}/",
    "advglue": f"https://raw.githubusercontent.com/AI-secure/adversarial-glue/{ADVGLUE_COMMIT}/",
}
MANIFEST_PATH = Path(__file__).with_name("manifest.tsv")


def perspectives() -> dict[str, tuple[str, ...]]:
    """`data fetch --only` names: each dimension's key and its aliases (DecodingTrust's folder names)
    -> the data folders its folder declares."""
    from lm_eval_trust.dimension import registered  # which imports this module

    names = {}
    for key, module in registered().items():
        for name in (key, *getattr(module, "DATA_ALIASES", ())):
            names[name] = tuple(module.DATA_FOLDERS)
    return names


class DataError(RuntimeError):
    """A data file is missing or does not match the manifest; the message says what to do."""


@dataclass(frozen=True)
class ManifestEntry:
    path: str
    git_blob_sha1: str
    size: int | None
    source: str
    upstream_path: str

    def url(self, base_url: str | None = None) -> str:
        base_url = base_url or os.environ.get("TRUST_DATA_URL")
        if base_url:
            return base_url.rstrip("/") + "/" + self.path
        return SOURCE_URLS[self.source] + self.upstream_path


def load_manifest(path: Path = MANIFEST_PATH) -> dict[str, ManifestEntry]:
    lines = [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("#")]
    entries = {}
    for row in csv.DictReader(lines, delimiter="\t"):
        entries[row["path"]] = ManifestEntry(
            path=row["path"],
            git_blob_sha1=row["git_blob_sha1"],
            size=int(row["size"]) if row["size"] else None,
            source=row["source"],
            upstream_path=row["upstream_path"],
        )
    return entries


def git_blob_sha1(path: Path) -> str:
    """The id git gives a file's content, so files can be checked against the upstream tree."""
    size = path.stat().st_size
    digest = hashlib.sha1(b"blob %d\0" % size)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


_sha1_memo: dict[tuple[str, int, int], str] = {}


def checked_blob_sha1(path: Path) -> str:
    """`git_blob_sha1`, memoized per process by (path, size, mtime), as runs check every file they read."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _sha1_memo:
        _sha1_memo[key] = git_blob_sha1(path)
    return _sha1_memo[key]


def cache_root() -> Path:
    base = os.environ.get("TRUST_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "lm_eval_trust"
    )
    return Path(base)


def default_data_cache() -> Path:
    return cache_root() / "data"


def explicit_root(data_dir: str | os.PathLike | None, origin: str) -> tuple[Path | None, str]:
    """The root named by `data_dir` (given as `origin`), else by TRUST_DATA_DIR, and where it came
    from; `(None, "user cache")` when neither is set."""
    if data_dir:
        return Path(data_dir).expanduser(), origin
    if os.environ.get("TRUST_DATA_DIR"):
        return Path(os.environ["TRUST_DATA_DIR"]).expanduser(), "TRUST_DATA_DIR"
    return None, "user cache"


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """The root `data fetch` and `data verify` work on: `--data_dir`, else TRUST_DATA_DIR, else the user cache."""
    root, _ = explicit_root(data_dir, "--data_dir")
    return root or default_data_cache()


def fetch_command(
    root: Path | None = None, path: str | None = None, only: str | None = None, force: bool = False
) -> str:
    """The `lm-eval-trust data fetch` command that gets a file (or a perspective) into `root`."""
    parts = ["lm-eval-trust data fetch"]
    if root is not None:
        parts.append(f"--data_dir {root}")
    if force:
        parts.append("--force")
    if only:
        parts.append(f"--only {only}")
    if path:
        parts.append(f"--path {path}")
    return " ".join(parts)


def select_entries(manifest: dict[str, ManifestEntry], only: list[str] | None) -> list[ManifestEntry]:
    if not only:
        return list(manifest.values())
    prefixes: list[str] = []
    folders = perspectives()
    for name in only:
        if name not in folders:
            raise DataError(
                f"--only {name!r} is not a DecodingTrust perspective; choose from: {', '.join(sorted(folders))}"
            )
        prefixes.extend(folders[name])
    return [e for p, e in manifest.items() if p.startswith(tuple(prefixes))]


@dataclass
class FetchReport:
    fetched: list[str]
    present: list[str]
    failed: dict[str, str]


def _download(url: str, dest: Path, expected: ManifestEntry, timeout: float) -> None:
    """Download to a partial file beside `dest`, check the blob sha1, then move it into place."""
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or expected.size
            with tqdm(total=total, unit="B", unit_scale=True, desc=expected.path, leave=False) as bar:
                for chunk in iter(lambda: resp.read(1 << 16), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
        got = git_blob_sha1(tmp)
        if got != expected.git_blob_sha1:
            raise DataError(
                f"{url}: git blob sha1 {got} does not match the manifest's {expected.git_blob_sha1}; "
                "the download is corrupt or the source changed, so it was not saved"
            )


def fetch(
    root: Path,
    only: list[str] | None = None,
    paths: list[str] | None = None,
    base_url: str | None = None,
    timeout: float = 30.0,
    force: bool = False,
) -> FetchReport:
    """Download manifest files into `root`, skipping files that are already there and verified."""
    manifest = load_manifest()
    entries = [manifest[p] for p in paths] if paths else select_entries(manifest, only)
    report = FetchReport(fetched=[], present=[], failed={})
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / ".fetch.lock")):
        for entry in tqdm(entries, desc="DecodingTrust data", unit="file"):
            dest = root / entry.path
            clean_partials(dest)  # under the root's lock, partials are from fetches killed part way
            if not force and dest.is_file() and git_blob_sha1(dest) == entry.git_blob_sha1:
                report.present.append(entry.path)
                continue
            url = entry.url(base_url)
            try:
                _download(url, dest, entry, timeout)
            except urllib.error.HTTPError as err:
                report.failed[entry.path] = f"{url}: HTTP {err.code} {err.reason}"
            except (urllib.error.URLError, http.client.HTTPException, ValueError, OSError, DataError) as err:
                reason = getattr(err, "reason", err)
                report.failed[entry.path] = f"{url}: {reason}"
            else:
                report.fetched.append(entry.path)
    return report


@dataclass
class VerifyReport:
    ok: list[str]
    missing: list[str]
    mismatched: dict[str, str]


def verify(root: Path, only: list[str] | None = None) -> VerifyReport:
    """Check every manifest file under `root`: present, and with the manifest's blob sha1."""
    if not root.is_dir():
        raise DataError(f"data root {root} is not a directory; fetch into it with `{fetch_command(root)}`")
    report = VerifyReport(ok=[], missing=[], mismatched={})
    for entry in select_entries(load_manifest(), only):
        path = root / entry.path
        if not path.is_file():
            report.missing.append(entry.path)
            continue
        got = git_blob_sha1(path)
        if got == entry.git_blob_sha1:
            report.ok.append(entry.path)
        else:
            report.mismatched[entry.path] = got
    return report


def read_jsonl(
    path: Path,
    required: Sequence[str] = (),
    error: type[Exception] = DataError,
    fix: str = "re-fetch the file",
) -> list[dict]:
    """Records of a JSONL file; a bad line is an `error` naming the file, the line and the `fix`."""
    records = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise error(f"{path}:{lineno} is not valid JSON ({err}); {fix}") from err
            if not isinstance(record, dict):
                raise error(f"{path}:{lineno} is not a JSON object; {fix}")
            missing = set(required) - set(record)
            if missing:
                raise error(f"{path}:{lineno} lacks field(s) {sorted(missing)}; {fix}")
            records.append(record)
    return records


def json_object(text: str) -> dict:
    """argparse's `type` for a flag that takes a JSON object (`--metadata`): a bad value is the
    parser's error naming the flag."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, e.g. '{\"n_samples\": 5}'")
    return value


class DataRoot:
    """Finds data files for one run, following the resolution order in the module docstring.

    With `check_manifest` (evaluation runs), every file found is checked against the manifest: a
    truncated or edited file would otherwise give a wrong number (a JSONL file cut at a line end
    still parses). A damaged copy in the user cache is fetched again; one in an explicit root is an
    error naming the fetch command.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike | None = None,
        cache: Path | None = None,
        check_manifest: bool = False,
        origin: str = "--metadata data_dir",
    ):
        explicit, origin = explicit_root(data_dir, origin)
        if explicit is not None and not explicit.is_dir():
            raise DataError(
                f"data root {str(explicit)!r} (from {origin}) is not a directory; point {origin} at the "
                f"folder holding decodingtrust/ and advglue/, or run `{fetch_command(explicit)}` to create it"
            )
        self.explicit = explicit.resolve() if explicit else None
        self.origin = origin
        self.cache = cache or default_data_cache()
        self.check_manifest = check_manifest
        self._manifest = load_manifest()

    @property
    def roots(self) -> list[Path]:
        return [self.explicit, self.cache] if self.explicit else [self.cache]

    def find(self, relpath: str) -> Path | None:
        for root in self.roots:
            if (root / relpath).is_file():
                return root / relpath
        return None

    def get(self, relpath: str) -> Path:
        """The file's path, downloading it into the cache when no explicit root is set."""
        found = self.find(relpath)
        if found:
            return self._checked(found, relpath)
        why = ""
        if self.explicit is None and relpath in self._manifest:
            log.info("%s is not in %s; fetching it", relpath, self.cache)
            report = fetch(self.cache, paths=[relpath])
            if relpath in report.fetched or relpath in report.present:
                return self.cache / relpath
            why = f" Fetching it failed: {report.failed.get(relpath)}."
        looked = ", ".join(str(r / relpath) for r in self.roots)
        raise DataError(
            f"missing data file {relpath}: looked in {looked}.{why} "
            f"Get it with `{fetch_command(self.explicit, path=relpath)}`, or set TRUST_DATA_DIR to a mirror that holds it."
        )

    def try_get(self, relpath: str) -> tuple[Path | None, str | None]:
        """Like `get`, but returns the reason instead of raising, for documented fallbacks.

        Only a missing file falls back; a damaged one is an error.
        """
        found = self.find(relpath)
        if found:
            return self._checked(found, relpath), None
        try:
            return self.get(relpath), None
        except DataError as err:
            return None, str(err)

    def verified(self, relpath: str) -> Path:
        """`get`, with the file checked against the manifest even when `check_manifest` is off: for
        what is cached from the file (a fitted scorer), which would carry damage into later runs."""
        return self._checked(self.get(relpath), relpath, always=True)

    def _checked(self, path: Path, relpath: str, always: bool = False) -> Path:
        entry = self._manifest.get(relpath)
        if not (self.check_manifest or always) or entry is None:
            return path
        got = checked_blob_sha1(path)
        if got == entry.git_blob_sha1:
            return path
        root = path.parents[len(Path(relpath).parts) - 1]
        if self.explicit is None and root == self.cache:
            log.warning("%s does not match the manifest (damaged download?); fetching it again", path)
            report = fetch(self.cache, paths=[relpath])
            if relpath in report.fetched:
                return path
        raise DataError(
            f"data file {path} does not match the manifest (git blob sha1 {got}, expected "
            f"{entry.git_blob_sha1}): it is truncated or was changed. Re-fetch it with "
            f"`{fetch_command(root, path=relpath, force=True)}`"
        )

    def describe(self) -> dict:
        return {"data_root": str(self.explicit or self.cache), "data_root_origin": self.origin}
