"""One compression setting, every written form: short form, `--model_args`, folder, report labels."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import asdict

import pytest

from lm_eval_trust.compression import (
    METHOD_KEYS,
    CompressionError,
    CompressionSpec,
    args_for,
    folder_name,
    format_model_args,
    label,
    leaderboard_name,
    model_args,
    parse_model_args,
    parse_setting,
    pruning_label,
)

SETTINGS = [
    # spec, short form, folder, report label, leaderboard name
    (CompressionSpec(), "dense", "dense", "dense", "tiny"),
    (
        CompressionSpec(compress="gptq", bits=4, group_size=64),
        "gptq:4:g64",
        "gptq-w4-g64",
        "gptq 4-bit g64",
        "tiny@gptq_4bit_64g",
    ),
    (
        CompressionSpec(compress="awq", bits=3),
        "awq:3:g128",
        "awq-w3-g128",
        "awq 3-bit g128",
        "tiny@awq_3bit_128g",
    ),
    (
        CompressionSpec(compress="wanda", structure="2:4"),
        "wanda:2:4",
        "wanda-2of4-s50",
        "wanda 2:4 50%",
        "tiny@wanda_0.5_2to4",
    ),
    (
        CompressionSpec(compress="magnitude", structure="1:2"),
        "magnitude:1:2",
        "magnitude-1of2-s50",
        "magnitude 1:2 50%",
        "tiny@magnitude_0.5_1to2",
    ),
    (
        CompressionSpec(compress="sparsegpt", sparsity=0.3),
        "sparsegpt:unstructured:0.3",
        "sparsegpt-unstructured-s30",
        "sparsegpt unstructured 30%",
        "tiny@sparsegpt_0.3_unstructured",
    ),
]


@pytest.mark.parametrize(("spec", "short", "folder", "name", "board"), SETTINGS)
def test_a_setting_round_trips_through_every_form(spec, short, folder, name, board):
    assert parse_setting(short) == spec
    assert CompressionSpec.pop_from(dict(model_args(spec))) == spec
    text = format_model_args(model_args(spec))
    assert CompressionSpec.pop_from(parse_model_args(text)) == spec
    assert (folder_name(spec), label(spec), leaderboard_name("tiny", spec)) == (folder, name, board)
    assert CompressionSpec.from_record({"method": spec.compress, "arguments": asdict(spec)}) == spec


@pytest.mark.parametrize(("spec", "short", "folder", "name", "board"), SETTINGS)
def test_the_report_names_a_run_as_this_module_does(spec, short, folder, name, board):
    from lm_eval_trust.report.runs import ModelRun

    run = ModelRun("key", "tiny", {"compression": {"method": spec.compress, "arguments": asdict(spec)}})
    assert (run.compression_name, run.leaderboard_name, run.pruning) == (name, board, pruning_label(spec))


@pytest.mark.parametrize(
    ("sparsity", "fmt", "name"),
    [
        (0.0, None, "dense"),
        (0.0, "dense", "dense"),
        (0.0, "gptq", "gptq checkpoint"),
        # A compressed-tensors checkpoint loaded by path: labelled by what it holds, never "dense".
        (0.0, "compressed-tensors", "compressed-tensors checkpoint"),
        (0.12, None, "pruned 12% measured"),
    ],
)
def test_uncompressed_runs_are_named_by_what_was_measured(sparsity, fmt, name):
    from lm_eval_trust.report.runs import ModelRun

    measured = {"sparsity": sparsity, "checkpoint_format": fmt}
    run = ModelRun("key", "tiny", {"compression": None, "weights_measured": measured})
    assert label(CompressionSpec(), sparsity, fmt) == run.compression_name == name
    assert run.is_dense == (name == "dense")


def test_calibration_keys_go_into_model_args_only_when_not_default():
    spec = CompressionSpec(compress="wanda", structure="2:4", calib_dataset="self", calib_samples=16)
    args = model_args(spec)
    assert format_model_args(args) == (
        "compress=wanda,sparsity=0.5,structure=2:4,calib_dataset=self,calib_samples=16"
    )
    assert CompressionSpec.pop_from(parse_model_args(format_model_args(args))) == spec


@pytest.mark.parametrize(
    "spec, recorded",
    [
        (
            CompressionSpec(compress="gptq", bits=4, group_size=64),
            {
                "compress": "gptq",
                "bits": 4,
                "group_size": 64,
                "calib_dataset": None,
                "calib_samples": 128,
                "calib_seqlen": 512,
                "calib_seed": 0,
                "calib_template": None,
            },
        ),
        (
            CompressionSpec(compress="magnitude", structure="2:4"),
            {"compress": "magnitude", "sparsity": 0.5, "structure": "2:4"},
        ),
        (CompressionSpec(), {"compress": "none"}),
    ],
)
def test_only_the_arguments_a_method_uses_are_recorded(spec, recorded):
    assert spec.arguments() == recorded
    assert set(model_args(spec)) <= set(recorded)


def test_model_args_hold_nothing_the_method_ignores():
    assert model_args(CompressionSpec(compress="awq", bits=3)) == {
        "compress": "awq",
        "bits": 3,
        "group_size": 128,
    }
    assert model_args(CompressionSpec(compress="magnitude", sparsity=0.3)) == {
        "compress": "magnitude",
        "sparsity": 0.3,
        "structure": "unstructured",
    }


def test_a_record_reads_back_without_fields_the_method_ignores():
    """The measured sparsity of a quantized run is not a pruning argument; old records held every field."""
    spec = CompressionSpec(compress="gptq", bits=4)
    assert (
        CompressionSpec.from_record({"method": "gptq", "arguments": spec.arguments(), "sparsity": 0.02})
        == spec
    )
    old = {**asdict(spec), "sparsity": 0.5, "structure": "unstructured"}
    assert CompressionSpec.from_record({"method": "gptq", "arguments": old}) == spec
    pruned = CompressionSpec(compress="magnitude", sparsity=0.3)
    assert CompressionSpec.from_record({"method": "magnitude", "arguments": {}, "sparsity": 0.3}) == pruned


def test_shared_args_are_cut_to_what_each_method_uses():
    shared = {"calib_dataset": "self", "calib_samples": 16, "trust_remote_code": True}
    assert args_for("gptq", shared) == shared
    assert args_for("wanda", shared) == shared
    assert args_for("magnitude", shared) == {"trust_remote_code": True}
    assert args_for("none", shared) == {"trust_remote_code": True}
    with pytest.raises(CompressionError, match="compress='zip' is not a method"):
        args_for("zip", shared)


@pytest.mark.parametrize("method", sorted(METHOD_KEYS))
def test_a_setting_with_its_shared_args_is_valid(method):
    """What the sweep builds for a setting: its own keys plus `args_for` of the shared ones."""
    shared = {"calib_dataset": "self", "calib_samples": 16, "calib_seed": 3}
    spec = CompressionSpec.from_record({"method": method, "arguments": {"bits": 4}})
    args = {**args_for(method, shared), **model_args(spec)}
    assert CompressionSpec.pop_from(args).calib_samples == (
        16 if "calib_samples" in METHOD_KEYS[method] else 128
    )


@pytest.mark.parametrize(
    "args", [{"a": "none"}, {"a": "123"}, {"a": True}, {"a": 0.25}, {"a": None}, {"a": "x y"}]
)
def test_model_args_strings_read_back_as_written(args):
    assert parse_model_args(format_model_args(args)) == args


def test_model_args_errors_name_the_flag():
    with pytest.raises(CompressionError, match="--compress_args: 'calib' is not key=value"):
        parse_model_args("calib_samples=8,calib", "--compress_args")
    with pytest.raises(CompressionError, match="comma"):
        format_model_args({"calib_dataset": "a,b"})


def test_reading_a_setting_imports_no_model_library():
    code = (
        "import sys; import lm_eval_trust.sweep, lm_eval_trust.compression; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'model library imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
