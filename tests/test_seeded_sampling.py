"""`trust-hf` samples depend on (run seed, prompt, settings, sample index) and the model only: not
on the batch size, the other prompts of the run or an interruption."""

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

from lm_eval_trust.model_adapters import seeded_draw
from lm_eval_trust.model_adapters.response_cache import SampleStore, sample_key, sample_seed
from lm_eval_trust.model_adapters.trust_hf import TrustHFLM

SAMPLED = {"until": [], "max_gen_toks": 6, "do_sample": True, "temperature": 1.0}
SAMPLES = 5  # more than a batch of 4: a prompt's samples are split across calls


def model(path, batch_size, seed=1234):
    """A `trust-hf` model made as lm-eval makes it: torch seeded from --seed just before."""
    torch.manual_seed(seed)
    return TrustHFLM(pretrained=str(path), device="cpu", batch_size=batch_size)


def requests(docs=6, settings=SAMPLED, samples=SAMPLES):
    """Sampled requests, K repeats each in a row as lm-eval passes them; odd documents share a
    long prefix (80 words)."""
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


def record_calls(lm, die_at=None):
    """Wrap `_model_generate`: record each call's rows; call `die_at` raises."""
    calls = []
    inner = lm._model_generate

    def recorded(context, *args, **kwargs):
        if len(calls) + 1 == die_at:
            raise KeyboardInterrupt
        out = inner(context, *args, **kwargs)
        calls.append(context.shape[0])
        return out

    lm._model_generate = recorded
    return calls


@pytest.fixture(scope="module")
def reference(tiny_model):
    """Every request generated at batch size 4."""
    reqs = requests()
    lm = model(tiny_model, 4)
    calls = record_calls(lm)
    return reqs, lm.generate_until(reqs), calls


