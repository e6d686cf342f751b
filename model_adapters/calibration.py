"""Calibration text for GPTQ, AWQ, SparseGPT and Wanda: a hub dataset, a local file, or text the
dense model writes itself (`calib_dataset=self`, for machines without network), tokenized and
sampled with the spec's seed; its hash goes into the cache key."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from lm_eval_trust.compression import CALIB_SUFFIXES, CompressionError, CompressionSpec


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
    if path.suffix in CALIB_SUFFIXES:
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
