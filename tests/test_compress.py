"""On-the-fly compression: exact masks, argument errors, the cache, measured metadata, trust-hf."""

import json
import os

import pytest
import torch
from conftest import WORDS, evaluate_checkpoint, read_results

from lm_eval_trust.compression import STRUCTURES, CompressionError, CompressionSpec
from lm_eval_trust.model_adapters.compress import compressed_checkpoint
from lm_eval_trust.model_adapters.pruning import magnitude_masks, magnitude_prune
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


@pytest.mark.parametrize(
    "args, message",
    [
        ({"compress": "zip"}, "not a method"),
        ({"compress": "gptq"}, "needs bits"),
        ({"compress": "gptq", "bits": 5}, "needs bits"),
        ({"compress": "wanda", "structure": "3:4"}, "not supported"),
        ({"compress": "wanda", "structure": "2:4", "sparsity": 0.6}, "keeps 2 of every 4"),
        ({"compress": "magnitude", "sparsity": 1.5}, "between 0 and 1"),
        ({"compress": "gptq", "bits": 4, "calib_template": "fancy"}, "chat or raw"),
    ],
)
def test_bad_arguments_name_the_value_and_the_fix(args, message):
    with pytest.raises(CompressionError, match=message):
        CompressionSpec.pop_from(dict(args))


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
    stats = formats.weight_statistics(model, group_size=8)
    # four levels per group: a 2-bit fake-quantized model
    assert stats["implied_bits"] == 2 and stats["levels_per_group"] <= 4 and stats["packed_layers"] == 0
    magnitude_prune(model, 0.5, "2:4")
    assert formats.weight_statistics(model, group_size=8)["sparsity"] == pytest.approx(0.5, abs=0.01)


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
