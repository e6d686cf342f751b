"""Tests for `lm_eval_trust.data`: hashing, the manifest, verify, fetch and data-root resolution.

Tests that need real data files read them from the offline mirror named by `TRUST_DATA_DIR`
(a path relative to the repository works too) and copy the few small files they
need into `tmp_path`; they are skipped when the mirror is not there. Downloads go only to a loopback
HTTP server started by the tests on 127.0.0.1.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import threading
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import missing_mirror

from lm_eval_trust import data
from lm_eval_trust.cli import data_main

REPO = Path(__file__).resolve().parents[1]

# Captured at import, before the autouse fixture below clears the variable for every test.
_MIRROR_ENV = os.environ.get("TRUST_DATA_DIR")

ADV_README = "decodingtrust/data/adv-glue-plus-plus/README.md"
ADV_DEV = "advglue/dev.json"
ADV_PLUS_PLUS_JSON = [
    "decodingtrust/data/adv-glue-plus-plus/data/advglue_plus_plus.json",
    "decodingtrust/data/adv-glue-plus-plus/data/alpaca.json",
    "decodingtrust/data/adv-glue-plus-plus/data/stable-vicuna.json",
    "decodingtrust/data/adv-glue-plus-plus/data/vicuna.json",
]
# In the mirror; its name has '=' in it, so it also checks how URLs are built.
TOXIC_FILTERED = (
    "decodingtrust/data/toxicity/user_prompts/toxic.jsonl.gpt3.n=25.out1.split.annotated.jsonl.filtered.jsonl"
)
# In the manifest but not in the mirror: the loopback server answers 404 for it.
TOXIC_ALL = (
    "decodingtrust/data/toxicity/user_prompts/toxic.jsonl.gpt3.n=25.out1.split.annotated.jsonl.all.jsonl"
)
MIRROR_FILES = [ADV_README, ADV_DEV, TOXIC_FILTERED]

HEX40 = re.compile(r"[0-9a-f]{40}")


# --------------------------------------------------------------------------- helpers and fixtures


def _resolve_mirror() -> tuple[Path | None, str]:
    if not _MIRROR_ENV:
        return None, "TRUST_DATA_DIR is not set; point it at the offline data mirror"
    path = Path(_MIRROR_ENV).expanduser()
    if not path.is_absolute():
        path = REPO / path
    path = path.resolve()
    if not path.is_dir():
        return None, f"TRUST_DATA_DIR={_MIRROR_ENV!r} ({path}) is not a directory"
    absent = [rel for rel in MIRROR_FILES if not (path / rel).is_file()]
    if absent:
        return None, f"the data mirror {path} lacks {absent}"
    return path, ""


def _copy(src_root: Path, dst_root: Path, rel: str) -> Path:
    dst = dst_root / rel
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src_root / rel, dst)
    return dst


def _corrupt(path: Path) -> None:
    """Flip one byte in the middle, keeping the size, so only the sha1 can tell."""
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0xFF
    path.write_bytes(bytes(content))


def _part_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.part")) if root.exists() else []


@pytest.fixture(scope="session")
def mirror() -> Path:
    """The offline data mirror; tests using it are skipped when it is absent."""
    path, reason = _resolve_mirror()
    if path is None:
        missing_mirror(f"data mirror unavailable: {reason}")
    return path


@pytest.fixture(scope="session")
def manifest() -> dict[str, data.ManifestEntry]:
    return data.load_manifest()


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path) -> Path:
    """No test sees the caller's data root, mirror URL or user cache; the cache is a tmp folder."""
    monkeypatch.delenv("TRUST_DATA_DIR", raising=False)
    monkeypatch.delenv("TRUST_DATA_URL", raising=False)
    cache = tmp_path / "user-cache"
    monkeypatch.setenv("TRUST_CACHE_DIR", str(cache))
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    return cache


class _QuietHandler(SimpleHTTPRequestHandler):
    """Serves a directory and records each requested path on the server."""

    def do_GET(self):
        self.server.requests.append(self.path)
        super().do_GET()

    def log_message(self, format, *args):
        pass


