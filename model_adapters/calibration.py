"""Calibration text for GPTQ, AWQ, SparseGPT and Wanda: a hub dataset, a local file, or text the
dense model writes itself (`calib_dataset=self`, for machines without network), tokenized and
sampled with the spec's seed; its hash goes into the cache key."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import torch

from lm_eval_trust.compression import CALIB_SUFFIXES, CompressionError, CompressionSpec
from lm_eval_trust.data import read_jsonl


def _json_records(path: Path) -> list:
    if path.suffix == ".jsonl":
        fix = 'give one JSON object a line, with "text" or "instruction"/"output"'
        return read_jsonl(path, error=CompressionError, fix=fix)
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CompressionError(f"calib_dataset={path} is not valid JSON ({err})") from err
    if not isinstance(records, list):
        raise CompressionError(f"calib_dataset={path} must hold a JSON list of texts or records")
    return records


def _text(record) -> str | dict | None:
    """A record's calibration text: a string, an instruction record as a user/assistant exchange
    (for the chat template), or a record's "text"."""
    if isinstance(record, dict) and "instruction" in record:
        prompt = "\n".join(x for x in (record["instruction"], record.get("input", "")) if x)
        return {"user": prompt, "assistant": record.get("output", "")}
    text = record.get("text") if isinstance(record, dict) else record
    return text if isinstance(text, str) and text.strip() else None


def calibration_texts(spec: CompressionSpec, model, tokenizer) -> list[str | dict]:
    dataset, _ = spec.calibration()
    path = Path(dataset).expanduser()
    if dataset == "self":
        return self_generated_texts(spec, model, tokenizer)
    if path.suffix == ".txt" and path.is_file():
        texts = [p.strip() for p in path.read_text(encoding="utf-8").split("\n\n") if p.strip()]
    elif path.suffix in CALIB_SUFFIXES:
        if not path.is_file():
            raise CompressionError(f"calib_dataset={dataset}: no such file")
        texts = [t for t in map(_text, _json_records(path)) if t]
    else:
        try:
            import datasets

            split = datasets.load_dataset(dataset, split="train", streaming=True)
            texts = [t for t in map(_text, itertools.islice(split, spec.calib_samples * 4)) if t]
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
    prompts = [starts[i % len(starts)] for i in range(spec.calib_samples)]
    if tokenizer.chat_template:
        chat = [[{"role": "user", "content": p}] for p in prompts]
        prompts = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
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
