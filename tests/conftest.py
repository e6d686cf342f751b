"""Shared fixtures: the data mirror, an isolated cache, tiny random chat models, and a CLI runner."""

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lm_eval_trust import TASKS_DIR

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

WORDS = "positive negative yes no maybe the a is sentence premise hypothesis question answer".split()


class _KeepFunctionTags(yaml.SafeLoader):
    """Reads task YAML without importing what `!function` names."""


_KeepFunctionTags.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))


def task_config(dimension: str) -> dict:
    """A dimension's YAML with its `include:` merged (prompts, templates and options under `metadata`)."""
    path = TASKS_DIR / dimension / f"trust_{dimension}.yaml"
    with open(path) as f:
        config = yaml.load(f, Loader=_KeepFunctionTags)
    base = config.pop("include", None)
    if base is None:
        return config
    with open(path.parent / base) as f:
        return {**yaml.load(f, Loader=_KeepFunctionTags), **config}


def yaml_headline(dimension: str) -> list[str]:
    """The headline metrics a dimension's YAML declares in `metric_list`."""
    return [m["metric"] for m in task_config(dimension)["metric_list"]]


class TreeRoot:
    """A DataRoot stand-in over a tmp tree; `explicit` is what the fetch hint names."""

    def __init__(self, root):
        self.root = root
        self.explicit = root

    def try_get(self, rel):
        path = self.root / rel
        return (path, None) if path.is_file() else (None, f"missing data file {rel}")


def missing_mirror(reason: str) -> None:
    """Without the data mirror a local run skips data-backed tests; CI (CI set) must not."""
    if os.environ.get("CI"):
        pytest.fail(f"CI needs the data mirror: {reason}")
    pytest.skip(reason)


def data_dir() -> Path | None:
    value = os.environ.get("TRUST_DATA_DIR")
    if not value:
        return None
    path = Path(value)
    if not path.is_absolute():
        path = (REPO / path).resolve() if (REPO / path).is_dir() else path.resolve()
    return path if (path / "advglue" / "dev.json").is_file() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = data_dir()
    if path is None:
        missing_mirror("set TRUST_DATA_DIR to the offline data mirror to run data-backed tests")
    return path


def build_tiny_chat_model(out: Path, seed: int, hidden_size: int = 16) -> Path:
    """A 1-layer random Llama with a word-level tokenizer and a ChatML chat template."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "<|im_end|>", "<|im_start|>"]
    vocab = {tok: i for i, tok in enumerate(specials + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        additional_special_tokens=["<|im_start|>"],
    )
    tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=4096,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_chat_model(tmp_path_factory.mktemp("tiny_a"), seed=0)


@pytest.fixture(scope="session")
def other_tiny_model(tmp_path_factory) -> Path:
    return build_tiny_chat_model(tmp_path_factory.mktemp("tiny_b"), seed=1)


@pytest.fixture(scope="session")
def trust_cache(tmp_path_factory) -> Path:
    """One user cache for the whole session, so the embedded model is converted once."""
    return tmp_path_factory.mktemp("trust_cache")


def cli_env(shared_data: Path, trust_cache: Path) -> dict:
    """The environment of a CLI run in tests: the mirror, an isolated cache, no hub."""
    return {
        **os.environ,
        "TRUST_DATA_DIR": str(shared_data),
        "TRUST_CACHE_DIR": str(trust_cache),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


def run_script(shared_data: Path, trust_cache: Path, script: str, *args: str, check: bool = True):
    """Run a console script of the venv with the mirror and an isolated cache; return the process."""
    proc = subprocess.run(
        [str(BIN / script), *args],
        env=cli_env(shared_data, trust_cache),
        capture_output=True,
        text=True,
        timeout=900,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{script} {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


@pytest.fixture
def run_cli(shared_data, trust_cache):
    """`run_script` bound to the session's mirror and cache."""
    return functools.partial(run_script, shared_data, trust_cache)


def read_results(out: Path) -> tuple[dict, list[dict]]:
    """The results JSON and the logged samples of the single run under `out`."""
    (results_path,) = out.rglob("results_*.json")
    samples = [json.loads(line) for p in out.rglob("samples_*.jsonl") for line in p.read_text().splitlines()]
    return json.loads(results_path.read_text()), samples


def evaluate_checkpoint(run_cli, path: Path, out: Path) -> dict:
    """Run trust_advglue (2 docs, CPU) on a checkpoint through trust-hf; the results JSON."""
    run_cli(
        "lm-eval-trust",
        "--model",
        "trust-hf",
        "--model_args",
        f"pretrained={path}",
        "--tasks",
        "trust_advglue",
        "--device",
        "cpu",
        "--limit",
        "2",
        "--output_path",
        str(out),
    )
    results, _ = read_results(out)
    assert 0 <= results["results"]["trust_advglue"]["score,none"] <= 100
    return results
