"""On-the-fly compression: exact masks, the cache (its key, locking, killed runs), measured metadata,
trust-hf."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import WORDS, evaluate_checkpoint, read_results

from lm_eval_trust.compression import METHOD_KEYS, STRUCTURES, CompressionError, CompressionSpec
from lm_eval_trust.model_adapters import compress
from lm_eval_trust.model_adapters.compress import compressed_checkpoint
from lm_eval_trust.model_adapters.recipes import magnitude_masks, magnitude_prune
from lm_eval_trust.model_adapters.targets import check_group_size, target_linears


@pytest.mark.parametrize("structure, keep, group", [("2:4", 2, 4), ("4:8", 4, 8), ("1:2", 1, 2)])
def test_n_m_masks_are_exact_and_keep_the_largest(structure, keep, group):
    torch.manual_seed(0)
    weight = torch.randn(6, 16)
    mask = magnitude_masks(weight, 0.5, structure)
    groups = mask.reshape(6, -1, group)
    assert bool((groups.sum(-1) == keep).all())
    kept = (weight.abs() * mask).reshape(6, -1, group)
    dropped = (weight.abs() * ~mask).reshape(6, -1, group)
    assert bool((kept.max(-1).values >= dropped.max(-1).values).all())


def test_unstructured_mask_zeroes_exactly_the_requested_share():
    weight = torch.arange(1.0, 101.0).reshape(10, 10)
    mask = magnitude_masks(weight, 0.3, "unstructured")
    assert int((~mask).sum()) == 30 and bool((~mask).flatten()[:30].all())


def test_pop_from_leaves_other_model_args():
    kwargs = {"compress": "wanda", "structure": "2:4", "batch_size": 4}
    spec = CompressionSpec.pop_from(kwargs)
    assert (
        kwargs == {"batch_size": 4}
        and spec.structure == "2:4"
        and spec.calibration() == ("allenai/c4", "raw")
    )


def test_group_size_error_lists_sizes_that_work(tiny_model):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    with pytest.raises(CompressionError, match=r"sizes that work: \[8, 16\]"):
        check_group_size(model, 128)


@pytest.fixture
def calib_file(tmp_path):
    path = tmp_path / "calib.jsonl"
    path.write_text("".join(json.dumps({"text": " ".join(WORDS * 3)}) + "\n" for _ in range(8)))
    return path


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRUST_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _spec(**kw):
    return CompressionSpec(calib_samples=4, calib_seqlen=32, **kw)


def _logits(path_or_model, tokenizer_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = (
        AutoModelForCausalLM.from_pretrained(path_or_model, dtype=torch.float32)
        if isinstance(path_or_model, str | os.PathLike)
        else path_or_model
    )
    ids = AutoTokenizer.from_pretrained(tokenizer_path)("the answer is positive", return_tensors="pt")
    with torch.no_grad():
        return model(**ids).logits


@pytest.mark.parametrize("structure", ["unstructured", "2:4", "4:8", "1:2"])
def test_magnitude_checkpoint_is_measured_cached_and_reloads_equal(tiny_model, isolated_cache, structure):
    spec = _spec(compress="magnitude", structure=structure)
    path, meta = compressed_checkpoint(str(tiny_model), "base", spec)
    assert meta["sparsity"] == pytest.approx(0.5)
    assert meta["arguments"] == {"compress": "magnitude", "sparsity": 0.5, "structure": structure}
    assert meta["calibration"] is None and meta["device"] == "cpu"
    assert set(meta["sparsity_by_layer_type"]) >= {"q_proj", "down_proj"}
    if structure != "unstructured":
        keep, group = STRUCTURES[structure]
        assert meta[f"share_of_groups_{keep}_{group}"] == 1.0
    again, _ = compressed_checkpoint(str(tiny_model), "base", spec)
    assert again == path and (path / "compression.json").stat().st_mtime == pytest.approx(
        (again / "compression.json").stat().st_mtime
    )
    from transformers import AutoModelForCausalLM

    pruned = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    magnitude_prune(pruned, 0.5, structure)
    assert torch.equal(_logits(pruned, tiny_model), _logits(path, tiny_model))


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_oneshot_pruning_2_4(tiny_model, isolated_cache, calib_file, method):
    spec = _spec(compress=method, structure="2:4", calib_dataset=str(calib_file))
    _, meta = compressed_checkpoint(str(tiny_model), "base", spec)
    assert meta["sparsity"] == pytest.approx(0.5) and meta["share_of_groups_2_4"] == 1.0
    assert meta["calibration"]["dataset"] == str(calib_file) and meta["calibration"]["samples"] == 4


def test_gptq_4_bit_is_packed_and_loads_through_transformers(tiny_model, isolated_cache, calib_file):
    spec = _spec(compress="gptq", bits=4, group_size=8, calib_dataset=str(calib_file), calib_template="raw")
    path, meta = compressed_checkpoint(str(tiny_model), "base", spec)
    config = json.loads((path / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] == "compressed-tensors"
    assert "sparsity" not in meta["arguments"] and "structure" not in meta["arguments"]
    assert meta["arguments"]["group_size"] == 8 and meta["calibration"]["template"] == "raw"
    # 4-bit packed weights plus one fp32 scale per group of 8 (4 more bits per weight), plus shapes
    assert 8 < meta["effective_bits_per_weight"] < 8.5
    logits = _logits(path, tiny_model)
    assert torch.isfinite(logits).all()


def test_awq_4_bit_runs_on_cpu_and_is_packed(tiny_model, isolated_cache, calib_file):
    spec = _spec(compress="awq", bits=4, group_size=8, calib_dataset=str(calib_file), calib_template="raw")
    path, meta = compressed_checkpoint(str(tiny_model), "base", spec)
    quantization = json.loads((path / "config.json").read_text())["quantization_config"]
    assert quantization["quant_method"] == "compressed-tensors"
    assert quantization["config_groups"]["group_0"]["weights"]["num_bits"] == 4
    # 4-bit packed weights plus a scale and a zero point per group of 8
    assert meta["method"] == "awq" and 4 < meta["effective_bits_per_weight"] < 13
    assert torch.isfinite(_logits(path, tiny_model)).all()


def test_missing_calibration_source_lists_offline_options(tiny_model, isolated_cache):
    spec = _spec(compress="wanda", calib_dataset="no-such-org/no-such-dataset")
    with pytest.raises(CompressionError, match="calib_dataset=self"):
        compressed_checkpoint(str(tiny_model), "base", spec)


def test_trust_hf_records_the_measured_compression(run_cli, tiny_model, tmp_path):
    out = tmp_path / "out"
    run_cli(
        "lm-eval-trust",
        "--model",
        "trust-hf",
        "--model_args",
        f"pretrained={tiny_model},compress=magnitude,structure=2:4",
        "--tasks",
        "trust_advglue",
        "--device",
        "cpu",
        "--limit",
        "3",
        "--output_path",
        str(out),
    )
    results, _ = read_results(out)
    compression = results["config"]["compression"]
    assert compression["method"] == "magnitude" and compression["sparsity"] == pytest.approx(0.5)
    assert compression["share_of_groups_2_4"] == 1.0
    assert results["config"]["model_path"].endswith(compression["cache_key"])


def test_formats_are_detected_and_missing_backends_named(tmp_path, tiny_model, monkeypatch):
    from lm_eval_trust.model_adapters import formats

    assert formats.detect_format(tiny_model) == "dense"
    (tmp_path / "config.json").write_text(
        json.dumps({"quantization_config": {"quant_method": "gptq", "bits": 4}})
    )
    assert formats.detect_format(tmp_path) == "gptq"
    monkeypatch.setattr(formats.importlib.util, "find_spec", lambda name: None)
    for fmt in ("gptq", "awq"):
        with pytest.raises(CompressionError, match=r"needs gptqmodel.*lm-eval-trust\[gptq\]"):
            formats.check_backend(fmt)
    formats.check_backend("compressed-tensors")


def test_fake_quantized_and_pruned_weights_are_measured(tiny_model):
    from transformers import AutoModelForCausalLM

    from lm_eval_trust.model_adapters import formats

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    with torch.no_grad():
        for module in target_linears(model).values():
            w = module.weight.reshape(-1, 8)
            low, high = w.min(-1, keepdim=True).values, w.max(-1, keepdim=True).values
            scale = (high - low) / 3
            module.weight.copy_((torch.round((w - low) / scale) * scale + low).reshape_as(module.weight))
    stats = formats.measured_weights(model, "dense", 8)
    # four levels per group: a 2-bit fake-quantized model
    assert stats["implied_bits"] == 2 and stats["levels_per_group"] <= 4 and stats["packed_layers"] == 0
    magnitude_prune(model, 0.5, "2:4")
    assert formats.measured_weights(model, "dense", 8)["sparsity"] == pytest.approx(0.5, abs=0.01)


def test_trust_hf_loads_a_compressed_tensors_checkpoint_made_elsewhere(
    run_cli, tiny_model, tmp_path, calib_file, monkeypatch
):
    monkeypatch.setenv("TRUST_CACHE_DIR", str(tmp_path / "elsewhere"))
    spec = _spec(compress="gptq", bits=4, group_size=8, calib_dataset=str(calib_file), calib_template="raw")
    path, _ = compressed_checkpoint(str(tiny_model), "base", spec)
    monkeypatch.delenv("TRUST_CACHE_DIR")
    results = evaluate_checkpoint(run_cli, path, tmp_path / "out")
    measured = results["config"]["weights_measured"]
    assert measured["checkpoint_format"] == "compressed-tensors" and measured["packed_layers"] == 7


def test_self_calibration_needs_no_dataset(tiny_model, isolated_cache):
    spec = _spec(compress="wanda", structure="2:4", calib_dataset="self")
    _, meta = compressed_checkpoint(str(tiny_model), "base", spec)
    assert meta["calibration"]["dataset"] == "self" and meta["calibration"]["samples"] >= 1
    assert meta["calibration"]["template"] is None, "the model's own text is not put in a template"
    assert meta["share_of_groups_2_4"] == 1.0


def test_compressed_tensors_checkpoint_generates_through_shared_prefixes(
    tiny_model, calib_file, isolated_cache
):
    """The first forward of a packed checkpoint may be the decoder alone (a shared prefix), before
    compressed-tensors' decompression hook on the whole model has fired."""
    from lm_eval.api.instance import Instance

    from lm_eval_trust.model_adapters.trust_hf import TrustHFLM

    spec = _spec(compress="gptq", bits=4, group_size=8, calib_dataset=str(calib_file), calib_template="raw")
    path, _ = compressed_checkpoint(str(tiny_model), "base", spec)
    lm = TrustHFLM(pretrained=str(path), device="cpu", batch_size=4)
    assert lm.weights_measured["packed_layers"] == 7
    prefix = " ".join(WORDS * 8)  # 104 tokens, over the 64 shared tokens that make a shared-prefix batch
    greedy = {"until": [], "max_gen_toks": 3, "do_sample": False}
    requests = [
        Instance("generate_until", {}, (f"{prefix} {word}", dict(greedy)), 0, ("t", i, 1))
        for i, word in enumerate(WORDS[:3])
    ]
    answers = lm.generate_until(requests)
    assert len(answers) == 3 and all(isinstance(a, str) for a in answers)


