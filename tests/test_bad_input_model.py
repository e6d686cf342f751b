"""Bad model and compression input: each is an error naming the value and the fix.

Compression values are checked when the setting is parsed, before any model is loaded. Covered
elsewhere: a group size that does not divide a layer
(test_compress.py::test_group_size_error_lists_sizes_that_work), an unreachable calibration dataset
(test_compress.py::test_missing_calibration_source_lists_offline_options), a checkpoint format whose
backend is missing (test_compress.py::test_formats_are_detected_and_missing_backends_named).
"""

import json
import shutil
from functools import partial
from types import SimpleNamespace

import pytest
from test_bad_input_data import load_task

from lm_eval_trust.compression import CompressionError, CompressionSpec
from lm_eval_trust.dimension import TaskConfigError
from lm_eval_trust.model_adapters import embedded
from lm_eval_trust.model_adapters.calibration import calibration_texts
from lm_eval_trust.model_adapters.embedded import ModelResolutionError


@pytest.fixture
def offline(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


@pytest.fixture
def checkpoint(tiny_model, tmp_path):
    return shutil.copytree(tiny_model, tmp_path / "ckpt")


@pytest.mark.parametrize(
    "name, message",
    [
        ("smollm2-135m", "did you mean the alias 'smollm2-135m-instruct'"),
        ("SmolLM2-135M-Instruct", "did you mean the alias 'smollm2-135m-instruct'"),
        ("no-such-org/no-such-model", "not a local folder, a known alias"),
        ("/no/such/checkpoint", "no such folder"),
        ("./ckpt-typo", "no such folder"),
    ],
)
def test_unknown_alias_or_missing_folder_is_named(offline, name, message):
    with pytest.raises(ModelResolutionError, match=message) as err:
        embedded.resolve(name)
    assert name in str(err.value)


def test_a_local_checkpoint_passes_through(checkpoint):
    assert embedded.resolve(str(checkpoint)) == str(checkpoint)


def test_a_folder_that_is_not_a_checkpoint(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ModelResolutionError, match=r"no config\.json"):
        embedded.resolve(str(tmp_path))
    with pytest.raises(ModelResolutionError, match="is a file"):
        embedded.resolve(str(tmp_path / "notes.txt"))


def test_a_checkpoint_without_weights_or_with_a_missing_shard(checkpoint):
    (checkpoint / "model.safetensors").unlink()
    with pytest.raises(ModelResolutionError, match="no weight files"):
        embedded.resolve(str(checkpoint))
    (checkpoint / "model-00001-of-00002.safetensors").write_bytes(b"")
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (checkpoint / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ModelResolutionError, match=r"model-00002-of-00002\.safetensors"):
        embedded.resolve(str(checkpoint))


@pytest.mark.parametrize(
    "damage, problem",
    [
        (lambda b: b[: len(b) // 2], "file not fully covered"),
        (lambda b: b[:5], "header too small"),
        (lambda b: b[:8] + b"{not json" + b[17:], "invalid JSON in header"),
        (lambda b: (10**9).to_bytes(8, "little") + b[8:], "header too large"),
    ],
)
def test_a_corrupted_safetensors_file_is_named(checkpoint, damage, problem):
    weights = checkpoint / "model.safetensors"
    weights.write_bytes(damage(weights.read_bytes()))
    with pytest.raises(ModelResolutionError, match=problem) as err:
        embedded.resolve(str(checkpoint))
    assert str(weights) in str(err.value) and "save the checkpoint again" in str(err.value)


@pytest.mark.parametrize(
    "args, message",
    [
        ({"compress": "zip"}, "compress='zip' is not a method; choose from none, gptq"),
        ({"compress": "gptq"}, "compress=gptq needs bits in .* got bits=None"),
        ({"compress": "gptq", "bits": 5}, "needs bits in .* got bits=5"),
        ({"compress": "gptq", "bits": "four"}, "bits='four' must be an integer"),
        ({"compress": "gptq", "bits": 4, "group_size": 64.5}, "group_size=64.5 must be an integer"),
        ({"compress": "gptq", "bits": True}, "bits=True must be an integer"),
        ({"compress": "gptq", "bits": 0}, r"compress=gptq needs bits in \(2, 3, 4, 8\), got bits=0"),
        ({"compress": "awq", "bits": -4}, "needs bits in .* got bits=-4"),
        ({"compress": "gptq", "bits": 4, "group_size": 0}, "group_size=0 must be a positive integer"),
        (
            {"compress": "gptq", "bits": 4, "group_size": -1},
            "group_size=-1 must be a positive .*not supported",
        ),
        ({"compress": "awq", "bits": 4, "group_size": -64}, "group_size=-64 must be a positive integer"),
        ({"compress": "gptq", "bits": 4, "group_size": "abc"}, "group_size='abc' must be an integer"),
        ({"compress": "gptq", "bits": 4, "group_size": False}, "group_size=False must be an integer"),
        ({"compress": "wanda", "sparsity": "half"}, "sparsity='half' must be a number"),
        ({"compress": "wanda", "sparsity": True}, "sparsity=True must be a number"),
        ({"compress": "wanda", "sparsity": 0}, r"sparsity=0\.0 must be between 0 and 1"),
        ({"compress": "magnitude", "sparsity": 1}, r"sparsity=1\.0 must be between 0 and 1"),
        ({"compress": "sparsegpt", "sparsity": -0.5}, r"sparsity=-0\.5 must be between 0 and 1"),
        ({"compress": "wanda", "sparsity": "nan"}, "sparsity=nan must be between 0 and 1"),
        ({"compress": "wanda", "structure": "0:4"}, "structure='0:4' is not supported; choose from"),
        ({"compress": "wanda", "structure": "4:2"}, "structure='4:2' is not supported"),
        ({"compress": "wanda", "structure": "abc"}, "structure='abc' is not supported"),
        ({"compress": "wanda", "structure": "2:4", "sparsity": 0.6}, "structure=2:4 keeps 2 of every 4"),
        ({"compress": "wanda", "calib_samples": 0}, "calib_samples=0 must be a positive integer"),
        ({"compress": "gptq", "bits": 4, "calib_samples": -8}, "calib_samples=-8 must be a positive"),
        ({"compress": "wanda", "calib_samples": 2.5}, "calib_samples=2.5 must be an integer"),
        ({"compress": "wanda", "calib_samples": "many"}, "calib_samples='many' must be an integer"),
        ({"compress": "awq", "bits": 4, "calib_seqlen": 0}, "calib_seqlen=0 must be a positive integer"),
        ({"compress": "wanda", "calib_seed": -1}, "calib_seed=-1 must be a non-negative integer"),
        ({"compress": "wanda", "calib_seed": "x"}, "calib_seed='x' must be an integer"),
        ({"compress": "wanda", "calib_dataset": ""}, "calib_dataset='' must name a hub dataset"),
        ({"compress": "wanda", "calib_dataset": "/no/such/c4.jsonl"}, "c4.jsonl: no such file"),
        ({"compress": "gptq", "bits": 4, "calib_template": "fancy"}, "must be chat or raw"),
        (
            {"compress": "gptq", "bits": 4, "calib_dataset": "self", "calib_template": "chat"},
            "calib_template=chat is not used with calib_dataset=self",
        ),
    ],
)
def test_bad_compression_values_are_caught_when_parsed(args, message):
    with pytest.raises(CompressionError, match=message):
        CompressionSpec.pop_from(dict(args))


@pytest.mark.parametrize(
    "setting, message",
    [
        ("gptq:4:g0", "'gptq:4:g0': group_size=0 must be a positive integer"),
        ("awq:0", "needs bits in .* got bits=0"),
        ("gptq:4:g64:g32", "give one group size"),
        ("wanda:2:4:0.3:0.4", "give one structure and at most one sparsity"),
        ("wanda:0:4", "structure='0:4' is not supported"),
        ("wanda:3:4", "structure='3:4' is not supported"),
        ("sparsegpt:unstructured:0", r"sparsity=0\.0 must be between 0 and 1"),
        ("magnitude:unstructured:nan", "sparsity=nan must be between 0 and 1"),
        ("magnitude:150%", r"sparsity=1\.5 must be between 0 and 1"),
    ],
)
def test_bad_settings_are_caught_when_parsed(setting, message):
    from lm_eval_trust.compression import parse_setting

    with pytest.raises(CompressionError, match=message):
        parse_setting(setting)


def test_a_bad_group_size_stops_the_compress_command_before_the_model(capsys):
    """The model path does not exist: the group size error shows it was never reached."""
    from lm_eval_trust.cli import compress_main

    code = compress_main(["--model_args", "pretrained=/no/such/model,compress=gptq,bits=4,group_size=0"])
    assert code == 2
    assert "group_size=0 must be a positive integer" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (
            {"compress": "gptq", "bits": 4, "sparsity": 0.5},
            "compress=gptq does not use sparsity=0.5: sparsity is used only by magnitude, sparsegpt, wanda",
        ),
        ({"compress": "gptq", "bits": 4, "structure": "unstructured"}, "gptq does not use structure="),
        ({"compress": "awq", "bits": 3, "sparsity": 0.5}, "awq does not use sparsity=0.5"),
        ({"compress": "wanda", "bits": 4}, "wanda does not use bits=4: bits is used only by gptq, awq"),
        ({"compress": "sparsegpt", "group_size": 128}, "group_size is used only by gptq, awq"),
        (
            {"compress": "magnitude", "calib_samples": 8},
            "magnitude does not use calib_samples=8: calib_samples is used only by gptq, awq, sparsegpt, wanda",
        ),
        ({"compress": "magnitude", "calib_dataset": "self"}, "magnitude does not use calib_dataset=self"),
        ({"bits": 4}, "compress=none does not use bits=4"),
        ({"compress": "none", "calib_seed": 1}, "compress=none does not use calib_seed=1"),
    ],
)
def test_an_argument_the_method_does_not_use_is_an_error(args, message):
    with pytest.raises(CompressionError, match=message):
        CompressionSpec.pop_from(dict(args))


def test_a_spec_built_in_code_with_an_unused_field_is_an_error():
    with pytest.raises(CompressionError, match="gptq does not use sparsity=0.3"):
        CompressionSpec(compress="gptq", bits=4, sparsity=0.3).validate()


def test_numeric_model_args_given_as_strings_are_accepted():
    spec = CompressionSpec.pop_from(
        {"compress": "gptq", "bits": "4", "group_size": "64", "calib_samples": 8.0}
    )
    assert (spec.bits, spec.group_size, spec.calib_samples) == (4, 64, 8)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("empty.txt", "", "no usable text"),
        ("blank.txt", "\n\n   \n\n", "no usable text"),
        ("empty.jsonl", "\n", "no usable text"),
        ("fields.jsonl", '{"title": "x"}\n{"text": ""}\n', "no usable text"),
        (
            "short.txt",
            "one paragraph\n\nanother",
            r"holds 2 text\(s\), fewer than calib_samples=4; .*calib_samples=2",
        ),
        ("bad.jsonl", '{"text": "a"}\n{"text": \n', r"bad\.jsonl:2 is not valid JSON"),
        ("bad.json", '{"text": "a"', r"bad\.json is not valid JSON"),
        ("object.json", '{"text": "a"}', "must hold a JSON list"),
    ],
)
def test_unusable_calibration_files(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    spec = CompressionSpec(compress="wanda", calib_dataset=str(path), calib_samples=4)
    with pytest.raises(CompressionError, match=message) as err:
        calibration_texts(spec, None, None)
    assert str(path) in str(err.value)


def test_a_model_without_chat_template_under_apply_chat_template(tiny_model, tmp_path, shared_data):
    """lm-eval's own HFLM.apply_chat_template on a tokenizer without a template, through TrustTask."""
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoTokenizer

    plain = shutil.copytree(tiny_model, tmp_path / "plain")
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((plain / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(config))
    tokenizer = AutoTokenizer.from_pretrained(plain)
    assert tokenizer.chat_template is None
    lm = SimpleNamespace(tokenizer=tokenizer, chat_template_args={})
    task = load_task("trust_advglue", {"scenarios": ["advglue_dev_sst2"]})
    doc = task.test_docs()[0]
    with pytest.raises(TaskConfigError, match="drop --apply_chat_template"):
        task.fewshot_context(
            doc, 0, apply_chat_template=True, chat_template=partial(HFLM.apply_chat_template, lm)
        )
    assert task.fewshot_context(doc, 0).endswith("Assistant:"), "without the flag, the plain transcript"