@dataclass
class Remote:
    """A loopback HTTP server serving `tree` as a data root, with the paths it was asked for."""

    url: str
    tree: Path
    requests: list[str]
    server: ThreadingHTTPServer
    thread: threading.Thread

    def stop(self) -> None:
        if self.thread.is_alive():
            self.server.shutdown()
            self.thread.join(timeout=5)
        self.server.server_close()


@pytest.fixture
def serve():
    """Factory: serve a folder over HTTP on 127.0.0.1 for the test's duration."""
    remotes: list[Remote] = []

    def start(tree: Path) -> Remote:
        tree.mkdir(parents=True, exist_ok=True)
        handler = functools.partial(_QuietHandler, directory=str(tree))
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.requests = []
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        host, port = server.server_address[:2]
        remote = Remote(f"http://{host}:{port}", tree, server.requests, server, thread)
        remotes.append(remote)
        return remote

    yield start
    for remote in remotes:
        remote.stop()


@pytest.fixture
def remote(serve, mirror, tmp_path) -> Remote:
    """A mirror server: ADV_DEV and TOXIC_FILTERED good, ADV_README corrupted, TOXIC_ALL absent."""
    tree = tmp_path / "remote"
    for rel in MIRROR_FILES:
        _copy(mirror, tree, rel)
    _corrupt(tree / ADV_README)
    assert not (tree / TOXIC_ALL).exists()
    return serve(tree)


@pytest.fixture
def empty_remote(serve, tmp_path) -> Remote:
    """A server that holds no data files at all (every manifest path is a 404)."""
    return serve(tmp_path / "empty-remote")


# --------------------------------------------------------------------------- git_blob_sha1


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"hello\n", "ce013625030ba8dba906f756967f9e9ca394464a"),
        (b"", "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"),
    ],
)
def test_git_blob_sha1_matches_git_hash_object(tmp_path, content, expected):
    """The hash is git's blob id (`git hash-object`), not a plain sha1 of the content."""
    path = tmp_path / "blob"
    path.write_bytes(content)
    assert data.git_blob_sha1(path) == expected


def test_git_blob_sha1_of_mirror_file_matches_manifest(mirror, manifest):
    """A real upstream file hashes to the id the manifest pins for it."""
    entry = manifest[ADV_README]
    assert data.git_blob_sha1(mirror / ADV_README) == entry.git_blob_sha1
    assert (mirror / ADV_README).stat().st_size == entry.size


# --------------------------------------------------------------------------- manifest


def test_manifest_has_advglue_dev(manifest):
    """AdvGLUE's dev set comes from the adversarial-glue repository, at its root."""
    entry = manifest[ADV_DEV]
    assert entry.path == ADV_DEV
    assert entry.source == "advglue"
    assert entry.upstream_path == "dev.json"
    assert entry.git_blob_sha1 == "c84980a6bb161018e9fc89e22bda720ffa839569"
    assert entry.size == 202852


def test_manifest_lists_advglue_plus_plus_json(manifest):
    """The four AdvGLUE++ json files are in the manifest (even though sizes are unknown)."""
    for rel in ADV_PLUS_PLUS_JSON:
        assert rel in manifest, rel
        assert manifest[rel].source == "decodingtrust"
        assert manifest[rel].upstream_path == rel.removeprefix("decodingtrust/")


def test_manifest_entries_are_well_formed(manifest):
    """Every row has a 40-hex blob sha1, a known source, and a size that is absent or positive."""
    assert len(manifest) > 300
    for path, entry in manifest.items():
        assert entry.path == path
        assert HEX40.fullmatch(entry.git_blob_sha1), (path, entry.git_blob_sha1)
        assert entry.source in data.SOURCE_URLS, path
        assert entry.size is None or entry.size > 0, path
        if entry.source == "decodingtrust":
            assert path == "decodingtrust/" + entry.upstream_path
        else:
            assert path == "advglue/" + entry.upstream_path
    assert any(e.size is None for e in manifest.values())