# -- the cache key ----------------------------------------------------------------------------------

# A second valid value for every field, to see each one change the key.
CHANGED = {
    "bits": 8,
    "group_size": 8,
    "sparsity": 0.3,
    "structure": "2:4",
    "calib_dataset": "self",
    "calib_samples": 8,
    "calib_seqlen": 64,
    "calib_seed": 1,
    "calib_template": "raw",
}


def _key(base, spec, weights="w", calib="c", config=None):
    from transformers import AutoConfig

    config = config or AutoConfig.from_pretrained(base)
    return compress.cache_key(compress.key_material(str(base), weights, config, spec, calib))


def _base_spec(method: str) -> CompressionSpec:
    return CompressionSpec.from_record({"method": method, "arguments": {"bits": 4, "group_size": 16}})


@pytest.mark.parametrize("method", ["gptq", "awq", "wanda", "sparsegpt", "magnitude"])
def test_every_argument_a_method_uses_changes_the_cache_key(tiny_model, method):
    base = _base_spec(method)
    keys = {_key(tiny_model, base)}
    for field in METHOD_KEYS[method][1:]:
        changed = replace(base, **{field: CHANGED[field]})
        changed.validate()
        keys.add(_key(tiny_model, changed))
    assert len(keys) == len(METHOD_KEYS[method])


