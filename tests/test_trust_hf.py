"""`trust-hf` is lm-eval's `hf` model plus the rules of `generation.TrustGeneration`: greedy answers
are stock `hf`'s, samples follow the model's distribution, no prompt is cut, and `--batch_size auto`
on CPU is one sequence a call, never lm-eval's probe."""

import random
import shutil
from collections import Counter

import pytest
import torch
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM
from transformers import LlamaForCausalLM

from lm_eval_trust.model_adapters.generation import PromptTooLongError
from lm_eval_trust.model_adapters.trust_hf import TrustHFLM
from tests.conftest import WORDS

GREEDY = {"until": ["answer"], "max_gen_toks": 10, "do_sample": False}
GREEDY_LONG = {"until": [], "max_gen_toks": 7, "do_sample": False}
SAMPLED = {"until": [], "max_gen_toks": 5, "do_sample": True, "temperature": 1.0}


@pytest.fixture(scope="module")
def sharp_model(tiny_model, tmp_path_factory):
    """The tiny model with weights scaled up, so greedy answers depend on the whole prompt."""
    out = tmp_path_factory.mktemp("sharp")
    shutil.copytree(tiny_model, out, dirs_exist_ok=True)
    model = LlamaForCausalLM.from_pretrained(tiny_model)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" not in name:
                param.mul_(25.0)
    model.save_pretrained(out)
    return str(out)


def workload(seed=0, docs=12):
    """Repeated, mixed-settings requests; half share an 80-word prefix (lm-eval passes repeats as
    the same Instance K times in a row)."""
    rng = random.Random(seed)
    prefix = " ".join(rng.choice(WORDS) for _ in range(80))
    requests = []
    for i in range(docs):
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 20)))
        context = f"{prefix} {words}" if i % 2 else words
        settings = [GREEDY, GREEDY_LONG, SAMPLED][i % 3]
        inst = Instance("generate_until", {}, (context, dict(settings)), 0, ("t", i, 1 if i % 3 == 1 else 3))
        requests += [inst] * inst.repeats
    return requests


def count_rows(lm):
    """Wrap `_model_generate`: count the rows generated."""
    counts = Counter()
    inner = lm._model_generate

    def counted(context, *args, **kwargs):
        counts["rows"] += context.shape[0]
        return inner(context, *args, **kwargs)

    lm._model_generate = counted
    return counts


def test_greedy_equals_stock_hf(sharp_model):
    requests = workload()
    stock = HFLM(pretrained=sharp_model, device="cpu", batch_size=4).generate_until(requests)
    ours_lm = TrustHFLM(pretrained=sharp_model, device="cpu", batch_size=4)
    counts = count_rows(ours_lm)
    ours = ours_lm.generate_until(requests)
    greedy = [i for i, r in enumerate(requests) if not r.args[1]["do_sample"]]
    assert len(set(stock[i] for i in greedy)) > 3  # answers vary with the prompt
    assert [ours[i] for i in greedy] == [stock[i] for i in greedy]
    assert any("answer" in requests[i].args[0] for i in greedy)  # stop sequences were exercised
    assert all(isinstance(r, str) for r in ours) and len(ours) == len(requests)
    # greedy repeats generated once, 12 sampled sequences from 4 prompts: 4 + 4 + 12 rows
    assert counts["rows"] == 4 + 4 + 12


def test_sampling_distribution_matches_model(sharp_model):
    """First sampled token over many seeded samples of one prompt."""
    lm = TrustHFLM(pretrained=sharp_model, device="cpu", batch_size=64)
    context = " ".join(WORDS * 6)
    settings = {"until": [], "max_gen_toks": 1, "do_sample": True, "temperature": 1.0}
    inst = Instance("generate_until", {}, (context, settings), 0, ("t", 0, 400))
    torch.manual_seed(0)
    drawn = Counter(lm.generate_until([inst] * 400))
    ids = torch.tensor([lm.tok_encode(context)])
    with torch.no_grad():
        probs = torch.softmax(lm.model(ids).logits[0, -1], -1)
    expected = Counter()
    for token, p in enumerate(probs.tolist()):
        expected[lm.tok_decode([token])] += p
    chi2 = sum((drawn[w] - 400 * p) ** 2 / (400 * p) for w, p in expected.items() if 400 * p >= 5)
    rare = sum(drawn[w] for w, p in expected.items() if 400 * p < 5)
    assert chi2 < 40 and rare < 20, (chi2, drawn, expected)


def test_auto_batch_size_on_cpu(tiny_model):
    lm = TrustHFLM(pretrained=str(tiny_model), device="cpu", batch_size="auto")
    assert lm._detect_batch_size() == 1  # never lm-eval's probe of max_batch_size x max_length
    assert len(lm.generate_until(workload(docs=3))) == 7


def test_a_prompt_longer_than_the_context_is_refused_naming_the_document(tiny_model):
    lm = TrustHFLM(pretrained=str(tiny_model), device="cpu", batch_size=2, max_length=64)
    counts = count_rows(lm)
    fits = Instance("generate_until", {}, ("yes no", GREEDY), 0, ("t", 0, 1))
    long = Instance("generate_until", {"scenario": "s_long"}, (" ".join(WORDS * 20), SAMPLED), 7, ("t", 7, 1))
    with pytest.raises(PromptTooLongError, match=r"document 7 \(scenario s_long\): the prompt is \d+ tokens"):
        lm.generate_until([fits, long])
    assert not counts, "refused before any generation"


def test_a_checkpoint_compressed_earlier_records_its_compression(tiny_model, tmp_path, monkeypatch):
    """As on trust-vllm: the compression.json the compressor wrote is what the run records."""
    monkeypatch.setenv("TRUST_CACHE_DIR", str(tmp_path / "cache"))
    saved = tmp_path / "pruned"
    made = TrustHFLM(
        pretrained=str(tiny_model), device="cpu", compress="magnitude", structure="2:4", save_dir=str(saved)
    )
    loaded = TrustHFLM(pretrained=str(saved), device="cpu").get_model_info()
    assert loaded["compression"] == made.get_model_info()["compression"]
    assert loaded["compression"]["method"] == "magnitude" and loaded["weights_measured"]["sparsity"] > 0.4
