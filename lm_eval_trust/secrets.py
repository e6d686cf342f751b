"""Keep API keys and tokens out of results, sample logs and log output.

lm-eval writes `--model_args` into the results (`config.model_args`), merges them with `--metadata`
into every task's `configs.<task>.metadata`, and logs and prints both. A secret here is the string
value of an option whose name says so (`token`, `api_key`, `hf_token`, `password`, ...; the special
token names `bos_token`, `pad_token`, ... are not secrets), or of an environment variable named
that way (`PERSPECTIVE_API_KEY`, `HF_TOKEN`, ...).

Two layers, because lm-eval gives no hook for this:
- `scrub_options` (used by `TrustTask`, so it works with the stock `lm_eval` CLI too) drops secret
  values from the metadata a trust task records;
- `Redactor.install` (used by the `lm-eval-trust` CLI) replaces every occurrence of the secret
  values in stdout, stderr, every log handler's stream and the results and sample files.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import types
from collections.abc import Iterable, Iterator, Mapping

REDACTED = "<redacted>"
_SECRET_NAME = re.compile(
    r"(?:^|_)(?:api_?key|key|token|secret|password|passwd|credentials?|auth)(?:$|_)", re.IGNORECASE
)
_SPECIAL_TOKEN_NAME = re.compile(r"(?:^|_)(?:bos|eos|pad|unk|sep|cls|mask)_token$", re.IGNORECASE)
# Shorter values, and flag-like words, would garble unrelated text and are no plausible key.
MIN_SECRET_LENGTH = 4
_NOT_SECRETS = {"true", "false", "none", "null", "auto"}


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name)) and not _SPECIAL_TOKEN_NAME.search(name)


def _is_secret_value(value) -> bool:
    return isinstance(value, str) and len(value) >= MIN_SECRET_LENGTH and value.lower() not in _NOT_SECRETS


def secret_values(options: Mapping | None) -> set[str]:
    """The secret values in an options mapping (nested mappings included)."""
    found: set[str] = set()
    for key, value in (options or {}).items():
        if isinstance(value, Mapping):
            found |= secret_values(value)
        elif is_secret_name(str(key)) and _is_secret_value(value):
            found.add(value)
    return found


def env_secrets(environ: Mapping[str, str] = os.environ) -> set[str]:
    return {v for k, v in environ.items() if is_secret_name(k) and _is_secret_value(v)}


def argv_secrets(argv: Iterable[str]) -> set[str]:
    """The secret values on a command line, read without its parser (which may yet reject it, and
    its error may quote the value): `key=value,...` lists and JSON objects in any argument."""
    found: set[str] = set()
    for arg in argv:
        try:
            parsed = json.loads(arg) if arg.lstrip().startswith("{") else None
        except ValueError:
            parsed = None
        if isinstance(parsed, Mapping):
            found |= secret_values(parsed)
            continue
        for part in arg.split(","):
            key, sep, value = part.partition("=")
            if sep and is_secret_name(key.strip().lstrip("-")) and _is_secret_value(value.strip()):
                found.add(value.strip())
    return found


def scrub_options(options: Mapping) -> dict:
    """A copy of `options` with every secret value replaced by `<redacted>`."""
    return {
        key: scrub_options(value)
        if isinstance(value, Mapping)
        else REDACTED
        if is_secret_name(str(key)) and _is_secret_value(value)
        else value
        for key, value in options.items()
    }


class _RedactingStream:
    """A text stream that redacts what is written and passes everything else to the real one."""

    def __init__(self, stream, redactor: Redactor):
        self._stream, self._redactor = stream, redactor

    def write(self, text: str) -> int:
        self._stream.write(self._redactor.text(text))
        return len(text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


class Redactor:
    """Replaces known secret values with `<redacted>` in text and in JSON-able values."""

    def __init__(self, secrets: Iterable[str] = ()):
        self.secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret containing another is replaced whole.
        self.secrets = sorted(set(self.secrets) | set(secrets), key=len, reverse=True)

    def text(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def value(self, value):
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.value(k): self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.value(v) for v in value)
        return value

    @contextlib.contextmanager
    def streams(self) -> Iterator[Redactor]:
        """Redact what this process prints to stdout and stderr while the block runs."""
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = _RedactingStream(saved[0], self), _RedactingStream(saved[1], self)
        try:
            yield self
        finally:
            sys.stdout, sys.stderr = saved

    def install(self) -> None:
        """Redact this process's stdout, stderr, log handlers and lm-eval's results/sample files.

        Install before logging is set up, so handlers created later write through the wrapper;
        handlers that already hold the real streams are pointed at the wrappers.
        """
        originals = {}
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if isinstance(stream, _RedactingStream):
                stream._redactor = self
                continue
            wrapped = _RedactingStream(stream, self)
            originals[id(stream)] = wrapped
            setattr(sys, name, wrapped)
        loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
        for logger in loggers:
            for handler in getattr(logger, "handlers", []):
                stream = getattr(handler, "stream", None)
                if id(stream) in originals:
                    handler.setStream(originals[id(stream)])
        from lm_eval.loggers import evaluation_tracker

        # The tracker serializes the results and every sample line with its module's json.dumps.
        evaluation_tracker.json = types.SimpleNamespace(
            dumps=lambda obj, **kwargs: json.dumps(self.value(obj), **kwargs),
            loads=json.loads,
            load=json.load,
            dump=json.dump,
        )