def test_the_method_changes_the_cache_key(tiny_model):
    keys = {_key(tiny_model, _base_spec(m)) for m in ("gptq", "awq", "wanda", "sparsegpt", "magnitude")}
    assert len(keys) == 5


def test_every_other_input_changes_the_cache_key(tiny_model, tmp_path, monkeypatch):
    from transformers import AutoConfig

    spec = _spec(compress="wanda", structure="2:4")
    reference = _key(tiny_model, spec)
    copy = Path(shutil.copytree(tiny_model, tmp_path / "copy"))
    assert _key(copy, spec) == reference, "where the base lies is no part of the key"
    assert _key(tiny_model, spec, weights="other weights") != reference
    assert _key(tiny_model, spec, calib="other calibration tokens") != reference
    hub = AutoConfig.from_pretrained(tiny_model)
    hub._commit_hash = "0123abcd"
    assert _key(tiny_model, spec, config=hub) != reference, "a hub base's revision"
    for name in ("tokenizer_config.json", "config.json", "generation_config.json"):
        edited = Path(shutil.copytree(tiny_model, tmp_path / name))
        (edited / name).write_text(json.dumps({**json.loads((edited / name).read_text()), "edited": 1}))
        assert _key(edited, spec) != reference, name
    real_version = compress.version
    for library in compress.LIBRARIES:
        monkeypatch.setattr(
            compress, "version", lambda n, lib=library: "0.0" if n == lib else real_version(n)
        )
        assert _key(tiny_model, spec) != reference, library
    monkeypatch.setattr(compress, "version", real_version)
    magnitude = _key(tiny_model, _spec(compress="magnitude"))
    monkeypatch.setattr(compress, "oneshot_device", lambda: "cuda:NVIDIA H200")
    assert _key(tiny_model, spec) != reference, "oneshot's results differ by device"
    assert _key(tiny_model, _spec(compress="magnitude")) == magnitude, "magnitude pruning runs on CPU"


