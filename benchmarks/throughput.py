"""Generation throughput on the trust tasks: DecodingTrust's loop, lm-eval `hf`, `trust-hf`, `trust-vllm`
and lm-eval's stock `vllm`.

One run, one fixed prompt subset (the first `--docs` documents of every dimension, as lm-eval
builds them with the chat template), five ways to generate the same answers:

  (a) DecodingTrust's way: one prompt at a time through `model.generate`, n samples through
      `num_return_sequences`;
  (b) stock lm-eval `hf` with `repeats` and `--batch_size auto`;
  (c) `trust-hf`: (b) plus the rules of `model_adapters/generation.py` (a greedy repeat generated
      once, a prompt's samples together, each row seeded);
  (d) `trust-vllm` with `--batch_size auto`, in the vLLM environment (`lm-eval-trust vllm-env`), as a
      second process started after (a)-(c) finish, once for each `--vllm_dtype`; its engine start is
      timed apart;
  (e) lm-eval's stock `vllm` on the same prompts, in a process of its own after each (d), at the
      precision (d) computed in and with (d)'s engine settings: (d) against (e) is the price of
      seeded, checked, never-truncated generation.

Tokens are counted on the answers (re-tokenized), so the three are measured on the same unit.
Work tokens are the distinct prompts' tokens plus the answers' tokens, what (a) computes: on CPU,
greedy runs are prefill-bound, so their rate against the compute-bound ceiling says how much of the
machine each way uses, and the prompt tokens left after perfect prefix sharing bound how much any
way that reads every distinct token can gain over (a). The machine's ceilings are measured in the
same run: a decoding step at batch 1 (memory bound) and a forward pass over a large batch (compute
bound).

    TRUST_DATA_DIR=/path/to/data HF_HUB_OFFLINE=1 python benchmarks/throughput.py --docs 2 --samples 5
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from itertools import pairwise
from os.path import commonprefix

import torch
from lm_eval.tasks import TaskManager, get_task_dict

from lm_eval_trust import TASKS_DIR, vllm_env

VLLM = "(d) trust-vllm"
STOCK_VLLM = "(e) lm-eval vllm"
# The vLLM worker prints its figures on one line after this marker (vLLM logs to the same stream).
MARK = "THROUGHPUT_JSON "

# (d)'s engine arguments (e) is given, beside its dtype and its CPU environment variables.
STOCK_SETTINGS = ("enforce_eager", "enable_chunked_prefill", "block_size")

DIMENSIONS = ["advglue", "ood", "adv_demo", "ethics", "fairness", "toxicity", "stereotype", "privacy"]


def build_requests(
    lm, docs: int | None, samples: int, max_gen_toks: int, scenarios: int, dimensions: list[str] = DIMENSIONS
) -> list:
    """Documents of every dimension as lm-eval's evaluator passes them: each Instance `repeats`
    times. Sampled scenarios take `samples` samples; answers are capped at `max_gen_toks`.

    With `scenarios` > 0, each dimension runs that many of its scenarios (evenly spaced through its
    list) with `docs` documents each, as a full run does: there a scenario's documents share its
    demonstrations. With 0, the first `docs` documents of each dimension (one per scenario)."""
    names = [f"trust_{d}" for d in dimensions]
    metadata = {"n_samples": samples}
    tasks = get_task_dict(
        names, TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata=metadata)
    )
    limit = docs
    if scenarios:
        picked = []
        for task in tasks.values():
            step = max(1, len(task.scenarios) // scenarios)
            picked += task.scenarios[::step][:scenarios]
        metadata["scenarios"] = picked
        manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata=metadata)
        tasks = get_task_dict(names, manager)
        limit = docs * scenarios
    requests = []
    for name in sorted(tasks):
        task = tasks[name]
        task.build_all_requests(
            limit=limit,
            apply_chat_template=True,
            chat_template=lm.apply_chat_template,
            tokenizer_name="bench",
        )
        for inst in task.instances:
            context, gen_kwargs = inst.arguments
            capped = {**gen_kwargs, "max_gen_toks": min(gen_kwargs.get("max_gen_toks", 256), max_gen_toks)}
            inst.arguments = (context, capped)
            requests += [inst] * inst.repeats
    return requests


def decodingtrust_loop(lm, requests: list) -> list[str]:
    """(a): each distinct prompt alone; its samples through `num_return_sequences`."""
    answers = {}
    order = []
    counts: dict[tuple, int] = {}
    for req in requests:
        key = (req.args[0], id(req.args[1]))
        counts[key] = counts.get(key, 0) + 1
        if counts[key] == 1:
            order.append(req)
    for req in order:
        context, gen_kwargs = req.args
        n = counts[(context, id(gen_kwargs))] if gen_kwargs.get("do_sample") else 1
        ids = torch.tensor([lm.tok_encode(context)])
        extra = {"temperature": gen_kwargs.get("temperature", 1.0)} if gen_kwargs.get("do_sample") else {}
        with torch.no_grad():
            out = lm.model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                do_sample=bool(gen_kwargs.get("do_sample")),
                num_return_sequences=n,
                max_new_tokens=gen_kwargs["max_gen_toks"],
                pad_token_id=lm.tokenizer.pad_token_id,
                eos_token_id=lm.eot_token_id,
                **extra,
            )
        answers[(context, id(gen_kwargs))] = [lm.tok_decode(row[ids.shape[1] :]) for row in out.tolist()]
    taken: dict[tuple, int] = {}
    result = []
    for req in requests:
        key = (req.args[0], id(req.args[1]))
        texts = answers[key]
        result.append(texts[taken.get(key, 0) % len(texts)])
        taken[key] = taken.get(key, 0) + 1
    return result


def prompt_tokens(prompts: list[tuple[int, ...]]) -> tuple[int, int]:
    """Tokens of the distinct prompts, and how many remain when every shared prefix is read once
    (the size of their token trie)."""
    prompts = sorted(set(map(tuple, prompts)))
    total = sum(map(len, prompts))
    return total, total - sum(len(commonprefix([a, b])) for a, b in pairwise(prompts))


def measure(name: str, run, requests: list, count_tokens, prompt_total: int) -> dict:
    start = time.perf_counter()
    answers = run(requests)
    return report(name, answers, time.perf_counter() - start, count_tokens, prompt_total)


def report(name: str, answers: list[str], seconds: float, count_tokens, prompt_total: int) -> dict:
    tokens = sum(count_tokens(a) for a in answers)
    work = (prompt_total + tokens) / seconds
    print(
        f"  {name}: {seconds:7.1f} s  {tokens / seconds:7.1f} tok/s  {len(answers) / seconds:6.2f} samples/s"
        f"  {work:7.1f} work tok/s"
    )
    return {
        "seconds": seconds,
        "tok_s": tokens / seconds,
        "samples_s": len(answers) / seconds,
        "work_s": work,
        "answers": answers,
    }


def vllm_worker(args) -> None:
    """(d) or, with `--stock` and (d)'s settings, (e), run in the vLLM environment: the same requests,
    figures as JSON."""
    from lm_eval.models.vllm_causallms import VLLM as StockVLLM

    from lm_eval_trust.model_adapters import embedded
    from lm_eval_trust.model_adapters.trust_vllm import TrustVLLM

    start = time.perf_counter()
    if args.stock:
        settings = json.loads(args.stock)
        os.environ.update(settings.pop("environment"))
        lm = StockVLLM(pretrained=embedded.resolve(args.model), batch_size="auto", **settings)
        figures = {"dtype": settings["dtype"]}
    else:
        lm = TrustVLLM(
            pretrained=args.model,
            batch_size="auto",
            dtype=args.vllm_dtype[0],
            **({} if args.eager else {"enforce_eager": False}),
        )
        engine = {
            k: v for k, v in lm.engine_settings.items() if k in STOCK_SETTINGS and v != "vLLM's default"
        }
        environment = {k: v for k, v in lm.engine_settings.items() if k.startswith("VLLM_")}
        settings = {"dtype": lm.computes_in, **engine, "environment": environment}
        figures = {"dtype": lm.computes_in, "settings": settings}
    figures["engine_start_s"] = time.perf_counter() - start
    requests = build_requests(lm, args.docs, args.samples, args.max_gen_toks, args.scenarios, args.dimensions)
    for label, subset in split(requests).items():
        start = time.perf_counter()
        answers = lm.generate_until(subset, disable_tqdm=True)
        figures[label] = {"seconds": time.perf_counter() - start, "answers": answers}
    print(MARK + json.dumps(figures), flush=True)


def run_vllm_worker(argv: list[str], dtype: str, stock: dict | None = None) -> dict:
    """Start `vllm_worker` in the vLLM environment with this run's arguments and `dtype` (for (e),
    (d)'s `stock` settings); its figures."""
    env = vllm_env.location()
    if vllm_env.problem(env) is not None:
        raise SystemExit(f"(d) needs the vLLM environment at {env}: create it with `lm-eval-trust vllm-env`")
    command = [str(vllm_env.python_in(env)), __file__, *argv, "--vllm_dtype", dtype, "--worker"]
    command += ["--stock", json.dumps(stock)] if stock else []
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    (line,) = [x for x in done.stdout.splitlines() if x.startswith(MARK)]
    return json.loads(line[len(MARK) :])


