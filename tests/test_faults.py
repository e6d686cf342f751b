"""Faults: a run killed part way resumes without recomputing, concurrent runs share caches safely,
and a half-written cache entry is detected and redone."""

import dataclasses
import pickle
import re
import shutil
import sqlite3
import subprocess
import sys
import threading

import pytest
import torch
from conftest import cli_env, read_results

from lm_eval_trust import data
from lm_eval_trust.compression import CompressionSpec
from lm_eval_trust.model_adapters import compress, embedded
from lm_eval_trust.model_adapters.identity import weights_sha256
from lm_eval_trust.scoring import lm_features, offline

N_DOCS = 6
# The CLI, with trust-hf's calls of `generate` wrapped: it logs each call and, at call KILL_AT, sends
# this process KILL_SIGNAL, so a run dies at a known point (the requests before it are answered).
KILLABLE_CLI = """
import os, signal, sys
from lm_eval_trust.model_adapters.trust_hf import TrustHFLM
kill_at, calls = int(os.environ.get("KILL_AT", "0")), [0]
original = TrustHFLM._model_generate
def generate(self, *args, **kwargs):
    calls[0] += 1
    print(f"generate call {calls[0]}", file=sys.stderr, flush=True)
    if calls[0] == kill_at:
        os.kill(os.getpid(), getattr(signal, os.environ["KILL_SIGNAL"]))
    return original(self, *args, **kwargs)
TrustHFLM._model_generate = generate
sys.argv[0] = "lm-eval-trust"
from lm_eval_trust.cli import main
main()
"""


def _command(model, response_cache, out):
    return [
        sys.executable,
        "-c",
        KILLABLE_CLI,
        "--model",
        "trust-hf",
        "--model_args",
        f"pretrained={model},compress=magnitude,structure=2:4",
        "--tasks",
        "trust_advglue",
        "--device",
        "cpu",
        "--batch_size",
        "1",
        "--limit",
        str(N_DOCS),
        "--use_cache",
        str(response_cache),
        "--log_samples",
        "--output_path",
        str(out),
    ]


def _start(model, cache_dir, response_cache, out, env, kill_at=0, signal_name="SIGKILL"):
    env = {**env, "TRUST_CACHE_DIR": str(cache_dir), "KILL_AT": str(kill_at), "KILL_SIGNAL": signal_name}
    return subprocess.Popen(
        _command(model, response_cache, out),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc) -> tuple[int, str]:
    stdout, stderr = proc.communicate(timeout=900)
    return proc.returncode, stdout + stderr


def _generate_calls(log: str) -> int:
    return len(re.findall(r"generate call \d+\n", log))  # progress bars share the stream


def _cached(log: str) -> str:
    return next(line for line in log.splitlines() if "Cached requests:" in line).split("] ", 1)[-1]


def _outcome(out):
    results, samples = read_results(out)
    responses = {s["doc_id"]: s["resps"] for s in samples}
    return results["results"]["trust_advglue"], responses


def _compression(out) -> dict:
    results, _ = read_results(out)
    return results["config"]["compression"]


def _rows(response_cache) -> dict[str, int]:
    (db,) = response_cache.parent.glob(f"{response_cache.name}_rank*.db")
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables}


@pytest.fixture(scope="module")
def env(shared_data, tmp_path_factory):
    return cli_env(shared_data, tmp_path_factory.mktemp("unused_cache"))


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("faults_cache")


@pytest.fixture(scope="module")
def concurrent_runs(tiny_model, shared_cache, env, tmp_path_factory):
    """Two uninterrupted runs started together, sharing the user cache and the response cache."""
    base = tmp_path_factory.mktemp("concurrent")
    procs = [_start(tiny_model, shared_cache, base / "resp", base / f"out{i}", env) for i in (0, 1)]
    logs = [_finish(p) for p in procs]
    for code, log in logs:
        assert code == 0, log[-4000:]
    return base, [log for _, log in logs]


