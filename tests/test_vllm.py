"""The trust tasks run unchanged under lm-eval's `vllm` model type (GPU machines with vLLM only)."""

import pytest
import torch


@pytest.fixture
def vllm_gpu():
    pytest.importorskip("vllm", reason="vLLM is not installed: the vllm model type cannot be tested here")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: vLLM needs a GPU")


def test_trust_tasks_under_vllm(vllm_gpu, run_cli, tiny_model, tmp_path):
    from tests.conftest import read_results

    out = tmp_path / "out"
    run_cli(
        "lm-eval-trust",
        "--model",
        "vllm",
        "--model_args",
        f"pretrained={tiny_model},dtype=float16,gpu_memory_utilization=0.3,max_model_len=4096",
        "--tasks",
        "trust_advglue,trust_toxicity",
        "--apply_chat_template",
        "--limit",
        "4",
        "--metadata",
        '{"n_samples": 2}',
        "--output_path",
        str(out),
        "--log_samples",
    )
    results, samples = read_results(out)
    assert {"trust_advglue", "trust_toxicity"} <= set(results["results"])
    toxicity = [s for s in samples if s["doc"]["scenario"].startswith("toxicity")]
    assert toxicity and all(len(s["resps"][0]) == 2 for s in toxicity)