def split(requests: list) -> dict[str, list]:
    greedy = [r for r in requests if not r.args[1].get("do_sample")]
    sampled = [r for r in requests if r.args[1].get("do_sample")]
    return {label: subset for label, subset in (("greedy", greedy), ("sampled", sampled)) if subset}


def generation_ceiling(model, batch: int, new_tokens: int, pad_token_id: int) -> float:
    """Generated tok/s of one large batch (short prompts, every row forced to `new_tokens`): the most
    answer tokens per second this machine gives, the unit (a)-(c) are counted in."""
    ids = torch.randint(100, 1000, (batch, 16), device=model.device)
    start = time.perf_counter()
    with torch.no_grad():
        model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            pad_token_id=pad_token_id,
        )
    return batch * new_tokens / (time.perf_counter() - start)


def ceilings(model, batch: int, length: int) -> tuple[float, float]:
    """(memory bound) decoding steps at batch 1, tok/s; (compute bound) one batch x length forward, tok/s."""
    with torch.no_grad():
        ids = torch.randint(100, 1000, (1, 32), device=model.device)
        out = model(ids, use_cache=True)
        cache, steps = out.past_key_values, 32
        start = time.perf_counter()
        for i in range(steps):
            model(
                ids[:, -1:],
                past_key_values=cache,
                use_cache=True,
                position_ids=torch.tensor([[32 + i]], device=model.device),
            )
        memory_bound = steps / (time.perf_counter() - start)
        ids = torch.randint(100, 1000, (batch, length), device=model.device)
        start = time.perf_counter()
        model.get_decoder()(ids, use_cache=False)
        compute_bound = batch * length / (time.perf_counter() - start)
    return memory_bound, compute_bound


