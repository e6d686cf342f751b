"""`trust-hf` samples depend on (run seed, prompt, settings, sample index) and the model only: not
on the batch size, the batch's other prompts, the shared-prefix path or an interruption."""

import logging
import random
from collections import Counter

import pytest
import torch
from conftest import WORDS
from lm_eval.api.instance import Instance
from lm_eval.api.model import CachingLM
from transformers.generation.logits_process import (
    LogitsProcessorList,
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from lm_eval_trust.model_adapters import generation
from lm_eval_trust.model_adapters.sample_store import SampleStore, sample_key, sample_seed
from lm_eval_trust.model_adapters.trust_hf import TrustHFLM

SAMPLED = {"until": [], "max_gen_toks": 6, "do_sample": True, "temperature": 1.0}
SAMPLES = 5  # more than a batch of 4: a prompt's samples are split across batches


def model(path, batch_size, seed=1234):
    """A `trust-hf` model made as lm-eval makes it: torch seeded from --seed just before."""
    torch.manual_seed(seed)
    return TrustHFLM(pretrained=str(path), device="cpu", batch_size=batch_size)


def requests(docs=6, settings=SAMPLED, samples=SAMPLES):
    """Sampled requests, K repeats each in a row as lm-eval passes them; odd documents share a
    long prefix (80 words), so their batches take the shared-prefix path."""
    rng = random.Random(0)
    prefix = " ".join(rng.choice(WORDS) for _ in range(80))
    out = []
    for i in range(docs):
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 12)))
        inst = Instance(
            "generate_until",
            {},
            (f"{prefix} {words}" if i % 2 else words, dict(settings)),
            0,
            ("t", i, samples),
        )
        out += [inst] * samples
    return out


def record_batches(lm, die_at=None):
    """Wrap `_generate_batch`: record each batch's (prefix, sequences); batch `die_at` raises."""
    batches = []
    inner = lm._generate_batch

    def recorded(batch, *args):
        if len(batches) + 1 == die_at:
            raise KeyboardInterrupt
        out = inner(batch, *args)
        batches.append((batch.prefix, batch.sequences))
        return out

    lm._generate_batch = recorded
    return batches


@pytest.fixture(scope="module")
def reference(tiny_model):
    """Every request generated at batch size 4."""
    reqs = requests()
    lm = model(tiny_model, 4)
    batches = record_batches(lm)
    return reqs, lm.generate_until(reqs), batches


def test_samples_vary_and_shared_prefix_and_split_units_are_exercised(reference):
    reqs, texts, batches = reference
    per_prompt = [texts[i : i + SAMPLES] for i in range(0, len(texts), SAMPLES)]
    assert all(len(set(s)) > 1 for s in per_prompt), "samples of one prompt differ"
    assert any(prefix >= 64 for prefix, _ in batches), "some batch shares the long prefix"
    assert all(n <= 4 for _, n in batches) and sum(n for _, n in batches) == len(reqs)


@pytest.mark.parametrize("batch_size", [1, 3, "auto"])
def test_samples_are_the_same_at_any_batch_size(tiny_model, reference, batch_size):
    reqs, texts, _ = reference
    assert model(tiny_model, batch_size).generate_until(reqs) == texts


def test_samples_are_the_same_whatever_else_is_in_the_batch(tiny_model, reference):
    """Each prompt alone (no shared prefix, no other rows), and the requests in reverse order."""
    reqs, texts, _ = reference
    lm = model(tiny_model, 4)
    alone = [t for i in range(0, len(reqs), SAMPLES) for t in lm.generate_until(reqs[i : i + SAMPLES])]
    assert alone == texts
    reordered = [
        r for i in reversed(range(0, len(reqs), SAMPLES)) for r in reqs[i : i + SAMPLES]
    ]  # whole prompts reversed, so each keeps its sample indices
    again = lm.generate_until(reordered)
    assert [t for i in reversed(range(0, len(again), SAMPLES)) for t in again[i : i + SAMPLES]] == texts


