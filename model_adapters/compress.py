"""On-the-fly compression for `trust-hf`: the paper's methods from one `--model_args` flag.

GPTQ, AWQ, SparseGPT and Wanda run through llm-compressor's `oneshot`; magnitude pruning is done
here, because llm-compressor's magnitude modifier only keeps masks during training and prunes
nothing in oneshot. Compressed checkpoints are saved in the compressed-tensors format into a
content-addressed cache (base weights, every argument, calibration data, library versions), so a
second identical run reuses them, and the compression is measured from the saved weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path

import torch
from filelock import FileLock

from lm_eval_trust.data import cache_root
from lm_eval_trust.model_adapters.embedded import ModelResolutionError, check_checkpoint

log = logging.getLogger(__name__)

METHODS = ("none", "gptq", "awq", "magnitude", "sparsegpt", "wanda")
QUANTIZERS = ("gptq", "awq")
PRUNERS = ("magnitude", "sparsegpt", "wanda")
STRUCTURES = {"unstructured": None, "2:4": (2, 4), "4:8": (4, 8), "1:2": (1, 2)}
BITS = (2, 3, 4, 8)
# Paper defaults: Alpaca-cleaned through the chat template for quantization, C4 for pruning.
DEFAULT_CALIBRATION = {"quantize": ("yahma/alpaca-cleaned", "chat"), "prune": ("allenai/c4", "raw")}
SPEC_KEYS = (
    "compress",
    "bits",
    "group_size",
    "sparsity",
    "structure",
    "calib_dataset",
    "calib_samples",
    "calib_seqlen",
    "calib_seed",
    "calib_template",
)
LIBRARIES = ("torch", "transformers", "llmcompressor", "compressed-tensors", "lm-eval-trust")
INT_KEYS = ("bits", "group_size", "calib_samples", "calib_seqlen", "calib_seed")
# Keys that only mean something for one kind of method; given for the other, they would be ignored.
KIND_KEYS = {"quantize": ("bits", "group_size"), "prune": ("sparsity", "structure")}
KIND_NAMES = {"quantize": "quantization (gptq, awq)", "prune": "pruning (magnitude, sparsegpt, wanda)"}


class CompressionError(ValueError):
    """A compression argument or input is unusable; the message names it and the fix."""


@dataclass(frozen=True)
class CompressionSpec:
    compress: str = "none"
    bits: int | None = None
    group_size: int = 128
    sparsity: float = 0.5
    structure: str = "unstructured"
    calib_dataset: str | None = None
    calib_samples: int = 128
    calib_seqlen: int = 512
    calib_seed: int = 0
    calib_template: str | None = None

    @classmethod
    def pop_from(cls, kwargs: dict) -> CompressionSpec:
        """Take the compression keys out of `--model_args` (the rest goes to lm-eval's HF model)."""
        values = {k: _typed(k, kwargs.pop(k)) for k in SPEC_KEYS if k in kwargs}
        spec = cls(**values)
        spec.validate()
        kind = spec.kind
        for other, keys in KIND_KEYS.items():
            misplaced = [k for k in keys if k in values and other != kind]
            if misplaced:
                given = ",".join(f"{k}={values[k]}" for k in misplaced)
                raise CompressionError(
                    f"{given} applies to {KIND_NAMES[other]}, not to compress={spec.compress}; drop it or "
                    "choose such a method"
                )
        return spec

    @property
    def kind(self) -> str | None:
        return "quantize" if self.compress in QUANTIZERS else "prune" if self.compress in PRUNERS else None

    def validate(self) -> None:
        if self.compress not in METHODS:
            raise CompressionError(
                f"compress={self.compress!r} is not a method; choose from {', '.join(METHODS)}"
            )
        if self.kind == "quantize" and self.bits not in BITS:
            raise CompressionError(f"compress={self.compress} needs bits in {BITS}, got bits={self.bits!r}")
        if self.kind == "prune":
            if self.structure not in STRUCTURES:
                raise CompressionError(
                    f"structure={self.structure!r} is not supported; choose from {', '.join(STRUCTURES)}"
                )
            nm = STRUCTURES[self.structure]
            if nm and not math.isclose(self.sparsity, 1 - nm[0] / nm[1]):
                raise CompressionError(
                    f"structure={self.structure} keeps {nm[0]} of every {nm[1]} weights, i.e. sparsity "
                    f"{1 - nm[0] / nm[1]}; drop sparsity={self.sparsity} or use structure=unstructured"
                )
            if not 0 < self.sparsity < 1:
                raise CompressionError(f"sparsity={self.sparsity} must be between 0 and 1")
        if self.calib_template not in (None, "chat", "raw"):
            raise CompressionError(f"calib_template={self.calib_template!r} must be chat or raw")

    def calibration(self) -> tuple[str, str]:
        dataset, template = DEFAULT_CALIBRATION[self.kind]
        return self.calib_dataset or dataset, self.calib_template or template


def _typed(key: str, value):
    """`--model_args` values as the spec's types; a wrong type is an error naming the key."""
    if value is None:
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        if key in INT_KEYS:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if key == "sparsity":
            return float(value)
    except (TypeError, ValueError):
        kind = "an integer" if key in INT_KEYS else "a number"
        raise CompressionError(f"{key}={value!r} must be {kind}") from None
    return str(value)


def target_linears(model) -> dict[str, torch.nn.Linear]:
    """The decoder's linear layers; the output head and embeddings stay dense, as in the paper."""
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and not name.endswith("lm_head")
    }