def test_calibration_text_seed_and_length_change_the_calibration_hash(tiny_model, tmp_path):
    from transformers import AutoTokenizer

    from lm_eval_trust.model_adapters.calibration import calibration_dataset

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    path = tmp_path / "calib.jsonl"

    def digest(spec, texts):
        path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
        return calibration_dataset(spec, None, tokenizer)[1]

    texts = [" ".join(WORDS[i:] + WORDS[:i]) for i in range(8)]
    spec = _spec(compress="wanda", calib_dataset=str(path))
    digests = {
        digest(spec, texts),
        digest(spec, texts[:-1] + ["the answer is yes"]),
        digest(replace(spec, calib_seed=1), texts),
        digest(replace(spec, calib_samples=5), texts),
        digest(replace(spec, calib_seqlen=4), texts),
    }
    assert len(digests) == 5


def test_a_cached_checkpoint_is_reused_without_loading_the_model(tiny_model, isolated_cache, monkeypatch):
    from transformers import AutoModelForCausalLM

    spec = _spec(compress="magnitude", structure="2:4")
    path, meta = compressed_checkpoint(str(tiny_model), "base", spec)

    def no_load(cls, *args, **kwargs):
        raise AssertionError("the model was loaded although the checkpoint is cached")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(no_load))
    assert compressed_checkpoint(str(tiny_model), "base", spec) == (path, meta)


@pytest.mark.parametrize(
    "spec, message",
    [
        (_spec(compress="gptq", bits=4, calib_dataset="self"), r"group_size=128 does not divide .*\[8, 16\]"),
        (
            replace(_spec(compress="wanda", calib_dataset="self"), calib_seqlen=5000),
            "calib_seqlen=5000 is longer than this model's 4096 positions; set calib_seqlen=512 or less",
        ),
    ],
)
def test_what_the_model_cannot_take_is_an_error_before_it_loads(
    tiny_model, isolated_cache, monkeypatch, spec, message
):
    from transformers import AutoModelForCausalLM

    def no_load(cls, *args, **kwargs):
        raise AssertionError("the model was loaded before the setting was checked against its shape")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(no_load))
    with pytest.raises(CompressionError, match=message):
        compressed_checkpoint(str(tiny_model), "base", spec)