def test_samples_vary_and_a_prompts_samples_are_drawn_together(reference):
    reqs, texts, calls = reference
    per_prompt = [texts[i : i + SAMPLES] for i in range(0, len(texts), SAMPLES)]
    assert all(len(set(s)) > 1 for s in per_prompt), "samples of one prompt differ"
    assert calls == [4, 1] * (len(reqs) // SAMPLES), "batches of 4 rows, one prompt at a time"


@pytest.mark.parametrize("batch_size", [1, 3, "auto"])
def test_samples_are_the_same_at_any_batch_size(tiny_model, reference, batch_size):
    reqs, texts, _ = reference
    assert model(tiny_model, batch_size).generate_until(reqs) == texts


def test_samples_are_the_same_whatever_else_is_in_the_batch(tiny_model, reference):
    """Each prompt alone, and the requests in reverse order."""
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
    reqs, texts, calls = reference
    db = str(tmp_path / "cache.db")
    first = model(tiny_model, 4)
    done = record_calls(first, die_at=4)
    with pytest.raises(KeyboardInterrupt):
        CachingLM(first, db).generate_until(reqs)
    assert done == calls[:3]  # the first prompt's samples committed, the second's call of 4 lost

    second = model(tiny_model, 4)
    cache = CachingLM(second, db)
    rerun = record_calls(second)
    assert cache.generate_until(reqs) == texts
    assert sum(rerun) == len(reqs) - SAMPLES, "only the missing samples are drawn"


def test_another_seed_changes_the_samples_and_misses_the_store(tiny_model, reference, tmp_path):
    reqs, texts, _ = reference
    db = str(tmp_path / "cache.db")
    assert CachingLM(model(tiny_model, 4), db).generate_until(reqs) == texts

    other = model(tiny_model, 4, seed=99)
    cache = CachingLM(other, db)
    drawn = record_calls(other)
    changed = cache.generate_until(reqs)
    assert sum(drawn) == len(reqs), "no sample of seed 1234 is read for seed 99"
    assert sum(a != b for a, b in zip(changed, texts, strict=True)) > len(reqs) // 2

    same = model(tiny_model, 4)
    cache = CachingLM(same, db)
    calls = record_calls(same)
    assert cache.generate_until(reqs) == texts and not calls  # all read back
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


# The draw applies what transformers' `generate` would sample with


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
    config = lm.model.generation_config
    assert describe(seeded_draw.warpers(config, {"temperature": 0.7, "top_p": 0.9, "min_p": 0.05})) == [
        ("TemperatureLogitsWarper", 0.7),
        ("TopKLogitsWarper", 50),  # transformers' default when neither sets top_k
        ("TopPLogitsWarper", 0.9),
        ("MinPLogitsWarper", 0.05),
    ]
    assert describe(seeded_draw.warpers(config, {"temperature": 1.0, "top_k": 0})) == []
    config.top_k = 3
    assert describe(seeded_draw.warpers(config, {})) == [("TopKLogitsWarper", 3)]
    assert describe(seeded_draw.warpers(config, {"top_k": 7})) == [("TopKLogitsWarper", 7)]


@pytest.mark.parametrize(
    "extra", [{"typical_p": 0.5}, {"num_beams": 2}, {"epsilon_cutoff": 0.01}, {"num_return_sequences": 2}]
)
def test_sampling_settings_the_draw_cannot_apply_are_refused_before_generating(lm, extra):
    calls = record_calls(lm)
    greedy = Instance("generate_until", {}, ("yes no", {"until": [], "do_sample": False}), 0, ("t", 0, 1))
    bad = Instance("generate_until", {}, ("no yes", {**SAMPLED, **extra}), 0, ("t", 1, 1))
    name = next(iter(extra))
    with pytest.raises(ValueError, match=rf"trust-hf draws seeded samples .*{name}="):
        lm.generate_until([greedy, bad])
    assert calls == []


def test_the_drawn_token_is_generates_distribution(lm):
    """`generate` with the draw (greedy over it) takes tokens the draw makes possible only, from the
    same processed scores `generate` samples from; other processors (repetition penalty) still apply."""
    ids = torch.tensor([lm.tok_encode(" ".join(WORDS))])
    settings = {"do_sample": True, "temperature": 0.6, "top_k": 9, "top_p": 0.8, "min_p": 0.02}
    with torch.no_grad():
        out = lm.model.generate(
            ids,
            max_new_tokens=1,
            output_scores=True,
            return_dict_in_generate=True,
            pad_token_id=lm.tokenizer.pad_token_id,
            **settings,
        )
        logits = lm.model(ids).logits[:, -1].float()
    ours = seeded_draw.warpers(lm.model.generation_config, settings)(ids, logits)
    assert torch.isinf(ours).any() and torch.isfinite(ours).sum() >= 2  # the warpers cut something
    torch.testing.assert_close(ours, out.scores[0], rtol=1e-5, atol=1e-5)
    kwargs = seeded_draw.seeded(lm.model.generation_config, {**settings, "repetition_penalty": 1.3}, [5, 6])
    assert kwargs["do_sample"] is False and kwargs["repetition_penalty"] == 1.3
    drawn = lm.model.generate(torch.cat([ids, ids]), max_new_tokens=1, pad_token_id=0, **kwargs)[:, -1]
    assert all(torch.isfinite(ours[0, t]) for t in drawn.tolist())


def test_inverse_cdf_draws_follow_the_distribution_row_by_row():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, -9.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    procs = LogitsProcessorList([TopKLogitsWarper(top_k=3)])
    scores = seeded_draw.SeededDraw(procs, list(range(3000)))(None, logits[:1].expand(3000, -1))
    assert (torch.isfinite(scores).sum(-1) == 1).all()
    counts = Counter(scores.argmax(-1).tolist())
    probs = torch.softmax(torch.tensor([2.0, 1.0, 0.0]), -1).tolist()
    assert set(counts) <= {0, 1, 2}, "tokens outside the top 3 are never drawn"
    assert all(abs(counts[t] / 3000 - p) < 0.03 for t, p in enumerate(probs)), counts
    # A row's draw is the same alone and next to another row.
    together = seeded_draw.SeededDraw(procs, [7, 8])(None, logits).argmax(-1)
    alone = seeded_draw.SeededDraw(procs, [7])(None, logits[:1]).argmax(-1)
    assert together[0] == alone[0]


def test_sampling_at_temperature_zero_is_refused_before_generating(lm):
    greedy = Instance("generate_until", {}, ("yes no", {"until": [], "do_sample": False}), 0, ("t", 0, 1))
    bad = Instance("generate_until", {}, ("no yes", {"until": [], "do_sample": True}), 0, ("t", 1, 1))
    calls = record_calls(lm)
    with pytest.raises(ValueError, match=r"temperature=0, .*--gen_kwargs temperature=1.0"):
        lm.generate_until([greedy, bad])
    assert calls == []
