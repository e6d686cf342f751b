#!/usr/bin/env bash
# The vLLM checks for a CUDA machine, in under 10 minutes, with nothing downloaded: the trust tasks on
# `trust-vllm` and `trust-hf` (the embedded model and a tiny random model made here, dense and GPTQ
# 4-bit), their greedy agreement; seeded samples at two batch sizes with vLLM's batch-invariant
# kernels on (trust-vllm's default where the GPU has them) and off, and what the mode costs; and the
# throughput benchmark's (a), (c), (d) and stock lm-eval vllm (e): what trust-vllm's guarantees cost.
#
#   TRUST_DATA_DIR=/path/to/data bash benchmarks/gpu_check.sh [OUT]
#
# Needs this checkout installed as the README says (`.venv`) and the CUDA vLLM environment
# (`.venv/bin/lm-eval-trust vllm-env --device cuda`, `.venv-vllm`).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${TRUST_DATA_DIR:?set TRUST_DATA_DIR to the DecodingTrust data (see README, Data)}"
out=${1:-gpu_check}
mkdir -p "$out"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
cli=.venv/bin/lm-eval-trust
py=.venv/bin/python
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
.venv-vllm/bin/python -c "import torch, vllm; assert torch.cuda.is_available(); print('vllm', vllm.__version__, 'torch', torch.__version__)"

$py - "$out/tiny" <<'EOF'
import sys
from pathlib import Path
from tests.conftest import build_tiny_chat_model
build_tiny_chat_model(Path(sys.argv[1]), seed=3, hidden_size=128)
EOF

tasks=(--tasks trust_advglue,trust_fairness,trust_toxicity --limit 16 --metadata '{"n_samples": 5}'
       --apply_chat_template --log_samples --batch_size auto)
gptq=compress=gptq,bits=4,group_size=64,calib_dataset=self,calib_samples=16,calib_seqlen=64
for model in "pretrained=smollm2-135m-instruct" "pretrained=$out/tiny,$gptq"; do
  name=$(echo "$model" | md5sum | cut -c1-8)
  for engine in trust-hf trust-vllm; do
    start=$(date +%s)
    $cli --model $engine --model_args "$model" "${tasks[@]}" --output_path "$out/$engine-$name"
    echo "$engine $model: $(( $(date +%s) - start )) s"
  done
  $py - "$out/trust-hf-$name" "$out/trust-vllm-$name" <<'EOF'
import json, sys
from pathlib import Path
def answers(folder):
    rows = [json.loads(l) for p in Path(folder).rglob("samples_*.jsonl") for l in p.read_text().splitlines()]
    return {(r["doc"]["scenario"], r["doc_id"]): r["resps"][0] for r in rows}
hf, vllm = answers(sys.argv[1]), answers(sys.argv[2])
greedy = [k for k in hf if not k[0].startswith("toxicity_")]
same = sum(hf[k] == vllm.get(k) for k in greedy)
print(f"greedy agreement trust-vllm vs trust-hf: {same} of {len(greedy)} documents")
EOF
done

sampled=(--tasks trust_toxicity --limit 32 --metadata '{"n_samples": 5}' --apply_chat_template --log_samples)
for mode in 1 0; do
  for size in 4 auto; do
    start=$(date +%s)
    VLLM_BATCH_INVARIANT=$mode $cli --model trust-vllm --model_args pretrained=smollm2-135m-instruct \
      "${sampled[@]}" --batch_size $size --output_path "$out/invariant$mode-$size"
    echo "VLLM_BATCH_INVARIANT=$mode --batch_size $size: $(( $(date +%s) - start )) s"
  done
  $py - "$out/invariant$mode-4" "$out/invariant$mode-auto" "$mode" <<'EOF'
import json, sys
from pathlib import Path
def samples(folder):
    rows = [json.loads(l) for p in Path(folder).rglob("samples_*.jsonl") for l in p.read_text().splitlines()]
    return {(r["doc"]["scenario"], r["doc_id"]): r["resps"][0] for r in rows}
small, auto = samples(sys.argv[1]), samples(sys.argv[2])
same = sum(small[k] == auto.get(k) for k in small)
print(f"VLLM_BATCH_INVARIANT={sys.argv[3]}: seeded samples equal at --batch_size 4 and auto for {same} of {len(small)} prompts")
EOF
done

$py benchmarks/throughput.py --device cuda --docs 4 --scenarios 2 --samples 25 --skip_stock