def test_manifest_entry_url(manifest, monkeypatch):
    """URLs: GitHub at the pinned commit by default; base_url, else TRUST_DATA_URL, joined with the path."""
    entry = manifest[ADV_DEV]
    assert entry.url() == (
        f"https://raw.githubusercontent.com/AI-secure/adversarial-glue/{data.ADVGLUE_COMMIT}/dev.json"
    )
    assert entry.url("http://mirror.example/data/") == "http://mirror.example/data/advglue/dev.json"
    monkeypatch.setenv("TRUST_DATA_URL", "http://env.example/data")
    assert entry.url() == "http://env.example/data/advglue/dev.json"
    assert entry.url("http://arg.example") == "http://arg.example/advglue/dev.json"


# --------------------------------------------------------------------------- select_entries


def test_select_entries_by_perspective_and_alias(manifest):
    """`--only advglue` covers AdvGLUE++ and AdvGLUE's dev set; the folder-name alias selects the same."""
    assert data.select_entries(manifest, None) == list(manifest.values())
    selected = [e.path for e in data.select_entries(manifest, ["advglue"])]
    assert sorted(selected) == sorted([ADV_README, ADV_DEV, *ADV_PLUS_PLUS_JSON])
    alias = [e.path for e in data.select_entries(manifest, ["adv-glue-plus-plus"])]
    assert alias == selected
    both = [e.path for e in data.select_entries(manifest, ["advglue", "toxicity"])]
    assert TOXIC_ALL in both and ADV_DEV in both


def test_select_entries_rejects_unknown_perspective(manifest):
    """An unknown `--only` name is an error that lists the valid names."""
    with pytest.raises(data.DataError) as exc:
        data.select_entries(manifest, ["nonsense"])
    message = str(exc.value)
    assert "'nonsense'" in message
    for name in data.perspectives():
        assert name in message


# --------------------------------------------------------------------------- verify


@pytest.fixture
def advglue_root(tmp_path, mirror) -> Path:
    """A data root with ADV_README good, ADV_DEV corrupted and the other advglue files missing."""
    root = tmp_path / "root"
    _copy(mirror, root, ADV_README)
    _corrupt(_copy(mirror, root, ADV_DEV))
    return root


def test_verify_sorts_files_into_ok_missing_mismatched(advglue_root, manifest):
    """A good copy is ok, a changed byte is a mismatch (with the sha1 found), absent files are missing."""
    report = data.verify(advglue_root, only=["advglue"])
    assert report.ok == [ADV_README]
    assert sorted(report.missing) == sorted(ADV_PLUS_PLUS_JSON)
    assert list(report.mismatched) == [ADV_DEV]
    got = report.mismatched[ADV_DEV]
    assert got == data.git_blob_sha1(advglue_root / ADV_DEV)
    assert got != manifest[ADV_DEV].git_blob_sha1


def test_verify_whole_manifest_accounts_for_every_entry(advglue_root, manifest):
    """Without --only every manifest file is reported exactly once."""
    report = data.verify(advglue_root)
    seen = report.ok + report.missing + list(report.mismatched)
    assert sorted(seen) == sorted(manifest)
    assert report.ok == [ADV_README]
    assert list(report.mismatched) == [ADV_DEV]


def test_cli_verify_exit_status_and_report(advglue_root, mirror, capsys):
    """`data verify` exits 1 and names the corrupted file; once repaired it exits 0."""
    argv = ["verify", "--data_dir", str(advglue_root), "--only", "advglue"]
    assert data_main(argv) == 1
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert f"CORRUPTED {ADV_DEV}" in text
    assert "1 verified, 4 missing, 1 corrupted" in captured.out
    assert "--force --path advglue/dev.json" in text

    _copy(mirror, advglue_root, ADV_DEV)
    assert data_main(argv) == 0
    captured = capsys.readouterr()
    assert "2 verified, 4 missing, 0 corrupted" in captured.out
    assert "CORRUPTED" not in captured.out + captured.err


def test_cli_verify_uses_trust_data_dir(advglue_root, monkeypatch, capsys):
    """Without --data_dir, `data verify` checks $TRUST_DATA_DIR."""
    monkeypatch.setenv("TRUST_DATA_DIR", str(advglue_root))
    assert data_main(["verify", "--only", "advglue"]) == 1
    assert str(advglue_root) in capsys.readouterr().out


def test_cli_verify_unknown_perspective_exits_2(tmp_path, capsys):
    """An unknown --only name is a usage error (2), not a crash."""
    assert data_main(["verify", "--data_dir", str(tmp_path), "--only", "nonsense"]) == 2
    assert "nonsense" in capsys.readouterr().err