def test_two_runs_at_once_share_the_caches_without_corrupting_them(concurrent_runs, shared_cache):
    base, _ = concurrent_runs
    first, second = _outcome(base / "out0"), _outcome(base / "out1")
    assert first == second
    entries = [p for p in (shared_cache / "compressed").iterdir() if p.is_dir()]
    assert len(entries) == 1 and not [p for p in entries if p.name.startswith(".")]
    assert (entries[0] / "compression.json").is_file()
    # One run compressed, the other waited on the lock and reused it: the same measured record.
    assert _compression(base / "out0") == _compression(base / "out1")
    assert sorted((shared_cache / "identity").glob(".*")) == [], "no half-written hash memo is left"
    (model_rows,) = [n for t, n in _rows(base / "resp").items() if t.startswith("trust_hf_")]
    assert model_rows == N_DOCS


def test_killed_runs_resume_without_recomputing(concurrent_runs, tiny_model, shared_cache, env, tmp_path):
    """SIGINT after 2 answers, SIGKILL after 2 more, then the same command finishes the run."""
    resp, out = tmp_path / "resp", tmp_path / "out"
    code, log = _finish(_start(tiny_model, shared_cache, resp, out, env, kill_at=3, signal_name="SIGINT"))
    assert code != 0 and "KeyboardInterrupt" in log and _generate_calls(log) == 3
    assert _cached(log) == f"Cached requests: 0, Requests remaining: {N_DOCS}"

    code, log = _finish(_start(tiny_model, shared_cache, resp, out, env, kill_at=3, signal_name="SIGKILL"))
    assert code == -9
    assert _cached(log) == f"Cached requests: 2, Requests remaining: {N_DOCS - 2}"

    code, log = _finish(_start(tiny_model, shared_cache, resp, out, env))
    assert code == 0, log[-4000:]
    assert _cached(log) == f"Cached requests: 4, Requests remaining: {N_DOCS - 4}"
    assert _generate_calls(log) == N_DOCS - 4, "only the unanswered requests are generated"
    base, _ = concurrent_runs
    assert _outcome(out) == _outcome(base / "out0"), "same results as an uninterrupted run"
    assert _compression(out) == _compression(base / "out0"), "the compressed checkpoint is reused"


# Half-written cache entries


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRUST_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _truncate(path, keep=0.5):
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])


def test_compressed_checkpoint_without_marker_or_with_cut_weights_is_redone(tiny_model, isolated_cache):
    spec = CompressionSpec(compress="magnitude", structure="2:4")
    path, meta = compress.compressed_checkpoint(str(tiny_model), "base", spec)
    stale = path.parent / f".{path.name}.killed.part"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"partial")
    (path / "compression.json").unlink()
    again, meta_again = compress.compressed_checkpoint(str(tiny_model), "base", spec)
    assert again == path and meta_again["sparsity"] == meta["sparsity"]
    assert not stale.exists(), "leftovers of killed runs are removed"
    _truncate(path / "model.safetensors")
    again, _ = compress.compressed_checkpoint(str(tiny_model), "base", spec)
    embedded.check_checkpoint(again)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(again, dtype=torch.float32)
    assert torch.isfinite(model(torch.tensor([[1, 2, 3]])).logits).all()


def test_damaged_converted_alias_is_converted_again(tiny_model, isolated_cache, tmp_path, monkeypatch):
    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(b"GGUF")
    conversions = []

    def fake_convert(source, out):
        conversions.append(source)
        shutil.copytree(tiny_model, out, dirs_exist_ok=True)

    monkeypatch.setattr(embedded, "gguf_path", lambda alias: gguf)
    monkeypatch.setattr(embedded, "convert", fake_convert)
    target = embedded.resolve("smollm2-135m-instruct")
    assert embedded.resolve("smollm2-135m-instruct") == target and len(conversions) == 1
    _truncate(embedded.Path(target) / "model.safetensors")
    assert embedded.resolve("smollm2-135m-instruct") == target and len(conversions) == 2
    embedded.check_checkpoint(embedded.Path(target))


