"""Checkpoints made elsewhere in the GPTQ format (GPTQModel / auto-gptq layout) load through trust-hf."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
from conftest import build_tiny_chat_model, evaluate_checkpoint

# GPTQModel quantizes the tiny model on CPU in seconds; run apart, so its patches of transformers
# stay out of the test process.
MAKE_GPTQ = """
import sys
from gptqmodel import GPTQModel, QuantizeConfig
model = GPTQModel.load(sys.argv[1], QuantizeConfig(bits=4, group_size=32), device="cpu")
model.quantize([" ".join(["the quick brown fox jumps over the lazy dog"] * 6)] * 16, batch_size=1)
model.save(sys.argv[2])
"""


def test_gptq_format_checkpoint_is_detected_and_loaded(run_cli, tmp_path):
    missing = [m for m in ("gptqmodel", "optimum") if importlib.util.find_spec(m) is None]
    if missing:
        reason = f"the optional `gptq` extra is not installed (no {', '.join(missing)})"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; the README's test command installs it")
        pytest.skip(reason)
    from lm_eval_trust.model_adapters import formats

    # GPTQModel's CPU kernel takes groups of 32 or more, so the layers need at least 32 inputs.
    base = build_tiny_chat_model(tmp_path / "base", seed=0, hidden_size=64)
    path = tmp_path / "tiny-gptq"
    env = {**os.environ, "GPTQMODEL_CPU_WORKERS": "2"}
    made = subprocess.run(
        [sys.executable, "-c", MAKE_GPTQ, str(base), str(path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,  # GPTQModel writes a logs/ folder into the working directory
    )
    assert made.returncode == 0, made.stderr[-3000:]
    assert formats.detect_format(path) == "gptq"
    results = evaluate_checkpoint(run_cli, path, tmp_path / "out")
    measured = results["config"]["weights_measured"]
    # Every decoder linear layer is a packed 4-bit GPTQ kernel, none a dense weight.
    assert measured["checkpoint_format"] == "gptq" and measured["packed_layers"] == 7