def check_group_size(model, group_size: int) -> None:
    sizes = {m.in_features for m in target_linears(model).values()}
    if all(s % group_size == 0 for s in sizes):
        return
    common = math.gcd(*sizes)
    working = [d for d in range(8, common + 1) if common % d == 0]
    raise CompressionError(
        f"group_size={group_size} does not divide the input sizes of this model's layers {sorted(sizes)}; "
        f"sizes that work: {working}"
    )


def magnitude_masks(weight: torch.Tensor, sparsity: float, structure: str) -> torch.Tensor:
    """Keep-masks by |w|: exactly round(sparsity x numel) zeros, or N kept in every M inputs."""
    nm = STRUCTURES[structure]
    magnitude = weight.abs()
    if nm is None:
        n_zero = round(sparsity * weight.numel())
        mask = torch.ones(weight.numel(), dtype=torch.bool)
        mask[torch.argsort(magnitude.flatten(), stable=True)[:n_zero]] = False
        return mask.view_as(weight)
    keep, group = nm
    rows, cols = weight.shape
    if cols % group:
        raise CompressionError(f"structure={structure} needs input sizes divisible by {group}, got {cols}")
    grouped = magnitude.reshape(rows, cols // group, group)
    top = torch.topk(grouped, keep, dim=-1).indices
    mask = torch.zeros_like(grouped, dtype=torch.bool).scatter_(-1, top, True)
    return mask.reshape(rows, cols)


def magnitude_prune(model, sparsity: float, structure: str) -> None:
    with torch.no_grad():
        for module in target_linears(model).values():
            module.weight.mul_(magnitude_masks(module.weight, sparsity, structure))


def _json_records(path: Path) -> list:
    raw = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            records = json.loads(raw)
        except json.JSONDecodeError as err:
            raise CompressionError(f"calib_dataset={path} is not valid JSON ({err})") from err
        if not isinstance(records, list):
            raise CompressionError(f"calib_dataset={path} must hold a JSON list of texts or records")
        return records
    records = []
    for lineno, line in enumerate(raw.splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise CompressionError(f"calib_dataset={path}:{lineno} is not valid JSON ({err})") from err
    return records


def _texts_from_file(path: Path) -> list[str | dict]:
    if path.suffix == ".txt":
        return [p.strip() for p in path.read_text(encoding="utf-8").split("\n\n") if p.strip()]
    texts = []
    for record in _json_records(path):
        if isinstance(record, str):
            texts.append(record)
        elif isinstance(record, dict) and isinstance(record.get("text"), str):
            texts.append(record["text"])
        elif isinstance(record, dict) and "instruction" in record:
            texts.append(_alpaca_pair(record))
    return [t for t in texts if not isinstance(t, str) or t.strip()]


def _alpaca_pair(record: dict) -> dict:
    """An instruction record as a user/assistant exchange, for the chat template."""
    prompt = "\n".join(x for x in (record["instruction"], record.get("input", "")) if x)
    return {"user": prompt, "assistant": record.get("output", "")}


def calibration_texts(spec: CompressionSpec, model, tokenizer) -> list[str | dict]:
    dataset, _ = spec.calibration()
    path = Path(dataset).expanduser()
    if dataset == "self":
        return self_generated_texts(spec, model, tokenizer)
    if path.suffix in (".txt", ".json", ".jsonl"):
        if not path.is_file():
            raise CompressionError(f"calib_dataset={dataset}: no such file")
        texts = _texts_from_file(path)
    else:
        try:
            import datasets

            split = datasets.load_dataset(dataset, split="train", streaming=True)
            texts = []
            for row in split:
                texts.append(_alpaca_pair(row) if "instruction" in row else row["text"])
                if len(texts) >= spec.calib_samples * 4:
                    break
        except Exception as err:
            raise CompressionError(
                f"calib_dataset={dataset!r} could not be loaded ({type(err).__name__}); without network use "
                "a local file (calib_dataset=/path/data.jsonl|.json|.txt) or calib_dataset=self (text the "
                "dense model generates)"
            ) from err
    if not texts:
        raise CompressionError(
            f"calib_dataset={dataset}: no usable text in it (a .txt file of paragraphs separated by blank "
            'lines, or .jsonl/.json records with "text" or "instruction"/"output")'
        )
    if len(texts) < spec.calib_samples:
        raise CompressionError(
            f"calib_dataset={dataset} holds {len(texts)} text(s), fewer than calib_samples={spec.calib_samples}; "
            f"give more text or set calib_samples={len(texts)} (the paper used 128)"
        )
    return texts


def self_generated_texts(spec: CompressionSpec, model, tokenizer, batch_size: int = 16) -> list[str]:
    """Text the dense model writes itself, seeded and batched: calibration without any dataset."""
    torch.manual_seed(spec.calib_seed)
    starts = ["Write a short story.", "Explain how plants grow.", "Describe a city.", "Give cooking advice."]
    prompts = []
    for i in range(spec.calib_samples):
        messages = [{"role": "user", "content": starts[i % len(starts)]}]
        if tokenizer.chat_template:
            prompts.append(
                tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            )
        else:
            prompts.append(messages[0]["content"])
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    texts = []
    try:
        for i in range(0, len(prompts), batch_size):
            batch = tokenizer(prompts[i : i + batch_size], return_tensors="pt", padding=True)
            with torch.inference_mode():
                out = model.generate(
                    **batch, do_sample=True, max_new_tokens=spec.calib_seqlen, pad_token_id=pad
                )
            texts += tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side
    return [t for t in texts if t.strip()]


def calibration_dataset(spec: CompressionSpec, model, tokenizer):
    """Tokenized calibration samples (seeded choice), and their hash for the cache key."""
    import random

    from datasets import Dataset

    _, template = spec.calibration()
    texts = calibration_texts(spec, model, tokenizer)
    rng = random.Random(spec.calib_seed)
    chosen = [texts[i] for i in rng.sample(range(len(texts)), min(spec.calib_samples, len(texts)))]
    rows = []
    for text in chosen:
        if isinstance(text, dict) and template == "chat" and tokenizer.chat_template:
            messages = [
                {"role": "user", "content": text["user"]},
                {"role": "assistant", "content": text["assistant"]},
            ]
            text = tokenizer.apply_chat_template(messages, tokenize=False)
        elif isinstance(text, dict):
            text = f"{text['user']}\n{text['assistant']}"
        ids = tokenizer(text, truncation=True, max_length=spec.calib_seqlen)["input_ids"]
        if ids:
            rows.append(ids)
    if len(rows) < 1:
        raise CompressionError("the calibration data produced no tokens; give a longer calib_dataset")
    digest = hashlib.sha256(json.dumps(rows).encode()).hexdigest()
    ds = Dataset.from_dict({"input_ids": rows, "attention_mask": [[1] * len(r) for r in rows]})
    return ds, digest


def recipe(spec: CompressionSpec):
    nm = STRUCTURES.get(spec.structure)
    mask_structure = f"{nm[0]}:{nm[1]}" if nm else "0:0"
    if spec.compress == "wanda":
        from llmcompressor.modifiers.pruning import WandaPruningModifier

        return WandaPruningModifier(
            sparsity=spec.sparsity, mask_structure=mask_structure, targets=["Linear"], ignore=["lm_head"]
        )
    if spec.compress == "sparsegpt":
        from llmcompressor.modifiers.pruning import SparseGPTModifier

        return SparseGPTModifier(
            sparsity=spec.sparsity, mask_structure=mask_structure, targets=["Linear"], ignore=["lm_head"]
        )
    weights = {"num_bits": spec.bits, "type": "int", "strategy": "group", "group_size": spec.group_size}
    if spec.compress == "gptq":
        from llmcompressor.modifiers.quantization import GPTQModifier

        groups = {"group_0": {"targets": ["Linear"], "weights": {**weights, "symmetric": True}}}
        return GPTQModifier(config_groups=groups, ignore=["lm_head"])
    from llmcompressor.modifiers.quantization import QuantizationModifier
    from llmcompressor.modifiers.transform.awq import AWQModifier

    groups = {"group_0": {"targets": ["Linear"], "weights": {**weights, "symmetric": False}}}
    # AWQ smooths inside decoder layers (its mappings), so it has no ignore list of its own.
    return [AWQModifier(), QuantizationModifier(config_groups=groups, ignore=["lm_head"])]


def _apply(spec: CompressionSpec, model, tokenizer, calibration) -> None:
    if spec.compress == "magnitude":
        magnitude_prune(model, spec.sparsity, spec.structure)
        return
    from llmcompressor import oneshot

    if spec.compress == "awq" and not torch.cuda.is_available():
        # llm-compressor's AWQ pins host memory, which needs an accelerator; on CPU it is a no-op.
        from llmcompressor.pipelines import cache as pipeline_cache

        pipeline_cache.IntermediatesCache.pin_memory = lambda self, *a, **k: None
    oneshot(
        model=model,
        dataset=calibration,
        recipe=recipe(spec),
        max_seq_length=spec.calib_seqlen,
        num_calibration_samples=len(calibration),
        tokenizer=tokenizer,
    )


def measure(path: Path, spec: CompressionSpec) -> dict:
    """Sparsity, N:M compliance and bits per weight, read back from the saved checkpoint."""
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    extra = {}
    if "quantization_config" in json.loads((path / "config.json").read_text()):
        from transformers.utils.quantization_config import CompressedTensorsConfig

        extra["quantization_config"] = CompressedTensorsConfig(dequantize=True)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **extra)
    zeros = total = 0
    by_type: dict[str, list[int]] = {}
    nm = STRUCTURES.get(spec.structure) or (2, 4)
    groups_ok = groups = 0
    for name, module in target_linears(model).items():
        w = module.weight.detach()
        z = int((w == 0).sum())
        zeros, total = zeros + z, total + w.numel()
        counts = by_type.setdefault(name.rsplit(".", 1)[-1], [0, 0])
        counts[0] += z
        counts[1] += w.numel()
        if w.shape[1] % nm[1] == 0:
            nonzero = (w != 0).reshape(w.shape[0], -1, nm[1]).sum(-1)
            groups_ok += int((nonzero <= nm[0]).sum())
            groups += nonzero.numel()
    stored_bits = 0
    for file in path.glob("*.safetensors"):
        with safe_open(str(file), "pt") as f:
            for key in f.keys():
                module = key.rsplit(".", 1)[0]
                if module.endswith("lm_head") or "embed" in module or "norm" in key:
                    continue
                tensor = f.get_slice(key)
                stored_bits += math.prod(tensor.get_shape()) * _dtype_bits(tensor.get_dtype())
    return {
        "sparsity": zeros / total if total else 0.0,
        "sparsity_by_layer_type": {k: v[0] / v[1] for k, v in sorted(by_type.items())},
        f"share_of_groups_{nm[0]}_{nm[1]}": groups_ok / groups if groups else None,
        "effective_bits_per_weight": stored_bits / total if total else None,
        "disk_bytes": sum(p.stat().st_size for p in path.glob("*.safetensors")),
    }


def _dtype_bits(dtype: str) -> int:
    return {"F32": 32, "F16": 16, "BF16": 16, "I32": 32, "I64": 64, "I8": 8, "U8": 8, "I16": 16}.get(
        dtype, 32
    )


def _complete(target: Path) -> bool:
    """A cache entry is usable when its marker (written last) is there and its weights are whole."""
    if not (target / "compression.json").is_file():
        return False
    try:
        check_checkpoint(target)
    except ModelResolutionError:
        return False
    return True


def compressed_checkpoint(base: str, weights_sha256: str, spec: CompressionSpec, save_dir: str | None = None):
    """The cached compressed checkpoint for `base` (made now if missing) and its measured metadata."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    if spec.kind == "quantize":
        check_group_size(model, spec.group_size)
    # Text the model writes itself is fixed by the base weights and the seed, both in the key, so
    # it is only generated when the checkpoint must be made.
    calibration, calib_hash = None, None
    if spec.compress != "magnitude" and spec.calibration()[0] != "self":
        calibration, calib_hash = calibration_dataset(spec, model, tokenizer)
    versions = {lib: version(lib) for lib in LIBRARIES}
    key_material = {
        "base": weights_sha256,
        "spec": asdict(spec),
        "calibration": calib_hash,
        "versions": versions,
    }
    key = hashlib.sha256(json.dumps(key_material, sort_keys=True).encode()).hexdigest()[:24]
    target = cache_root() / "compressed" / key
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not _complete(target):
            # Under the lock, leftovers are from runs killed part way.
            for stale in target.parent.glob(f".{key}.*"):
                shutil.rmtree(stale, ignore_errors=True)
            if target.exists():
                log.warning("The cached checkpoint %s is incomplete or damaged; compressing again", target)
            log.info("Compressing %s with %s (cache %s)", base, spec.compress, target)
            tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{key}."))
            try:
                if spec.compress != "magnitude" and calibration is None:
                    calibration, calib_hash = calibration_dataset(spec, model, tokenizer)
                start = time.monotonic()
                _apply(spec, model, tokenizer, calibration)
                seconds = time.monotonic() - start
                if spec.compress == "magnitude":
                    model.save_pretrained(tmp)
                else:
                    model.save_pretrained(tmp, save_compressed=True)
                tokenizer.save_pretrained(tmp)
                dataset, template = spec.calibration()
                metadata = {
                    "method": spec.compress,
                    "arguments": asdict(spec),
                    "calibration": None
                    if calibration is None
                    else {
                        "dataset": dataset,
                        "template": template,
                        "samples": len(calibration),
                        "seqlen": spec.calib_seqlen,
                        "seed": spec.calib_seed,
                        "sha256": calib_hash,
                    },
                    "base_weights_sha256": weights_sha256,
                    "library_versions": versions,
                    "compression_seconds": seconds,
                    "cache_key": key,
                    **measure(tmp, spec),
                }
                (tmp / "compression.json").write_text(json.dumps(metadata, indent=2))
                shutil.rmtree(target, ignore_errors=True)
                os.replace(tmp, target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    if save_dir:
        shutil.copytree(target, save_dir, dirs_exist_ok=True)
    return target, json.loads((target / "compression.json").read_text())