def full_bound(lm, dimensions: list[str]) -> None:
    """The prefill bound of a full run: every document, each distinct prompt once."""
    everything = {"greedy": [], "sampled": []}
    for dimension in dimensions:
        requests = build_requests(lm, None, 1, 32, 0, [dimension])
        for label in everything:
            prompts = [
                lm.tok_encode(r.args[0])
                for r in requests
                if bool(r.args[1].get("do_sample")) == (label == "sampled")
            ]
            if prompts:
                total, unique = prompt_tokens(prompts)
                print(
                    f"{dimension} {label}: {total} prompt tokens, {unique} unique, bound {total / unique:.2f}x"
                )
                everything[label] += prompts
    for label, prompts in everything.items():
        if prompts:
            total, unique = prompt_tokens(prompts)
            print(f"all {label}: {total} prompt tokens, {unique} unique, bound {total / unique:.2f}x")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--docs", type=int, default=2, help="documents per scenario (per dimension with --scenarios 0)"
    )
    parser.add_argument(
        "--scenarios",
        type=int,
        default=0,
        help="scenarios per dimension, each with --docs documents (default 0)",
    )
    parser.add_argument("--samples", type=int, default=5, help="samples per prompt in sampled scenarios")
    parser.add_argument("--max_gen_toks", type=int, default=32, help="cap on new tokens per answer")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--device", default="cpu", help="where (a)-(c) run (vLLM picks its own)")
    parser.add_argument("--hf_dtype", default="auto", help="dtype of (a)-(c) (auto: float32 on CPU)")
    parser.add_argument("--skip_stock", action="store_true", help="leave out (b)")
    parser.add_argument("--skip_vllm", action="store_true", help="leave out (d)")
    parser.add_argument(
        "--eager", action=argparse.BooleanOptionalAction, default=True, help="(d) without torch.compile"
    )
    parser.add_argument(
        "--vllm_dtype", nargs="+", default=["auto"], help="(d) once for each dtype given (default auto)"
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--stock", help=argparse.SUPPRESS)
    parser.add_argument(
        "--dimensions", nargs="+", default=DIMENSIONS, choices=DIMENSIONS, help="dimensions to draw from"
    )
    parser.add_argument(
        "--full_bound",
        action="store_true",
        help="only print the prefill bound over every document of the dimensions (no generation)",
    )
    args = parser.parse_args(argv)
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    torch.manual_seed(1234)
    if args.worker:
        vllm_worker(args)
        return
    from lm_eval.models.huggingface import HFLM

    from lm_eval_trust.model_adapters import embedded
    from lm_eval_trust.model_adapters.trust_hf import TrustHFLM

    path = embedded.resolve(args.model)
    ours = TrustHFLM(pretrained=args.model, device=args.device, batch_size="auto", dtype=args.hf_dtype)
    if args.full_bound:
        full_bound(ours, args.dimensions)
        return
    requests = build_requests(
        ours, args.docs, args.samples, args.max_gen_toks, args.scenarios, args.dimensions
    )
    subsets = split(requests)
    greedy, sampled = subsets.get("greedy", []), subsets.get("sampled", [])
    longest = max(len(ours.tok_encode(r.args[0])) for r in requests)
    print(
        f"{len(requests)} generations ({len(greedy)} greedy, {len(sampled)} sampled, {args.samples} per prompt), "
        f"longest prompt {longest} tokens, torch threads {torch.get_num_threads()}"
    )

    def count_tokens(text: str) -> int:
        return len(ours.tok_encode(text, add_special_tokens=False))

    ways = {"(a) DecodingTrust loop": lambda reqs: decodingtrust_loop(ours, reqs)}
    if not args.skip_stock:
        # Stock `auto` on CPU probes 5 forward passes of max_batch_size x max_length tokens before
        # generating (see `TrustHFLM._detect_batch_size`); (b) runs at the size that probe settles
        # on when nothing runs out of memory, max_batch_size, and the probe's cost is estimated.
        stock = HFLM(
            pretrained=path, device=args.device, dtype=ours.identity["dtype"], batch_size=ours.max_batch_size
        )
        probe_tokens = 5 * ours.max_batch_size * (longest + args.max_gen_toks)
        ways["(b) lm-eval hf, batch_size auto"] = lambda reqs: stock.generate_until(reqs, disable_tqdm=True)
    ways["(c) trust-hf"] = lambda reqs: ours.generate_until(reqs, disable_tqdm=True)

    figures, bounds, totals = {}, {}, {}
    for label, subset in subsets.items():
        total, unique = prompt_tokens([ours.tok_encode(r.args[0]) for r in subset])
        bounds[label] = total / unique
        print(
            f"{label}: {total} distinct prompt tokens, {unique} after perfect prefix sharing "
            f"(prefill bound {total / unique:.2f}x)"
        )
        totals[label] = total
        figures[label] = {name: measure(name, run, subset, count_tokens, total) for name, run in ways.items()}
    for dtype in [] if args.skip_vllm else args.vllm_dtype:
        worker = run_vllm_worker(list(sys.argv[1:] if argv is None else argv), dtype)
        stock = run_vllm_worker(list(sys.argv[1:] if argv is None else argv), dtype, worker["settings"])
        for way, figures_of in ((VLLM, worker), (STOCK_VLLM, stock)):
            name = way if dtype == "auto" else f"{way} {dtype}"
            print(f"{name} engine start (not timed below): {figures_of['engine_start_s']:.1f} s")
            for label in subsets:
                d = figures_of[label]
                figures[label][name] = report(
                    f"{name} [{label}]", d["answers"], d["seconds"], count_tokens, totals[label]
                ) | {"dtype": figures_of["dtype"]}
    memory_bound, compute_bound = ceilings(ours.model, batch=32, length=256)
    generation_bound = generation_ceiling(ours.model, 64, args.max_gen_toks, ours.tokenizer.pad_token_id)
    print(
        f"ceilings: batch-1 decode {memory_bound:.1f} tok/s (memory bound), 32x256 forward {compute_bound:.1f} "
        f"tok/s (compute bound, prompt tokens), 64-row generation {generation_bound:.1f} generated tok/s"
    )
    if not args.skip_stock:
        print(
            f"stock auto probe, not timed above: {probe_tokens} tokens, about {probe_tokens / compute_bound:.0f} s"
        )
    for label, result in figures.items():
        a, c = result["(a) DecodingTrust loop"], result["(c) trust-hf"]
        # Greedy work is the prompts (answers may differ in length between dtypes); sampled, the answers.
        unit = "work_s" if label == "greedy" else "tok_s"
        line = (
            f"{label} ({'work' if label == 'greedy' else 'answer'} tok/s): (c)/(a) {c[unit] / a[unit]:.2f}x"
        )
        line += f" (prefill bound {bounds[label]:.2f}x)"
        if "(b) lm-eval hf, batch_size auto" in result:
            line += f", (c)/(b) {c[unit] / result['(b) lm-eval hf, batch_size auto'][unit]:.2f}x"
        print(
            f"{line}; work tok/s against the 32x256 forward: (a) {a['work_s'] / compute_bound:.1%}, "
            f"(c) {c['work_s'] / compute_bound:.1%}; answer tok/s against the 64-row generation: "
            f"(c) {c['tok_s'] / generation_bound:.1%}"
        )
        for name, d in result.items():
            if name.startswith(STOCK_VLLM):
                ours_vllm = result[VLLM + name.removeprefix(STOCK_VLLM)]
                same = sum(x == y for x, y in zip(d["answers"], ours_vllm["answers"], strict=True))
                print(
                    f"{label}: (d) / {name} {ours_vllm[unit] / d[unit]:.2f}x at {d['dtype']}; answers equal: "
                    f"{same} of {len(d['answers'])}"
                    + (" (sampled: (e) is unseeded)" if label == "sampled" else " (greedy: should be all)")
                )
            if not name.startswith(VLLM):
                continue
            same = sum(x == y for x, y in zip(d["answers"], c["answers"], strict=True))
            print(
                f"{label}: {name} / (c) {d[unit] / c[unit]:.2f}x, / (a) {d[unit] / a[unit]:.2f}x; "
                f"answers equal to (c)'s: {same} of {len(c['answers'])}"
                + (
                    " (sampled: other random streams)"
                    if label == "sampled"
                    else " (greedy, both float32: should be all)"
                    if d["dtype"] == ours.identity["dtype"] == "float32"
                    else f" (greedy, {d['dtype']} against {ours.identity['dtype']})"
                )
            )


if __name__ == "__main__":
    main()