def test_converted_alias_is_named_by_the_gguf_content_and_the_converter(
    tiny_model, isolated_cache, tmp_path, monkeypatch
):
    """Another GGUF of the same size, or another transformers, gets its own conversion."""
    import transformers

    gguf = tmp_path / "fake.gguf"
    conversions = []
    monkeypatch.setattr(embedded, "gguf_path", lambda alias: gguf)
    monkeypatch.setattr(
        embedded,
        "convert",
        lambda src, out: conversions.append(src) or shutil.copytree(tiny_model, out, dirs_exist_ok=True),
    )
    gguf.write_bytes(b"GGUF-one")
    first = embedded.resolve("smollm2-135m-instruct")
    gguf.write_bytes(b"GGUF-two")  # same size, other content
    second = embedded.resolve("smollm2-135m-instruct")
    monkeypatch.setattr(transformers, "__version__", "0.0.0")
    third = embedded.resolve("smollm2-135m-instruct")
    assert len({first, second, third}) == 3 and len(conversions) == 3


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SPLIT_SEED", 1),
        ("VECTORIZER", {"ngram_range": (1, 4), "analyzer": "char_wb", "min_df": 2, "sublinear_tf": True}),
        ("RIDGE", {"alpha": 1.0}),
        ("PROFANITY_WEIGHT", 2.0),
    ],
)
def test_every_setting_of_the_offline_fit_is_in_its_cache_key(name, value, monkeypatch):
    before = offline.OfflineScorer.fit_digest()
    owner = offline if name == "SPLIT_SEED" else offline.OfflineScorer
    monkeypatch.setattr(owner, name, value)
    assert offline.OfflineScorer.fit_digest() != before


def test_offline_fit_key_follows_the_training_data_and_libraries(monkeypatch):
    before = offline.OfflineScorer.fit_digest()
    real = offline.version
    monkeypatch.setattr(offline, "version", lambda pkg: "0.0" if pkg == "alt-profanity-check" else real(pkg))
    assert offline.OfflineScorer.fit_digest() != before
    monkeypatch.undo()
    manifest = data.load_manifest()
    path = offline.TOXICITY_DIR + offline.RTP_FILES[0]
    changed = {**manifest, path: dataclasses.replace(manifest[path], git_blob_sha1="0" * 40)}
    monkeypatch.setattr(offline, "load_manifest", lambda: changed)
    assert offline.OfflineScorer.fit_digest() != before


@pytest.mark.parametrize(
    ("owner", "name", "value"),
    [
        (lm_features, "LAYERS", 9),
        (lm_features, "BUCKETS", (32, 512)),
        (lm_features, "BATCH", 8),
        (offline.OfflineLMScorer, "FOLDS", 4),
        (offline.OfflineLMScorer, "ALPHAS", [1.0]),
        (offline.OfflineScorer, "RIDGE", {"alpha": 1.0}),
    ],
)
def test_every_setting_of_the_offline_lm_fit_is_in_its_cache_key(owner, name, value, monkeypatch):
    before = offline.OfflineLMScorer.fit_digest()
    monkeypatch.setattr(owner, name, value)
    assert offline.OfflineLMScorer.fit_digest() != before


class _Fit:
    """A stand-in for the offline scorer's fit: picklable, counts fits."""

    calls = 0

    @classmethod
    def fit(cls, data_root):
        cls.calls += 1
        return ("vectorizer", "model")


def test_truncated_scorer_cache_is_fitted_again(isolated_cache, monkeypatch):
    monkeypatch.setattr(_Fit, "calls", 0)
    monkeypatch.setattr(offline.OfflineScorer, "_fit", _Fit.fit)
    offline.OfflineScorer(None)
    (pkl,) = (isolated_cache / "scorers").glob("offline-*.pkl")
    assert pickle.loads(pkl.read_bytes()) == ("vectorizer", "model")
    offline.OfflineScorer(None)
    assert _Fit.calls == 1, "a whole cached fit is reused"
    _truncate(pkl)
    (pkl.parent / f".{pkl.name}.killed.part").write_bytes(b"x")
    scorer = offline.OfflineScorer(None)
    assert _Fit.calls == 2 and scorer.fitted == ("vectorizer", "model")
    assert pickle.loads(pkl.read_bytes()) == ("vectorizer", "model")
    assert not list(pkl.parent.glob("*.part"))


def _in_threads(fn, n=4):
    results, errors = [None] * n, []

    def run(i):
        try:
            results[i] = fn()
        except Exception as err:  # reported below, with the thread's error
            errors.append(err)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


def test_concurrent_scorer_construction_fits_once(isolated_cache, monkeypatch):
    monkeypatch.setattr(_Fit, "calls", 0)
    monkeypatch.setattr(offline.OfflineScorer, "_fit", _Fit.fit)
    scorers = _in_threads(lambda: offline.OfflineScorer(None))
    assert _Fit.calls == 1 and {s.fitted for s in scorers} == {("vectorizer", "model")}


