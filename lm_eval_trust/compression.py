"""One compression setting, and every way it is written: short form, `--model_args`, folder, labels.

`CompressionSpec` is the setting; each written form comes from it, so the sweep's folders, the
commands it runs, the report's labels and the leaderboard's names cannot drift apart:

    parse_setting gptq:4:g64            what `sweep --settings` reads (the short form)
    model_args    compress=gptq,bits=4,group_size=64
                                        what trust-hf reads (`CompressionSpec.pop_from`)
    folder_name   gptq-w4-g64           a sweep setting's output folder
    label         gptq 4-bit g64        what the report calls it
    leaderboard_name  smollm2@gptq_4bit_64g   DecodingTrust's leaderboard `model@setting`

Torch-free, so reading a setting costs no model library import.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

METHODS = ("none", "gptq", "awq", "magnitude", "sparsegpt", "wanda")
QUANTIZERS = ("gptq", "awq")
PRUNERS = ("magnitude", "sparsegpt", "wanda")
STRUCTURES = {"unstructured": None, "2:4": (2, 4), "4:8": (4, 8), "1:2": (1, 2)}
BITS = (2, 3, 4, 8)
# A checkpoint with at least this share of zero weights counts as pruned even without compression metadata.
PRUNED_SPARSITY = 0.05
# Local calibration files, by suffix; any other name is a hub dataset (or `self`).
CALIB_SUFFIXES = (".txt", ".json", ".jsonl")
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
INT_KEYS = ("bits", "group_size", "calib_samples", "calib_seqlen", "calib_seed")
CALIB_KEYS = tuple(k for k in SPEC_KEYS if k.startswith("calib_"))
# What each kind of method reads besides calibration (the sweep's settings decide these).
KIND_KEYS = {"quantize": ("bits", "group_size"), "prune": ("sparsity", "structure")}
# The keys each method reads. Any other key would be ignored yet recorded as if applied, so it is an
# error; magnitude pruning needs no calibration data.
METHOD_KEYS = {
    "none": ("compress",),
    **{m: ("compress", *KIND_KEYS["quantize"], *CALIB_KEYS) for m in QUANTIZERS},
    "magnitude": ("compress", *KIND_KEYS["prune"]),
    **{m: ("compress", *KIND_KEYS["prune"], *CALIB_KEYS) for m in ("sparsegpt", "wanda")},
}

SETTING_HELP = """Settings, in a short form:
  dense                     the base model as it is
  gptq:BITS[:gSIZE]         GPTQ at BITS bits (3, 4, 8; 2 too), group size SIZE (default 128)
  awq:BITS[:gSIZE]          AWQ, likewise
  METHOD:N:M                magnitude, sparsegpt or wanda pruning with N of every M weights kept
                            (2:4, 4:8, 1:2; 50% sparsity)
  METHOD[:unstructured]:S   unstructured pruning to sparsity S (0.5 or 50%)
