"""`trust-vllm` on this CPU, through the vLLM environment (`lm-eval-trust vllm-env`).

Each run starts an engine (about 30 s here), so the runs are module fixtures shared by the tests.
Runs start from our environment's CLI, which hands them to the vLLM one, as a user's would.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest

from lm_eval_trust import vllm_env
from tests.conftest import build_tiny_chat_model, cli_env, read_results, run_script

EMBEDDED = "pretrained=smollm2-135m-instruct"
COMMON = ("--apply_chat_template", "--log_samples")
# New tokens cut to 24 (toxicity asks 150): the same requests otherwise, a sixth of the decoding.
SAMPLED = ("--metadata", '{"n_samples": 3}', "--gen_kwargs", "max_gen_toks=24")


@pytest.fixture(scope="module")
def vllm_ready():
    if vllm_env.problem(vllm_env.location()) is not None:
        reason = f"no vLLM environment at {vllm_env.location()}: create it with `lm-eval-trust vllm-env`"
        if os.environ.get("CI"):
            pytest.fail(f"CI runs the vLLM tests: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def run(vllm_ready, shared_data, trust_cache, tmp_path_factory):
    """`lm-eval-trust ... --output_path OUT`: (results, samples) or, with check=False, the process."""

    def go(name: str, *args: str, check: bool = True):
        out = tmp_path_factory.mktemp(name)
        proc = run_script(
            shared_data, trust_cache, "lm-eval-trust", *args, "--output_path", str(out), check=check
        )
        return read_results(out) if check else proc

    return go


@pytest.fixture(scope="module")
def vllm_auto(run):
    """AdvGLUE (greedy) and toxicity (sampled) in one engine, every request in one call to it."""
    return run(
        "vllm_auto",
        *("--model", "trust-vllm", "--model_args", EMBEDDED, "--batch_size", "auto"),
        *("--tasks", "trust_advglue,trust_toxicity", "--limit", "6", *SAMPLED, *COMMON),
    )


def by_doc(samples: list[dict], dimension: str) -> dict:
    """Each document's responses, for one dimension's scenarios (`advglue_...`, `toxicity_...`)."""
    return {
        (s["doc"]["scenario"], s["doc_id"]): s["resps"][0]
        for s in samples
        if s["doc"]["scenario"].startswith(f"{dimension}_")
    }


def test_advglue_answers_equal_trust_hf(vllm_auto, run):
    hf_results, hf_samples = run(
        "hf_advglue",
        *("--model", "trust-hf", "--model_args", EMBEDDED, "--device", "cpu", "--batch_size", "auto"),
        *("--tasks", "trust_advglue", "--limit", "6", *SAMPLED, *COMMON),
    )
    results, samples = vllm_auto
    vllm_answers, hf_answers = by_doc(samples, "advglue"), by_doc(hf_samples, "advglue")
    assert len(vllm_answers) >= 6 and vllm_answers == hf_answers
    assert (
        results["results"]["trust_advglue"]["score,none"]
        == hf_results["results"]["trust_advglue"]["score,none"]
    )
    config = results["config"]
    assert config["model_alias"] == "smollm2-135m-instruct" and config["dtype"] == "float32"
    assert config["computes_in"] == hf_results["config"]["computes_in"] == "float32"
    assert config["weights_sha256"] == hf_results["config"]["weights_sha256"]
    assert config["weights_measured"]["checkpoint_format"] == "dense"
    assert config["weights_measured"]["sparsity"] == pytest.approx(
        hf_results["config"]["weights_measured"]["sparsity"]
    )
    # The model's own context (8192 positions), not lm-eval's 2048 default.
    assert config["engine_settings"]["max_model_len"] == 8192
    assert config["engine"].startswith("vllm 0.32.0")


def test_samples_do_not_depend_on_batch_size(vllm_auto, run):
    _, batch_four = run(
        "vllm_batch4",
        *("--model", "trust-vllm", "--model_args", EMBEDDED, "--batch_size", "4"),
        *("--tasks", "trust_toxicity", "--limit", "6", *SAMPLED, *COMMON),
    )
    auto = by_doc(vllm_auto[1], "toxicity")
    four = by_doc(batch_four, "toxicity")
    assert auto and four == auto
    assert all(len(samples) == 3 for samples in auto.values())
    # Sampled, not greedy: the three samples of a prompt are not all the same text.
    assert any(len(set(samples)) > 1 for samples in auto.values())
    assert vllm_auto[0]["config"]["sampling_seed"] == 1234


def test_bfloat16_samples_do_not_depend_on_batch_size(run):
    """vLLM's CPU linear kernels change with the call's row count in bfloat16; trust-vllm calls them
    on 32-row calls, checked at start (`batch_invariant`), or refuses the engine."""
    # 60 sampled requests: decoding steps of up to 60 rows at auto, at most 4 at --batch_size 4.
    args = ("--tasks", "trust_toxicity", "--limit", "6", "--metadata", '{"n_samples": 10}')
    args += ("--gen_kwargs", "max_gen_toks=24", *COMMON)
    model = ("--model", "trust-vllm", "--model_args", f"{EMBEDDED},dtype=bfloat16")
    try:
        results, auto = run("vllm_bf16_auto", *model, "--batch_size", "auto", *args)
    except AssertionError as refused:  # this CPU's kernels mix rows even in fixed-size calls
        assert "so seeded samples would depend on the batch; give dtype=float32" in str(refused)
        return
    _, four = run("vllm_bf16_batch4", *model, "--batch_size", "4", *args)
    config, settings = results["config"], results["config"]["engine_settings"]
    assert config["dtype"] == "bfloat16" and list(settings["linear_rows_per_call"]) == ["32"]
    assert by_doc(auto, "toxicity") == by_doc(four, "toxicity")
    assert sum(len(set(s)) for s in by_doc(auto, "toxicity").values()) > 6  # sampled, not greedy


def test_bfloat16_logprobs_of_a_prompt_do_not_depend_on_what_shares_its_steps(
    vllm_ready, shared_data, trust_cache
):
    """Finer than samples: a prompt's greedy log-probabilities, read alone and first in engine steps
    of 64-4,096 prompt tokens (32-row calls of every layer), are equal. Unchunked calls of 512 rows
    (which two layers of the embedded model give other results on an AMX CPU) changed the 512-token
    case."""
    script = Path(__file__).with_name("vllm_logprobs.py")
    proc = subprocess.run(
        [str(vllm_env.python_in(vllm_env.location())), str(script), "smollm2-135m-instruct", "bfloat16"],
        env=cli_env(shared_data, trust_cache),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if "so seeded samples would depend on the batch; give dtype=float32" in proc.stderr:
        return  # this CPU's kernels mix rows even in fixed-size calls: the engine is refused
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("LOGPROBS ")]
    found = json.loads(line.removeprefix("LOGPROBS "))
    alone = found.pop("alone")
    assert len(alone) == 8 and {rows: steps == alone for rows, steps in found.items()} == dict.fromkeys(
        found, True
    )


def test_prompt_longer_than_context_names_the_document(run):
    proc = run(
        "vllm_too_long",
        *("--model", "trust-vllm", "--model_args", f"{EMBEDDED},max_model_len=512"),
        *("--tasks", "trust_fairness", "--limit", "2", *COMMON),
        *("--metadata", '{"scenarios": ["fairness_adult_fewshot32_trbr05"]}'),
        check=False,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    message = proc.stderr.splitlines()[-1]
    assert "trust_fairness document" in message and "scenario" in message
    assert "max_model_len=512" in message and "Give max_model_len=" in message
    assert "Running generate_until:" not in proc.stderr  # refused before any generation


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ("tensor_parallel_size=0", "tensor_parallel_size=0: Input should be greater than or equal to 1"),
        ("gpu_memory_utilization=2", "gpu_memory_utilization=2: Input should be less than or equal to 1"),
        ("dtype=foo", "dtype='foo'"),
        ("max_num_seq=4", "--model_args max_num_seq: neither lm-eval's vllm model nor vLLM's engine"),
        ("data_parallel_size=0", "data_parallel_size=0 must be a positive integer"),
        ("max_length=512,max_model_len=512", "gives max_length and max_model_len: they are one setting"),
    ],
)
def test_engine_arguments_are_checked_before_the_engine_starts(run, bad, named):
    """A bad value failed as a pydantic traceback 23 s into the engine's start."""
    proc = run(
        "vllm_bad_args",
        *("--model", "trust-vllm", "--model_args", f"{EMBEDDED},{bad}", "--tasks", "trust_advglue"),
        *("--limit", "1", *COMMON),
        check=False,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert named in proc.stderr.splitlines()[-1] and "Traceback" not in proc.stderr
    assert "Starting to load model" not in proc.stderr  # vLLM never began loading weights


def test_sweep_on_vllm_serves_and_measures_a_compressed_checkpoint(
    vllm_ready, run, shared_data, trust_cache, tmp_path_factory
):
    """The sweep compresses here (our compressor and cache) and evaluates on vLLM, then reports."""
    base = build_tiny_chat_model(tmp_path_factory.mktemp("tiny_vllm"), seed=3, hidden_size=128)
    calib = "calib_dataset=self,calib_samples=4,calib_seqlen=32"
    out = tmp_path_factory.mktemp("vllm_sweep")
    tasks = ("--tasks", "trust_advglue", "--limit", "4", "--apply_chat_template")
    sweep = (
        "sweep",
        *("--model", "trust-vllm", "--model_args", f"pretrained={base}", "--output_path", str(out)),
        *("--settings", "dense", "gptq:4:g64", "--compress_args", calib, *tasks),
    )
    run_script(shared_data, trust_cache, "lm-eval-trust", *sweep)
    results, samples = read_results(out / "gptq-w4-g64")
    config = results["config"]
    assert config["model"] == "trust-vllm"
    assert config["compression"]["method"] == "gptq" and config["compression"]["arguments"]["bits"] == 4
    assert config["compression"]["effective_bits_per_weight"] < 8
    # One decoder layer: q, k, v, o, gate, up and down are stored packed (int4 in int32).
    measured = config["weights_measured"]
    assert measured["checkpoint_format"] == "compressed-tensors" and measured["packed_layers"] == 7
    assert (out / "report" / "report.json").is_file()
    hf_results, hf_samples = run(
        "hf_gptq",
        *(
            "--model",
            "trust-hf",
            "--model_args",
            f"pretrained={base},compress=gptq,bits=4,group_size=64,{calib}",
        ),
        *("--device", "cpu", *tasks, "--log_samples"),
    )
    assert config["compression"]["cache_key"] == hf_results["config"]["compression"]["cache_key"]
    # On CPU, dtype auto is float32 for both settings (one precision, so the report compares them):
    # the GPTQ weights are dequantized once, as trust-hf does at load, so the answers are trust-hf's.
    dense_config = read_results(out / "dense")[0]["config"]
    assert config["computes_in"] == dense_config["computes_in"] == "float32"
    assert config["served_weights"]["weights"] == "dequantized to float32"
    # vLLM puts a space before the first word that the tiny word-level tokenizer's decode does not.
    answers = [
        {k: [t.strip() for t in v] for k, v in by_doc(x, "advglue").items()} for x in (samples, hf_samples)
    ]
    assert answers[0] == answers[1]
    # Run again: every setting is done, nothing is evaluated.
    again = run_script(shared_data, trust_cache, "lm-eval-trust", *sweep)
    assert again.stdout.count("done in an earlier run, skipped") == 2


CUDA_INVARIANCE = """
import json, os, torch
from lm_eval_trust.model_adapters.trust_vllm import cuda_batch_invariance
found = {}
for name, capability, user in (("h100", (9, 0), None), ("a100", (8, 0), None), ("t4", (7, 5), None),
                               ("off", (9, 0), "0")):
    os.environ.pop("VLLM_BATCH_INVARIANT", None)
    if user is not None:
        os.environ["VLLM_BATCH_INVARIANT"] = user
    torch.cuda.get_device_capability = lambda capability=capability: capability
    found[name] = [cuda_batch_invariance(), os.environ.get("VLLM_BATCH_INVARIANT")]
print(json.dumps(found))
"""


def test_on_cuda_batch_invariant_kernels_are_turned_on_where_the_gpu_has_them(vllm_ready):
    """No GPU here: the capability is stubbed, and what trust-vllm sets and records is checked."""
    done = subprocess.run(
        [str(vllm_env.python_in(vllm_env.location())), "-c", CUDA_INVARIANCE],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["h100"] == found["a100"] == [{"batch_invariant": True}, "1"]
    record, variable = found["t4"]
    assert variable is None and record["batch_invariant"] is False
    assert (
        "compute capability 7.5" in record["batch_invariant_why"]
        and "depend on the batch" in record["batch_invariant_why"]
    )
    record, variable = found["off"]
    assert variable == "0" and "VLLM_BATCH_INVARIANT=0 was set" in record["batch_invariant_why"]
