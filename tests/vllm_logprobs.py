"""Run in the vLLM environment by tests/test_vllm.py: one prompt's greedy log-probabilities from a
`trust-vllm` engine, computed alone and again beside another prompt, printed as JSON."""

import json
import sys

from vllm import SamplingParams

from lm_eval_trust.model_adapters.trust_vllm import TrustVLLM

lm = TrustVLLM(pretrained=sys.argv[1], batch_size="auto", dtype=sys.argv[2])
params = SamplingParams(max_tokens=8, temperature=0.0, logprobs=5)
prompt = list(range(1000, 1040))


def logprobs(batch):
    lm.model.reset_prefix_cache()  # `prompt` read again, not taken from the cache
    (out, *_) = lm.model.generate([{"prompt_token_ids": p} for p in batch], params, use_tqdm=False)
    return [{str(k): v.logprob for k, v in step.items()} for step in out.outputs[0].logprobs]


# `prompt` first in a step of `rows` prompt tokens (its rows in the first 32-row calls of each
# layer), then decoding beside one other sequence.
found = {"alone": logprobs([prompt])}
for rows in (64, 128, 256, 512, 1024, 2048, 4096):
    found[str(rows)] = logprobs([prompt, list(range(2000, 2000 + rows - len(prompt)))])
print("LOGPROBS " + json.dumps(found))