def test_a_killed_run_resumes_to_the_uninterrupted_samples(tiny_model, reference, tmp_path):
    reqs, texts, batches = reference
    committed = sum(n for _, n in batches[:2])
    db = str(tmp_path / "cache.db")
    first = model(tiny_model, 4)
    done = record_batches(first, die_at=3)
    with pytest.raises(KeyboardInterrupt):
        CachingLM(first, db).generate_until(reqs)
    assert done == batches[:2]  # two batches committed before the kill

    second = model(tiny_model, 4)
    cache = CachingLM(second, db)
    rerun = record_batches(second)
    assert cache.generate_until(reqs) == texts
    assert sum(n for _, n in rerun) == len(reqs) - committed, "only the missing samples are drawn"


def test_another_seed_changes_the_samples_and_misses_the_store(tiny_model, reference, tmp_path):
    reqs, texts, _ = reference
    db = str(tmp_path / "cache.db")
    assert CachingLM(model(tiny_model, 4), db).generate_until(reqs) == texts

    other = model(tiny_model, 4, seed=99)
    cache = CachingLM(other, db)
    drawn = record_batches(other)
    changed = cache.generate_until(reqs)
    assert sum(n for _, n in drawn) == len(reqs), "no sample of seed 1234 is read for seed 99"
    assert sum(a != b for a, b in zip(changed, texts, strict=True)) > len(reqs) // 2

    same = model(tiny_model, 4)
    cache = CachingLM(same, db)
    assert not record_batches(same) and cache.generate_until(reqs) == texts  # all read back
    assert SampleStore(same.cache_hook, 99).get(*reqs[0].args, 0) == changed[0]


def test_sample_seed_and_key_depend_on_all_four():
    base = (1234, "prompt", SAMPLED, 0)
    variants = [(99, "prompt", SAMPLED, 0), (1234, "prompt!", SAMPLED, 0), (1234, "prompt", SAMPLED, 1)]
    variants.append((1234, "prompt", {**SAMPLED, "temperature": 0.7}, 0))
    assert sample_seed(*base) == sample_seed(1234, "prompt", dict(reversed(SAMPLED.items())), 0)
    assert len({sample_seed(*v) for v in [base, *variants]}) == 5
    assert len({sample_key(*v) for v in [base, *variants]}) == 5
    assert 0 <= sample_seed(*base) < 2**64 and sample_key(*base) != f"{sample_seed(*base):x}"


def test_sampling_seed_is_read_before_loading_and_recorded(tiny_model):
    lm = model(tiny_model, 1, seed=4321)
    assert lm.sampling_seed == 4321 and lm.get_model_info()["sampling_seed"] == 4321


# Logits processing equals transformers' `generate`


@pytest.fixture
def lm(tiny_model):
    return model(tiny_model, 4)


def describe(processors):
    fields = {
        TemperatureLogitsWarper: "temperature",
        TopKLogitsWarper: "top_k",
        TopPLogitsWarper: "top_p",
        MinPLogitsWarper: "min_p",
    }
    return [(type(p).__name__, getattr(p, fields[type(p)])) for p in processors]


def test_warpers_merge_the_request_with_the_models_generation_config(lm):
    mode, procs = lm._decoding({**SAMPLED, "temperature": 0.7, "top_p": 0.9, "min_p": 0.05})
    assert mode == "sample"
    assert describe(procs) == [
        ("TemperatureLogitsWarper", 0.7),
        ("TopKLogitsWarper", 50),  # transformers' default when neither sets top_k
        ("TopPLogitsWarper", 0.9),
        ("MinPLogitsWarper", 0.05),
    ]
    assert describe(lm._decoding({**SAMPLED, "top_k": 0})[1]) == []  # temperature 1, no top-k
    lm.model.generation_config.top_k = 3
    assert describe(lm._decoding(SAMPLED)[1]) == [("TopKLogitsWarper", 3)]
    assert describe(lm._decoding({**SAMPLED, "top_k": 7})[1]) == [("TopKLogitsWarper", 7)]


