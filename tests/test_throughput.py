"""`trust-hf` shares work across samples and prefixes without changing answers, and resumes samples."""

import random
import shutil
from collections import Counter
from types import SimpleNamespace

import pytest
import torch
from lm_eval.api.instance import Instance
from lm_eval.api.model import CachingLM
from lm_eval.models.huggingface import HFLM
from transformers import LlamaForCausalLM

from lm_eval_trust.model_adapters.attention import grouped_sdpa_attention
from lm_eval_trust.model_adapters.batching import Unit, common_prefix, cpu_batch_size, plan_batches
from lm_eval_trust.model_adapters.prefix_cache import PrefixCache
from lm_eval_trust.model_adapters.sample_store import SampleStore
from lm_eval_trust.model_adapters.trust_hf import TrustHFLM
from tests.conftest import WORDS

GREEDY = {"until": ["answer"], "max_gen_toks": 10, "do_sample": False}
GREEDY_LONG = {"until": [], "max_gen_toks": 7, "do_sample": False}
SAMPLED = {"until": [], "max_gen_toks": 5, "do_sample": True, "temperature": 1.0}


def unit(tokens, n=1):
    return Unit(tuple(tokens), tuple(range(n)))


def test_common_prefix():
    assert common_prefix([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert common_prefix([[5], [6]]) == 0
    assert common_prefix([]) == 0


def test_plan_counts_sequences_and_splits_samples():
    batches = plan_batches([unit([1, 2, 3], 5), unit([7, 8], 1)], batch_size=4, min_shared=2)
    assert sorted(b.sequences for b in batches) == [
        2,
        4,
    ]  # 5 samples -> 4 + 1, the 1 packed with the other prompt
    assert all(b.sequences <= 4 for b in batches)
    assert sum(b.sequences for b in batches) == 6
    assert all(b.shared for b in batches if any(len(u.slots) > 1 for u in b.units))


def test_plan_fills_batches_with_part_of_a_prompts_samples():
    units = [unit([i, 5, 5], 25) for i in range(4)]  # 25 samples each, no shared prefix
    batches = plan_batches(units, batch_size=64, min_shared=2)
    assert [b.sequences for b in batches] == [64, 36]
    slots = sorted((u.tokens, s) for b in batches for u in b.units for s in u.slots)
    assert slots == sorted((u.tokens, s) for u in units for s in u.slots)  # every sample once


def test_plan_groups_shared_prefixes():
    demo = list(range(100, 180))
    units = [unit(demo + [i]) for i in range(3)] + [unit([i, 9, 9]) for i in range(3)]
    batches = plan_batches(units, batch_size=3, min_shared=64)
    with_demo = [b for b in batches if b.units[0].tokens[:80] == tuple(demo)]
    assert len(with_demo) == 1 and len(with_demo[0].units) == 3 and with_demo[0].prefix == 80
    plain = [b for b in batches if b not in with_demo]
    assert plain[0].prefix == 0 and not plain[0].shared


def test_prefix_leaves_a_token_to_generate_from():
    (batch,) = plan_batches([unit(range(70)), unit(list(range(70)) + [1])], batch_size=2, min_shared=64)
    assert batch.prefix == 69


def test_cpu_batch_size_from_memory():
    config = SimpleNamespace(
        num_attention_heads=9,
        head_dim=64,
        num_key_value_heads=3,
        num_hidden_layers=30,
        hidden_size=576,
        intermediate_size=1536,
        vocab_size=49152,
    )
    # per token 2*30*3*64 + 4*576 + 3*1536 = 18432 values; 4 bytes each, plus one row of logits
    per_sequence = 4 * (1000 * 18432 + 49152)
    assert cpu_batch_size(config, 1000, 1, 8_000_000_000, 64) == 4_000_000_000 // per_sequence == 54
    assert cpu_batch_size(config, 1000, 1, 8_000_000_000, 16) == 16
    assert cpu_batch_size(config, 8192, 8192, 1_000_000_000, 64) == 1


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


class Killed(Exception):
    pass


def count_sequences(lm, die_at=None):
    """Wraps `_generate_batch` to count finished batches and generated rows; batch `die_at` raises,
    as a kill in the middle of that batch would stop the run."""
    counts = Counter()
    inner = lm._generate_batch

    def counted(batch, *args):
        if counts["calls"] + 1 == die_at:
            raise Killed
        out = inner(batch, *args)
        counts["calls"] += 1
        counts["rows"] += batch.sequences
        return out

    lm._generate_batch = counted
    return counts


def test_greedy_equals_stock_hf(sharp_model):
    requests = workload()
    stock = HFLM(pretrained=sharp_model, device="cpu", batch_size=4).generate_until(requests)
    ours_lm = TrustHFLM(pretrained=sharp_model, device="cpu", batch_size=4)
    counts = count_sequences(ours_lm)
    ours = ours_lm.generate_until(requests)
    greedy = [i for i, r in enumerate(requests) if not r.args[1]["do_sample"]]
    assert len(set(stock[i] for i in greedy)) > 3  # answers vary with the prompt
    assert [ours[i] for i in greedy] == [stock[i] for i in greedy]
    assert any("answer" in requests[i].args[0] for i in greedy)  # stop sequences were exercised
    assert all(isinstance(r, str) for r in ours) and len(ours) == len(requests)
    # greedy repeats generated once, 12 sampled sequences from 4 prompts: 4 + 4 + 12 rows
    assert counts["rows"] == 4 + 4 + 12


def test_sampling_distribution_matches_model(sharp_model):
    """First sampled token over many samples of one prompt whose prefix is shared and cached."""
    lm = TrustHFLM(pretrained=sharp_model, device="cpu", batch_size=64)
    context = " ".join(WORDS * 6)
    settings = {"until": [], "max_gen_toks": 1, "do_sample": True, "temperature": 1.0}
    inst = Instance("generate_until", {}, (context, settings), 0, ("t", 0, 400))
    torch.manual_seed(0)
    drawn = Counter(lm.generate_until([inst] * 400))
    ids = torch.tensor([lm._encode_context(context, {})])
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
    assert 1 <= lm._detect_batch_size() <= lm.max_batch_size
    assert len(lm.generate_until(workload(docs=3))) == 7


def test_sampled_requests_resume_after_a_kill(tiny_model, tmp_path):
    requests = [r for r in workload(seed=1) if r.args[1]["do_sample"]]  # 4 prompts x 3 samples
    db = str(tmp_path / "cache.db")
    first = TrustHFLM(pretrained=str(tiny_model), device="cpu", batch_size=3)
    counts = count_sequences(first, die_at=3)
    with pytest.raises(Killed):
        CachingLM(first, db).generate_until(requests)
    assert counts["rows"] == 6  # two batches of 3 finished before the kill

    second = TrustHFLM(pretrained=str(tiny_model), device="cpu", batch_size=3)
    cache = CachingLM(second, db)  # a new connection: reads what the first run committed
    store = SampleStore(second.cache_hook, second.sampling_seed)
    stored = [store.get(r.args[0], r.args[1], i % 3) for i, r in enumerate(requests)]
    assert sum(s is not None for s in stored) == 6
    rerun = count_sequences(second)
    final = cache.generate_until(requests)
    assert rerun["rows"] == len(requests) - 6
    assert all(s is None or f == s for s, f in zip(stored, final, strict=True))
    assert all(isinstance(f, str) for f in final)


def test_long_unshared_prompts_are_generated_alone():
    shared = list(range(100, 170))
    units = [unit(range(i, i + 30)) for i in (0, 40)] + [unit(shared + [i] * 30) for i in (1, 2)]
    assert len(plan_batches(units, batch_size=8, min_shared=64)) == 2
    batches = plan_batches(units, batch_size=8, min_shared=64, solo_over=20)
    # the two pooled prompts (30 tokens) alone; the two sharing 70 tokens differ in 30 more: alone too
    assert sorted(len(b.units) for b in batches) == [1, 1, 1, 1]
    assert len(plan_batches(units, batch_size=8, min_shared=64, solo_over=40)) == 2


def test_prefix_cache_keeps_the_longest_recent_prefixes():
    memo = PrefixCache(size=2, min_tokens=3)
    layer = [(torch.zeros(1, 1, 5, 2), torch.zeros(1, 1, 5, 2))]
    memo.put((1, 2), layer)  # shorter than min_tokens: not kept
    assert memo.longest((1, 2, 3)) == (0, [])
    memo.put((1, 2, 3, 4, 5), layer)
    memo.put((1, 2, 3, 9), layer)
    assert memo.longest((1, 2, 3, 4, 7))[0] == 4
    assert memo.longest((1, 2, 3, 9, 9))[0] == 4
    assert memo.longest((1, 2, 7))[0] == 0  # two shared tokens: under min_tokens
    memo.longest((1, 2, 3, 4, 5))  # most recently used now
    memo.put((7, 7, 7), layer)  # evicts (1, 2, 3, 9)
    assert set(memo.entries) == {(1, 2, 3, 4, 5), (7, 7, 7)}


def test_shared_prefix_is_read_once_across_batches(sharp_model):
    """Nine prompts sharing an 80-word prefix fill three batches; the prefix is read once, and the
    answers are stock `hf`'s."""
    prefix = " ".join(WORDS * 6)
    requests = [
        Instance(
            "generate_until", {}, (f"{prefix} {WORDS[i]} {WORDS[-i]}", dict(GREEDY_LONG)), 0, ("t", i, 1)
        )
        for i in range(9)
    ]
    stock = HFLM(pretrained=sharp_model, device="cpu", batch_size=3).generate_until(requests)
    lm = TrustHFLM(pretrained=sharp_model, device="cpu", batch_size=3)
    shared = common_prefix([lm._encode_context(r.args[0], {}) for r in requests])
    alone = []  # tokens of each batch-1 pass: the shared prefix's computation
    lm.model.get_decoder().register_forward_pre_hook(
        lambda module, args, kwargs: (
            alone.append(kwargs["input_ids"].shape[1]) if kwargs["input_ids"].shape[0] == 1 else None
        ),
        with_kwargs=True,
    )
    counts = count_sequences(lm)
    assert lm.generate_until(requests) == stock
    assert counts["calls"] == 3 and shared >= 64
    assert alone[0] >= shared and sum(alone[1:]) < 3 * len(alone)  # later batches: a token or two each


def test_grouped_sdpa_equals_transformers_sdpa_with_a_padding_mask(tiny_model):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    torch.manual_seed(0)
    module = SimpleNamespace(num_key_value_groups=3, is_causal=True)
    query, key, value = torch.randn(4, 9, 5, 8), torch.randn(4, 3, 12, 8), torch.randn(4, 3, 12, 8)
    mask = torch.ones(4, 1, 5, 12, dtype=torch.bool).tril(7)
    mask[:2, :, :, :3] = False  # left padding on two rows
    ours, _ = grouped_sdpa_attention(module, query, key, value, mask, scaling=0.3)
    theirs, _ = sdpa_attention_forward(module, query, key, value, mask, scaling=0.3)
    assert torch.equal(ours, theirs)
    lm = TrustHFLM(pretrained=str(tiny_model), device="cpu", batch_size=2)
    assert lm.model.config._attn_implementation == "trust_sdpa"


def test_finished_rows_leave_the_batch(sharp_model):
    """Greedy rows stop at different steps ("answer" is a stop sequence, 10 tokens the limit): the
    decoding batch shrinks as they finish, and the answers are still stock `hf`'s."""
    rng = random.Random(3)
    requests = [
        Instance("generate_until", {}, (" ".join(rng.choices(WORDS, k=12)), dict(GREEDY)), 0, ("t", i, 1))
        for i in range(8)
    ]
    stock = HFLM(pretrained=sharp_model, device="cpu", batch_size=8).generate_until(requests)
    lm = TrustHFLM(pretrained=sharp_model, device="cpu", batch_size=8)
    rows = []
    lm.model.register_forward_pre_hook(
        lambda module, args, kwargs: (
            rows.append(kwargs["input_ids"].shape[0]) if kwargs["input_ids"].shape[1] == 1 else None
        ),
        with_kwargs=True,
    )
    assert lm.generate_until(requests) == stock
    assert len(set(stock)) > 1 and rows[0] == 8
    assert rows == sorted(rows, reverse=True) and rows[-1] < 8


@pytest.mark.parametrize("shared", [True, False])
def test_prefill_in_passes_equals_stock_hf(sharp_model, shared):
    """Twenty prompts of 1 to 30 words beyond an optional shared prefix: two prefill passes (16 + 4
    rows), each padded to its own longest prompt, give stock `hf`'s answers."""
    rng = random.Random(5)
    prefix = " ".join(WORDS * 6) + " " if shared else ""
    requests = [
        Instance(
            "generate_until",
            {},
            (prefix + " ".join(rng.choices(WORDS, k=rng.randint(1, 30))), dict(GREEDY_LONG)),
            0,
            ("t", i, 1),
        )
        for i in range(20)
    ]
    stock = HFLM(pretrained=sharp_model, device="cpu", batch_size=20).generate_until(requests)
    lm = TrustHFLM(pretrained=sharp_model, device="cpu", batch_size=20)
    passes = []
    lm.model.get_decoder().register_forward_pre_hook(
        lambda module, args, kwargs: passes.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True
    )
    assert lm.generate_until(requests) == stock
    assert len(set(stock)) > 3
    prefill = [shape for shape in passes if shape[1] > 1 and shape[0] > 1]
    assert [rows for rows, _ in prefill] == [16, 4] and prefill[0][1] > prefill[1][1]