e.g. dense gptq:4:g64 wanda:2:4 sparsegpt:unstructured:0.5"""


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
        """Take the compression keys out of `--model_args` (the rest goes to lm-eval's HF model).

        A key the method does not read is an error even at its default value: it was asked for.
        """
        values = {k: _typed(k, kwargs.pop(k)) for k in SPEC_KEYS if k in kwargs}
        compress = values.get("compress", "none")
        if compress in METHODS:
            unused = [k for k in values if k not in METHOD_KEYS[compress]]
            if unused:
                raise CompressionError(_unused_message(compress, unused[0], values[unused[0]]))
        spec = cls(**values)
        spec.validate()
        return spec

    @classmethod
    def from_record(cls, compression: dict | None) -> CompressionSpec:
        """The spec a results file's `config.compression` record was made with (checked when written).

        Records written before they held only the method's arguments hold every field; those the
        method does not read are dropped here.
        """
        compression = compression or {}
        method = compression.get("method") or "none"
        arguments = compression.get("arguments") or {}
        keys = METHOD_KEYS.get(method, ())
        values = {k: arguments[k] for k in keys if k in arguments and k != "compress"}
        if "sparsity" in keys and "sparsity" not in values and compression.get("sparsity") is not None:
            values["sparsity"] = compression["sparsity"]
        return cls(**{**values, "compress": method})

    @property
    def kind(self) -> str | None:
        return "quantize" if self.compress in QUANTIZERS else "prune" if self.compress in PRUNERS else None

    @property
    def uses_calibration(self) -> bool:
        return "calib_dataset" in METHOD_KEYS.get(self.compress, ())

    def arguments(self) -> dict:
        """The fields the method reads, and only those: what a compression record holds."""
        return {k: getattr(self, k) for k in METHOD_KEYS[self.compress]}

    def validate(self) -> None:
        """Every field checked before any model work: type, range, and that the method reads it."""
        if self.compress not in METHODS:
            raise CompressionError(
                f"compress={self.compress!r} is not a method; choose from {', '.join(METHODS)}"
            )
        defaults, used = CompressionSpec(), METHOD_KEYS[self.compress]
        for key in SPEC_KEYS:
            if key not in used and getattr(self, key) != getattr(defaults, key):
                raise CompressionError(_unused_message(self.compress, key, getattr(self, key)))
        for key in used:
            _check_field(self, key, getattr(self, key))

    def calibration(self) -> tuple[str, str | None]:
        """The calibration dataset and template this spec uses (text the model writes has no template)."""
        dataset, template = DEFAULT_CALIBRATION[self.kind]
        dataset = self.calib_dataset or dataset
        return dataset, None if dataset == "self" else self.calib_template or template


def _unused_message(method: str, key: str, value) -> str:
    users = [m for m in METHODS if key in METHOD_KEYS[m]]
    return (
        f"compress={method} does not use {key}={value}: {key} is used only by {', '.join(users)}; "
        f"drop {key} or choose such a method"
    )


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_field(spec: CompressionSpec, key: str, value) -> None:
    """One field the method reads: its type and range, the message naming the value and the fix."""
    if key in INT_KEYS and not _is_int(value) and not (key == "bits" and value is None):
        raise CompressionError(f"{key}={value!r} must be an integer")
    if key == "bits" and value not in BITS:
        raise CompressionError(
            f"compress={spec.compress} needs bits in {BITS}, got bits={value!r}; e.g. bits=4"
        )
    if key == "group_size" and value <= 0:
        raise CompressionError(
            f"group_size={value} must be a positive integer (the weights that share one scale, e.g. 128; "
            "channel-wise group_size=-1 is not supported)"
        )
    if key in ("calib_samples", "calib_seqlen") and value <= 0:
        example = 128 if key == "calib_samples" else 512
        raise CompressionError(f"{key}={value} must be a positive integer, e.g. {key}={example}")
    if key == "calib_seed" and value < 0:
        raise CompressionError(f"calib_seed={value} must be a non-negative integer, e.g. calib_seed=0")
    if key == "sparsity":
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise CompressionError(f"sparsity={value!r} must be a number")
        if not 0 < value < 1:
            raise CompressionError(f"sparsity={value} must be between 0 and 1 (exclusive), e.g. 0.5")
    if key == "structure":
        if value not in STRUCTURES:
            raise CompressionError(
                f"structure={value!r} is not supported; choose from {', '.join(STRUCTURES)}"
            )
        nm = STRUCTURES[value]
        if nm and not math.isclose(spec.sparsity, 1 - nm[0] / nm[1]):
            raise CompressionError(
                f"structure={value} keeps {nm[0]} of every {nm[1]} weights, i.e. sparsity "
                f"{1 - nm[0] / nm[1]}; drop sparsity={spec.sparsity} or use structure=unstructured"
            )
    if key == "calib_dataset" and value is not None:
        _check_calib_dataset(spec, value)
    if key == "calib_template" and value not in (None, "chat", "raw"):
        raise CompressionError(f"calib_template={value!r} must be chat or raw")


def _check_calib_dataset(spec: CompressionSpec, value) -> None:
    if not isinstance(value, str) or not value.strip():
        raise CompressionError(
            f"calib_dataset={value!r} must name a hub dataset, a local .jsonl/.json/.txt file, or self"
        )
    path = Path(value).expanduser()
    if path.suffix in CALIB_SUFFIXES and not path.is_file():
        raise CompressionError(f"calib_dataset={value}: no such file; give the path of an existing file")
    if value == "self" and spec.calib_template is not None:
        raise CompressionError(
            f"calib_template={spec.calib_template} is not used with calib_dataset=self (the model's own "
            "text is plain text); drop calib_template"
        )


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
    except (TypeError, ValueError, OverflowError):
        kind = "an integer" if key in INT_KEYS else "a number"
        raise CompressionError(f"{key}={value!r} must be {kind}") from None
    return str(value)


# -- the sweep's short form ------------------------------------------------------------------------


def _sparsity(token: str, text: str) -> float:
    try:
        return float(token[:-1]) / 100 if token.endswith("%") else float(token)
    except ValueError:
        raise CompressionError(
            f"setting {text!r}: {token!r} is neither a structure (N:M, unstructured) nor a sparsity (0.5, 50%)"
        ) from None


def parse_setting(text: str) -> CompressionSpec:
    """`gptq:4:g64` -> CompressionSpec(compress='gptq', bits=4, group_size=64); see SETTING_HELP."""
    method, *rest = text.strip().lower().split(":")
    if method in ("dense", "none"):
        if rest:
            raise CompressionError(f"setting {text!r}: dense takes no arguments")
        return CompressionSpec()
    if method in QUANTIZERS:
        if not rest or not rest[0].isdigit():
            raise CompressionError(
                f"setting {text!r}: write {method}:BITS[:gSIZE], e.g. {method}:4 or {method}:4:g64"
            )
        values = {"bits": int(rest[0])}
        if len(rest) > 2:
            raise CompressionError(f"setting {text!r}: give one group size, e.g. {method}:4:g64")
        for token in rest[1:]:
            if not re.fullmatch(r"g\d+", token):
                raise CompressionError(f"setting {text!r}: {token!r} is not a group size (write g64, g128)")
            values["group_size"] = int(token[1:])
    elif method in PRUNERS:
        values = {}
        tokens = list(rest)
        if len(tokens) >= 2 and tokens[0].isdigit() and tokens[1].isdigit():
            values["structure"] = f"{tokens[0]}:{tokens[1]}"
            tokens = tokens[2:]
        elif tokens and tokens[0] in ("unstructured", "u"):
            tokens = tokens[1:]
        if len(tokens) > 1:
            raise CompressionError(
                f"setting {text!r}: give one structure and at most one sparsity, e.g. {method}:2:4 or "
                f"{method}:unstructured:0.5"
            )
        for token in tokens:
            values["sparsity"] = _sparsity(token, text)
        nm = STRUCTURES.get(values.get("structure"))
        if nm and "sparsity" not in values:
            values["sparsity"] = 1 - nm[0] / nm[1]
    else:
        raise CompressionError(
            f"setting {text!r}: unknown method {method!r}; use dense, {', '.join(QUANTIZERS + PRUNERS)}"
        )
    spec = CompressionSpec(compress=method, **values)
    try:
        spec.validate()
    except CompressionError as err:
        raise CompressionError(f"setting {text!r}: {err}") from None
    return spec


# -- the --model_args form -------------------------------------------------------------------------


def model_args(spec: CompressionSpec) -> dict:
    """The `--model_args` keys that make `spec`: the method and its kind's keys, calibration where not
    default, nothing the method does not read."""
    if spec.kind is None:
        return {}
    defaults = CompressionSpec()
    return {k: v for k, v in spec.arguments().items() if k not in CALIB_KEYS or v != getattr(defaults, k)}


def args_for(method: str, args: dict) -> dict:
    """The part of shared `--model_args` (the sweep's `--compress_args`) a setting of `method` takes:
    compression keys the method reads, and every key that is not a compression key (the model's)."""
    if method not in METHOD_KEYS:
        raise CompressionError(f"compress={method!r} is not a method; choose from {', '.join(METHODS)}")
    return {k: v for k, v in args.items() if k not in SPEC_KEYS or k in METHOD_KEYS[method]}


def parse_model_args(text: str | None, flag: str = "--model_args") -> dict:
    """`k=v,k2=v2` as lm-eval reads it (`simple_parse_args_string`); a part without `=` names the flag."""
    from lm_eval.utils import simple_parse_args_string

    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        key, sep, _ = part.partition("=")
        if not sep or not key.strip():
            raise CompressionError(f"{flag}: {part!r} is not key=value; write {flag} key=value,key2=value2")
    return simple_parse_args_string(text)


def format_model_args(args: dict) -> str:
    """`args` as a `k=v,...` string that `parse_model_args` reads back as the same dict."""
    from lm_eval.utils import handle_arg_string

    parts = []
    for key, value in args.items():
        text = str(value)
        if "," in text:
            raise CompressionError(f"{key}={text!r}: a value with a comma cannot be written in --model_args")
        if isinstance(value, str) and handle_arg_string(text) != value:
            text = f'"{value}"'  # quoted, it stays a string (e.g. "none", "123")
        parts.append(f"{key}={text}")
    return ",".join(parts)


# -- names -----------------------------------------------------------------------------------------


def folder_name(spec: CompressionSpec) -> str:
    """A sweep setting's folder: `dense`, `gptq-w4-g64`, `wanda-2of4-s50`, `magnitude-unstructured-s30`."""
    if spec.kind == "quantize":
        return f"{spec.compress}-w{spec.bits}-g{spec.group_size}"
    if spec.kind == "prune":
        shape = spec.structure.replace(":", "of")
        return f"{spec.compress}-{shape}-s{round(spec.sparsity * 100)}"
    return "dense"


def _percent(value) -> str:
    return "?" if value is None else f"{100 * float(value):.0f}%"


def pruning_label(spec: CompressionSpec, measured_sparsity: float = 0.0) -> str | None:
    """`2:4 50%`, `unstructured 50%`; `12% measured` for an uncompressed run whose weights are pruned."""
    if spec.kind == "prune":
        return f"{spec.structure} {_percent(spec.sparsity)}"
    if spec.kind is None and measured_sparsity >= PRUNED_SPARSITY:
        return f"{_percent(measured_sparsity)} measured"
    return None


def label(spec: CompressionSpec, measured_sparsity: float = 0.0, checkpoint_format: str | None = None) -> str:
    """`dense`, `gptq 4-bit g64`, `wanda 2:4 50%`, `pruned 12% measured`, `gptq checkpoint`: the report's name."""
    if spec.kind == "quantize":
        return f"{spec.compress} {spec.bits}-bit g{spec.group_size}"
    pruning = pruning_label(spec, measured_sparsity)
    if spec.kind == "prune":
        return f"{spec.compress} {pruning}"
    if pruning:
        return f"pruned {pruning}"
    return f"{checkpoint_format} checkpoint" if quantized_format(checkpoint_format) else "dense"


def quantized_format(checkpoint_format: str | None) -> bool:
    """A checkpoint saved quantized (GPTQ, AWQ, compressed-tensors, another quantizer's format),
    whatever `compress=` said: a checkpoint loaded by path is labelled by what it holds."""
    return checkpoint_format not in (None, "dense", "in-memory")


def leaderboard_name(model: str, spec: CompressionSpec) -> str:
    """The leaderboard's `model@setting`: `smollm2@gptq_4bit_64g`, `smollm2@wanda_0.5_2to4`."""
    if spec.kind == "quantize":
        return f"{model}@{spec.compress}_{spec.bits}bit_{spec.group_size}g"
    if spec.kind == "prune":
        return f"{model}@{spec.compress}_{spec.sparsity}_{spec.structure.replace(':', 'to')}"
    return model