def test_settings_the_loop_cannot_apply_go_to_generate(lm):
    greedy = {"until": [], "max_gen_toks": 4, "do_sample": False}
    assert lm._decoding(greedy) == ("argmax", None)
    assert lm._decoding({**greedy, "temperature": 0.0, "top_k": 5}) == ("argmax", None)
    for extra in (
        {"typical_p": 0.5},
        {"repetition_penalty": 1.3},
        {"num_beams": 2},
        {"epsilon_cutoff": 0.01},
    ):
        assert lm._decoding({**SAMPLED, **extra})[0] == "generate", extra
    assert lm._decoding({**greedy, "repetition_penalty": 1.3})[0] == "generate"
    lm.model.generation_config.no_repeat_ngram_size = 2
    assert lm._decoding(SAMPLED)[0] == "generate" and lm._decoding(greedy)[0] == "generate"


def test_processed_scores_equal_generates(lm):
    """The loop's processed scores for a prompt are the scores `generate` samples from."""
    ids = torch.tensor([lm._encode_context(" ".join(WORDS), {})])
    settings = {**SAMPLED, "temperature": 0.6, "top_k": 9, "top_p": 0.8, "min_p": 0.02}
    _, procs = lm._decoding(settings)
    with torch.no_grad():
        logits = lm.model(ids).logits[:, -1].float()
        out = lm.model.generate(
            ids,
            do_sample=True,
            temperature=0.6,
            top_k=9,
            top_p=0.8,
            min_p=0.02,
            max_new_tokens=1,
            output_scores=True,
            return_dict_in_generate=True,
            pad_token_id=lm.tokenizer.pad_token_id,
        )
    ours = procs(None, logits)
    assert torch.isinf(ours).any() and torch.isfinite(ours).sum() >= 2  # the warpers cut something
    torch.testing.assert_close(ours, out.scores[0], rtol=1e-5, atol=1e-5)


def test_inverse_cdf_draws_follow_the_distribution_row_by_row():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, -9.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    procs = LogitsProcessorList([TopKLogitsWarper(top_k=3)])
    seeds = list(range(3000))
    drawn = generation._sampler(procs, seeds)(logits[:1].expand(3000, -1), list(range(3000)))
    counts = Counter(drawn.tolist())
    probs = torch.softmax(torch.tensor([2.0, 1.0, 0.0]), -1).tolist()
    assert set(counts) <= {0, 1, 2}, "tokens outside the top 3 are never drawn"
    assert all(abs(counts[t] / 3000 - p) < 0.03 for t, p in enumerate(probs)), counts
    # A row's draw is the same alone and next to another row.
    together = generation._sampler(procs, [7, 8])(logits, [0, 1])
    alone = generation._sampler(procs, [7])(logits[:1], [0])
    assert together[0] == alone[0]


def test_unsupported_sampling_is_seeded_per_sample_through_generate(tiny_model, caplog):
    settings = {**SAMPLED, "typical_p": 0.9}
    reqs = requests(docs=3, settings=settings, samples=3)
    lm = model(tiny_model, 4)
    calls = []
    inner = lm.model.generate
    lm.model.generate = lambda *a, **k: calls.append(k["input_ids"].shape[0]) or inner(*a, **k)
    with caplog.at_level(logging.WARNING, logger=generation.__name__):
        texts = lm.generate_until(reqs)
    assert calls == [1] * len(reqs), "each sample alone"
    assert "generated alone by transformers' generate" in caplog.text
    assert len(set(texts)) > 3
    assert model(tiny_model, 1).generate_until(reqs[3:6] + reqs[:3]) == texts[3:6] + texts[:3]


def test_sampling_at_temperature_zero_is_refused_before_generating(lm):
    greedy = Instance("generate_until", {}, ("yes no", {"until": [], "do_sample": False}), 0, ("t", 0, 1))
    bad = Instance("generate_until", {}, ("no yes", {"until": [], "do_sample": True}), 0, ("t", 1, 1))
    batches = record_batches(lm)
    with pytest.raises(ValueError, match=r"temperature=0, .*--gen_kwargs temperature=1.0"):
        lm.generate_until([greedy, bad])
    assert batches == []