# --------------------------------------------------------------------------- fetch


def test_fetch_keeps_good_files_and_rejects_bad_ones(remote, mirror, tmp_path):
    """Good files land byte-identical; a corrupt download is not saved; a 404 is reported, not raised."""
    root = tmp_path / "root"
    wanted = [ADV_DEV, TOXIC_FILTERED, ADV_README, TOXIC_ALL]
    report = data.fetch(root, paths=wanted, base_url=remote.url)

    assert report.fetched == [ADV_DEV, TOXIC_FILTERED]
    assert report.present == []
    assert sorted(report.failed) == sorted([ADV_README, TOXIC_ALL])
    for rel in (ADV_DEV, TOXIC_FILTERED):
        assert (root / rel).read_bytes() == (mirror / rel).read_bytes()

    assert not (root / ADV_README).exists()
    assert "sha1" in report.failed[ADV_README]
    assert f"{remote.url}/{ADV_README}" in report.failed[ADV_README]
    assert not (root / TOXIC_ALL).exists()
    assert "HTTP 404" in report.failed[TOXIC_ALL]
    assert _part_files(root) == []


def test_fetch_skips_verified_files_unless_forced(remote, tmp_path):
    """A second fetch finds the verified copy and does not download it again; --force does."""
    root = tmp_path / "root"
    assert data.fetch(root, paths=[ADV_DEV], base_url=remote.url).fetched == [ADV_DEV]
    downloads = len(remote.requests)

    again = data.fetch(root, paths=[ADV_DEV], base_url=remote.url)
    assert again.present == [ADV_DEV]
    assert again.fetched == [] and again.failed == {}
    assert len(remote.requests) == downloads

    forced = data.fetch(root, paths=[ADV_DEV], base_url=remote.url, force=True)
    assert forced.fetched == [ADV_DEV]
    assert len(remote.requests) == downloads + 1


def test_fetch_replaces_a_corrupt_local_copy(remote, mirror, tmp_path):
    """A local file that fails its sha1 is downloaded again, not reported as present."""
    root = tmp_path / "root"
    _corrupt(_copy(mirror, root, ADV_DEV))
    report = data.fetch(root, paths=[ADV_DEV], base_url=remote.url)
    assert report.fetched == [ADV_DEV]
    assert (root / ADV_DEV).read_bytes() == (mirror / ADV_DEV).read_bytes()


def test_fetch_keeps_existing_file_when_download_is_corrupt(remote, mirror, tmp_path):
    """A forced re-fetch that comes back corrupt leaves the verified local copy untouched."""
    root = tmp_path / "root"
    _copy(mirror, root, ADV_README)
    report = data.fetch(root, paths=[ADV_README], base_url=remote.url, force=True)
    assert ADV_README in report.failed
    assert (root / ADV_README).read_bytes() == (mirror / ADV_README).read_bytes()
    assert _part_files(root) == []


def test_fetch_by_perspective_via_trust_data_url(remote, monkeypatch, tmp_path):
    """`only=` selects a perspective's files, and TRUST_DATA_URL is the base URL when none is given."""
    monkeypatch.setenv("TRUST_DATA_URL", remote.url)
    root = tmp_path / "root"
    report = data.fetch(root, only=["advglue"])
    assert report.fetched == [ADV_DEV]
    assert sorted(report.failed) == sorted([ADV_README, *ADV_PLUS_PLUS_JSON])
    for rel in ADV_PLUS_PLUS_JSON:
        assert "HTTP 404" in report.failed[rel]
    assert sorted(remote.requests) == sorted(f"/{rel}" for rel in [ADV_DEV, ADV_README, *ADV_PLUS_PLUS_JSON])


def test_fetch_reports_unreachable_server(serve, tmp_path):
    """A server that refuses connections gives a failure per file, not an exception."""
    gone = serve(tmp_path / "gone")
    gone.stop()  # its port now refuses connections
    root = tmp_path / "root"
    report = data.fetch(root, paths=[ADV_DEV], base_url=gone.url, timeout=5)
    assert report.fetched == [] and list(report.failed) == [ADV_DEV]
    assert report.failed[ADV_DEV].startswith(f"{gone.url}/{ADV_DEV}: ")
    assert not (root / ADV_DEV).exists()
    assert _part_files(root) == []