def test_concurrent_weight_hashes_agree_and_leave_no_partial_memo(tiny_model, isolated_cache):
    hashes = _in_threads(lambda: weights_sha256(tiny_model))
    assert len(set(hashes)) == 1 and len(hashes[0]) == 64
    memo = isolated_cache / "identity"
    assert [p.read_text() for p in memo.iterdir()] == [hashes[0]]


def test_concurrent_fetches_into_one_root_keep_files_whole(shared_data, tmp_path):
    paths = ["advglue/dev.json", "decodingtrust/data/stereotype/dataset/system_prompts.csv"]
    root = tmp_path / "root"
    killed = root / "advglue" / ".dev.json.killed.part"
    killed.parent.mkdir(parents=True)
    killed.write_text("{")
    reports = _in_threads(lambda: data.fetch(root, paths=paths, base_url=shared_data.as_uri()))
    assert all(not r.failed for r in reports)
    assert sum(len(r.fetched) for r in reports) == len(paths), "each file is downloaded once"
    assert data.verify(root, only=["advglue", "stereotype"]).mismatched == {}
    assert not list(root.rglob("*.part"))


# Damaged response cache rows and bad batch sizes


@pytest.fixture(scope="module")
def cached_lm(tiny_model):
    from lm_eval_trust.model_adapters.trust_hf import TrustHFLM

    return TrustHFLM(pretrained=str(tiny_model), device="cpu", batch_size=1)


def test_undecodable_cache_rows_are_dropped_with_a_warning(cached_lm, tmp_path, caplog):
    from lm_eval.api.model import CachingLM

    db = tmp_path / "resp.db"
    first = CachingLM(cached_lm, str(db))
    table = first.dbdict.tablename
    first.dbdict["good"] = "an answer"
    first.dbdict.close()
    with sqlite3.connect(db) as conn:  # what a write cut short leaves: bytes that do not unpickle
        conn.executemany(f'INSERT INTO "{table}" VALUES (?, ?)', [("cut", b"\x80\x04\x95"), ("junk", b"no")])
    with caplog.at_level("WARNING"):
        again = CachingLM(cached_lm, str(db))
    assert f"Response cache {db}: dropped 2 unreadable rows of table {table}" in caplog.text
    assert dict(again.dbdict.items()) == {"good": "an answer"}
    again.dbdict.close()


def test_a_malformed_cache_table_names_the_file_and_the_fix(cached_lm, tmp_path):
    from lm_eval.api.model import CachingLM

    db = tmp_path / "resp.db"
    first = CachingLM(cached_lm, str(db))
    for i in range(300):
        first.dbdict[f"key {i}"] = "x" * 100
    first.dbdict.close()
    # Pages 1-2 (schema, lm-eval's own table) stay whole; this model's table is garbage.
    with open(db, "r+b") as f:
        f.seek(2 * 4096)
        f.write(b"\xff" * (db.stat().st_size - 2 * 4096))
    with pytest.raises(sqlite3.DatabaseError, match=rf"--use_cache file {db} is damaged .*move it aside"):
        CachingLM(cached_lm, str(db))


@pytest.mark.parametrize("batch_size", [0, -1, "0", "abc", "auto:0", "auto:x", "4.5", True])
def test_bad_batch_sizes_are_refused_before_loading(batch_size, monkeypatch):
    from lm_eval_trust.model_adapters import trust_hf

    def loaded(*args, **kwargs):
        raise AssertionError("the model was loaded or compressed")

    monkeypatch.setattr(trust_hf, "compress_base", loaded)
    monkeypatch.setattr(trust_hf.HFLM, "__init__", loaded)
    with pytest.raises(
        ValueError, match=rf"--batch_size {re.escape(repr(batch_size))} is not a batch size.*'auto:N'"
    ):
        trust_hf.TrustHFLM(pretrained="smollm2-135m-instruct", compress="magnitude", batch_size=batch_size)


@pytest.mark.parametrize("batch_size", [1, "8", "auto", "auto:4"])
def test_good_batch_sizes_pass_the_check(batch_size):
    from lm_eval_trust.model_adapters.generation import check_batch_size

    check_batch_size(batch_size)