def test_a_damaged_cache_entry_is_made_again(tiny_model, isolated_cache, caplog):
    spec = _spec(compress="magnitude", structure="2:4")
    path, meta = compressed_checkpoint(str(tiny_model), "base", spec)
    weights = path / "model.safetensors"
    whole = weights.read_bytes()
    weights.write_bytes(whole[: len(whole) // 2])
    again, again_meta = compressed_checkpoint(str(tiny_model), "base", spec)
    assert again == path and weights.read_bytes() == whole
    assert "incomplete or damaged; making it again" in caplog.text


# -- two processes, and a process killed part way ---------------------------------------------------

# Compresses magnitude 2:4 into $TRUST_CACHE_DIR, holding after the weights are saved (before the
# entry is complete) until EVENTS/release exists; EVENTS/compressing.PID names its partial folder.
# Logging is left unconfigured, as in a plain run: the wait must show all the same.
CHILD = """
import os, sys, time
from pathlib import Path
from lm_eval_trust.compression import CompressionSpec
from lm_eval_trust.model_adapters import compress
base, events = sys.argv[1], Path(sys.argv[2])
measure = compress.measure
def held(path, spec):
    note = events / f".note.{os.getpid()}"
    note.write_text(str(path))
    note.rename(events / f"compressing.{os.getpid()}")
    while not (events / "release").exists():
        time.sleep(0.05)
    return measure(path, spec)
compress.measure = held
spec = CompressionSpec(compress="magnitude", structure="2:4")
print(compress.compressed_checkpoint(base, "base", spec)[0])
"""


def _start(tiny_model, events: Path, cache: Path, name: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "TRUST_CACHE_DIR": str(cache),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    with open(events / f"{name}.err", "w") as err:
        return subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tiny_model), str(events)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )


def _wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the process ended (exit {proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _stop(*procs: subprocess.Popen) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_two_processes_compress_a_setting_once(tiny_model, tmp_path):
    events, cache = tmp_path / "events", tmp_path / "cache"
    events.mkdir()
    first = _start(tiny_model, events, cache, "first")
    procs = [first]
    try:
        _wait_for(lambda: any(events.glob("compressing.*")), first, "the first process to compress")
        second = _start(tiny_model, events, cache, "second")
        procs.append(second)
        waiting = events / "second.err"
        _wait_for(lambda: "Waiting for another process" in waiting.read_text(), second, "the second to wait")
        (events / "release").touch()
        out_first, _ = first.communicate(timeout=60)
        out_second, _ = second.communicate(timeout=60)
    finally:
        _stop(*procs)
    assert (first.returncode, second.returncode) == (0, 0), (events / "first.err").read_text()[-2000:]
    path = Path(out_first.strip())
    assert out_second.strip() == str(path)
    assert [p.name for p in events.glob("compressing.*")] == [f"compressing.{first.pid}"], "compressed twice"
    assert f"(lock {path}.lock)" in waiting.read_text()
    assert not list(cache.rglob("*.part"))
    assert json.loads((path / "compression.json").read_text())["share_of_groups_2_4"] == 1.0


def test_a_run_killed_while_compressing_is_cleaned_up_by_the_rerun(tiny_model, tmp_path, monkeypatch):
    events, cache = tmp_path / "events", tmp_path / "cache"
    events.mkdir()
    proc = _start(tiny_model, events, cache, "killed")
    try:
        _wait_for(lambda: any(events.glob("compressing.*")), proc, "the process to compress")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    partial = Path((events / f"compressing.{proc.pid}").read_text())
    assert partial.is_dir() and (partial / "model.safetensors").is_file()
    target = partial.parent / partial.name.split(".")[1]
    assert not target.exists()
    spec = CompressionSpec(compress="magnitude", structure="2:4")
    monkeypatch.setenv("TRUST_CACHE_DIR", str(cache))
    path, meta = compressed_checkpoint(str(tiny_model), "base", spec)
    assert path == target and not partial.exists() and not list(cache.rglob("*.part"))
    monkeypatch.setenv("TRUST_CACHE_DIR", str(tmp_path / "clean"))
    clean, clean_meta = compressed_checkpoint(str(tiny_model), "base", spec)
    meta.pop("compression_seconds")
    clean_meta.pop("compression_seconds")
    assert meta == clean_meta
    assert (path / "model.safetensors").read_bytes() == (clean / "model.safetensors").read_bytes()