def test_cli_fetch_exit_status(remote, mirror, tmp_path, capsys):
    """`data fetch` exits 1 when any file failed and 0 when all are fetched or present."""
    root = tmp_path / "root"
    base = ["fetch", "--data_dir", str(root), "--base_url", remote.url]

    assert data_main([*base, "--path", ADV_DEV, ADV_README]) == 1
    captured = capsys.readouterr()
    assert "1 fetched, 0 already present and verified, 1 failed" in captured.out
    assert f"FAILED {ADV_README}" in captured.err
    assert (root / ADV_DEV).read_bytes() == (mirror / ADV_DEV).read_bytes()

    assert data_main([*base, "--path", ADV_DEV, TOXIC_FILTERED]) == 0
    captured = capsys.readouterr()
    assert "1 fetched, 1 already present and verified, 0 failed" in captured.out
    assert "FAILED" not in captured.err


def test_cli_fetch_unknown_path_exits_2(remote, tmp_path, capsys):
    """An unknown --path is a usage error (2) and nothing is downloaded."""
    root = tmp_path / "root"
    argv = [
        "fetch",
        "--data_dir",
        str(root),
        "--base_url",
        remote.url,
        "--path",
        ADV_DEV,
        "no/such/file.json",
    ]
    assert data_main(argv) == 2
    assert "no/such/file.json" in capsys.readouterr().err
    assert remote.requests == []
    assert not (root / ADV_DEV).exists()


def test_cli_fetch_unknown_perspective_exits_2(tmp_path, capsys):
    """An unknown --only name is a usage error (2), not a traceback."""
    assert data_main(["fetch", "--data_dir", str(tmp_path), "--only", "nonsense"]) == 2
    assert "nonsense" in capsys.readouterr().err


# --------------------------------------------------------------------------- DataRoot


def test_data_root_argument_beats_environment(tmp_path, monkeypatch):
    """The data_dir argument wins over TRUST_DATA_DIR."""
    from_env, from_arg = tmp_path / "env", tmp_path / "arg"
    from_env.mkdir()
    from_arg.mkdir()
    monkeypatch.setenv("TRUST_DATA_DIR", str(from_env))
    root = data.DataRoot(data_dir=from_arg)
    assert root.explicit == from_arg.resolve()
    assert root.describe() == {
        "data_root": str(from_arg.resolve()),
        "data_root_origin": "--metadata data_dir",
    }


def test_data_root_from_environment(tmp_path, monkeypatch):
    """Without an argument TRUST_DATA_DIR is the explicit root, searched before the cache."""
    from_env = tmp_path / "env"
    from_env.mkdir()
    monkeypatch.setenv("TRUST_DATA_DIR", str(from_env))
    root = data.DataRoot()
    assert root.explicit == from_env.resolve()
    assert root.origin == "TRUST_DATA_DIR"
    assert root.roots == [from_env.resolve(), root.cache]


def test_data_root_defaults_to_user_cache(isolated_env):
    """With no explicit root the data root is $TRUST_CACHE_DIR/data."""
    root = data.DataRoot()
    assert root.explicit is None
    assert root.cache == isolated_env / "data"
    assert root.roots == [isolated_env / "data"]
    assert root.describe() == {"data_root": str(isolated_env / "data"), "data_root_origin": "user cache"}


@pytest.mark.parametrize("via", ["argument", "environment"])
def test_data_root_nonexistent_explicit_dir_is_an_error(tmp_path, monkeypatch, via):
    """A data root that does not exist is an error naming it, whichever way it was given."""
    missing = tmp_path / "no-such-root"
    if via == "environment":
        monkeypatch.setenv("TRUST_DATA_DIR", str(missing))
        make = data.DataRoot
    else:
        make = functools.partial(data.DataRoot, data_dir=str(missing))
    with pytest.raises(data.DataError, match=re.escape(str(missing))):
        make()


def test_data_root_finds_files_under_explicit_root(tmp_path):
    """find/get return the file under the explicit root; try_get gives no reason."""
    root_dir = tmp_path / "root"
    (root_dir / "advglue").mkdir(parents=True)
    (root_dir / ADV_DEV).write_text("{}")
    root = data.DataRoot(data_dir=root_dir)
    expected = root_dir.resolve() / ADV_DEV
    assert root.find(ADV_DEV) == expected
    assert root.get(ADV_DEV) == expected
    assert root.try_get(ADV_DEV) == (expected, None)
    assert root.find(ADV_README) is None


def test_data_root_explicit_root_never_downloads(tmp_path, remote, monkeypatch):
    """A file missing from an explicit root is an error naming the file, where it looked, and the fetch command."""
    monkeypatch.setenv("TRUST_DATA_URL", remote.url)  # it has the file, but must not be asked
    root_dir = tmp_path / "root"
    root_dir.mkdir()
    root = data.DataRoot(data_dir=root_dir)

    with pytest.raises(data.DataError) as exc:
        root.get(ADV_DEV)
    message = str(exc.value)
    assert ADV_DEV in message
    assert str(root_dir.resolve() / ADV_DEV) in message
    assert f"lm-eval-trust data fetch --data_dir {root_dir.resolve()} --path {ADV_DEV}" in message

    assert root.try_get(ADV_DEV) == (None, message)
    assert remote.requests == []
    assert not (root.cache / ADV_DEV).exists()


def test_data_root_cache_mode_downloads_into_cache(remote, mirror, isolated_env, monkeypatch):
    """With no explicit root, get() downloads via TRUST_DATA_URL into $TRUST_CACHE_DIR/data, once."""
    monkeypatch.setenv("TRUST_DATA_URL", remote.url)
    root = data.DataRoot()
    path = root.get(ADV_DEV)
    assert path == isolated_env / "data" / ADV_DEV
    assert path.read_bytes() == (mirror / ADV_DEV).read_bytes()
    assert remote.requests == [f"/{ADV_DEV}"]

    assert data.DataRoot().get(ADV_DEV) == path
    assert remote.requests == [f"/{ADV_DEV}"]


def test_data_root_cache_mode_reports_fetch_failure(empty_remote, isolated_env, monkeypatch):
    """When the download fails, try_get returns no path and a reason naming the failure and the fix."""
    monkeypatch.setenv("TRUST_DATA_URL", empty_remote.url)
    path, reason = data.DataRoot().try_get(ADV_DEV)
    assert path is None
    assert "Fetching it failed" in reason
    assert "HTTP 404" in reason
    assert f"{empty_remote.url}/{ADV_DEV}" in reason
    assert f"lm-eval-trust data fetch --path {ADV_DEV}" in reason
    assert not (isolated_env / "data" / ADV_DEV).exists()


def test_data_root_cache_mode_rejects_corrupt_download(remote, isolated_env, monkeypatch):
    """A corrupt download is not put in the cache, and the reason says the sha1 did not match."""
    monkeypatch.setenv("TRUST_DATA_URL", remote.url)
    path, reason = data.DataRoot().try_get(ADV_README)
    assert path is None
    assert "sha1" in reason
    assert not (isolated_env / "data" / ADV_README).exists()
    assert _part_files(isolated_env) == []


def test_data_root_cache_mode_does_not_fetch_unknown_files(remote, monkeypatch):
    """A path that is not in the manifest is an error without any download attempt."""
    monkeypatch.setenv("TRUST_DATA_URL", remote.url)
    with pytest.raises(data.DataError, match="not/in/manifest.json"):
        data.DataRoot().get("not/in/manifest.json")
    assert remote.requests == []


def test_data_root_for_data_commands(tmp_path, monkeypatch, isolated_env):
    """`data fetch/verify` use --data_dir, else TRUST_DATA_DIR, else the user cache (one resolution)."""
    assert data.data_root() == isolated_env / "data"
    monkeypatch.setenv("TRUST_DATA_DIR", str(tmp_path / "env"))
    assert data.data_root() == tmp_path / "env"
    assert data.data_root(tmp_path / "arg") == tmp_path / "arg"
    assert data.fetch_command(tmp_path, path=ADV_DEV, force=True) == (
        f"lm-eval-trust data fetch --data_dir {tmp_path} --force --path {ADV_DEV}"
    )
