"""Secrets: API keys and tokens never reach results, sample logs or log output.

`redact_pii` on logged samples is tested in test_integration.py::test_redact_pii_masks_logged_samples
and test_privacy.py::test_redact_masks_emails_numbers_and_the_names_load_saw.
"""

import io
import json
import subprocess
import sys
import threading
from http.server import ThreadingHTTPServer

import pytest
from conftest import BIN, cli_env, read_results
from test_bad_input_data import load_task
from test_scoring import FakePerspective

from lm_eval_trust.secrets import (
    REDACTED,
    Redactor,
    argv_secrets,
    env_secrets,
    is_secret_name,
    scrub_options,
    secret_values,
)

ENV_KEY = "env-perspective-key-7f3a9c"
MODEL_TOKEN = "hf_model_token_51d2e8b0"
METADATA_KEY = "sk-metadata-key-0c4e1f"


@pytest.mark.parametrize(
    "name, secret",
    [
        ("token", True),
        ("hf_token", True),
        ("api_key", True),
        ("PERSPECTIVE_API_KEY", True),
        ("openai_apikey", True),
        ("password", True),
        ("client_secret", True),
        ("tokenizer", False),
        ("max_gen_toks", False),
        ("pad_token", False),
        ("add_bos_token", False),
        ("TOKENIZERS_PARALLELISM", False),
        ("monkey", False),
    ],
)
def test_secret_names(name, secret):
    assert is_secret_name(name) is secret


def test_scrub_options_replaces_secret_values_only():
    options = {
        "token": MODEL_TOKEN,
        "add_bos_token": True,
        "pad_token": "<|im_end|>",
        "scorer": {"api_key": METADATA_KEY, "qps": 1},
        "pretrained": "/models/x",
    }
    assert scrub_options(options) == {
        "token": REDACTED,
        "add_bos_token": True,
        "pad_token": "<|im_end|>",
        "scorer": {"api_key": REDACTED, "qps": 1},
        "pretrained": "/models/x",
    }
    assert secret_values(options) == {MODEL_TOKEN, METADATA_KEY}


def test_env_secrets_skip_flags_and_short_values():
    environ = {"PERSPECTIVE_API_KEY": ENV_KEY, "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1", "SOME_TOKEN": "true"}
    assert env_secrets(environ) == {ENV_KEY}


def test_redactor_replaces_every_occurrence_in_text_and_values():
    redactor = Redactor({MODEL_TOKEN, "abcd"})
    text = f"token={MODEL_TOKEN}, again {MODEL_TOKEN}"
    assert redactor.text(text) == f"token={REDACTED}, again {REDACTED}"
    value = {"args": [f"x={MODEL_TOKEN}", ("abcd", 3)], MODEL_TOKEN: None}
    assert redactor.value(value) == {"args": [f"x={REDACTED}", (REDACTED, 3)], REDACTED: None}


def test_redacting_stream_passes_other_attributes_through(monkeypatch):
    from lm_eval.loggers import evaluation_tracker

    monkeypatch.setattr(evaluation_tracker, "json", evaluation_tracker.json)
    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stdout", buffer)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    Redactor({MODEL_TOKEN}).install()
    print(f"loading with token={MODEL_TOKEN}")
    assert sys.stdout.getvalue() == buffer.getvalue() == f"loading with token={REDACTED}\n"


def test_argv_secrets_are_read_before_any_parser_and_streams_are_restored(capsys):
    argv = ["--model_args=pretrained=m,token=abcd1234,dtype", "--metadata", '{"api_key": "k-9999"}']
    argv += ["--hf_token=zzzz1234", "--compress_args", "calib_dataset=self,password=no"]
    assert argv_secrets(argv) == {"abcd1234", "k-9999", "zzzz1234"}
    assert argv_secrets(["pretrained=m,pad_token=<pad>", "{not json", "token=true"]) == set()
    real = sys.stdout
    with Redactor({"abcd1234"}).streams():
        print("token abcd1234 here")
    assert sys.stdout is real and capsys.readouterr().out == "token <redacted> here\n"


def test_trust_tasks_record_no_secret_options_with_either_cli(shared_data):
    """What stock `lm_eval` writes under configs.<task>.metadata: --model_args merged with --metadata."""

    metadata = {"token": MODEL_TOKEN, "openai_api_key": METADATA_KEY, "scenarios": ["advglue_dev_sst2"]}
    task = load_task("trust_advglue", metadata)
    recorded = json.dumps(task.dump_config(), default=str)
    assert MODEL_TOKEN not in recorded and METADATA_KEY not in recorded
    assert task.config.metadata["token"] == REDACTED and task.config.metadata["scenarios_run"]


@pytest.fixture
def perspective():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakePerspective)
    server.requests, server.script = [], []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_keys_from_env_model_args_and_metadata_never_reach_outputs(
    shared_data, tiny_model, perspective, tmp_path
):
    out = tmp_path / "out"
    url = f"http://127.0.0.1:{perspective.server_address[1]}/v1alpha1/comments:analyze"
    metadata = {
        "n_samples": 1,
        "toxicity_scorer": "perspective",
        "perspective_url": url,
        "perspective_qps": 100,
        "openai_api_key": METADATA_KEY,
    }
    args = ["--model", "trust-hf", "--device", "cpu", "--batch_size", "4", "--tasks", "trust_toxicity"]
    args += ["--model_args", f"pretrained={tiny_model},token={MODEL_TOKEN}", "--limit", "2"]
    args += ["--metadata", json.dumps(metadata), "--gen_kwargs", "max_gen_toks=4"]
    args += ["--log_samples", "--output_path", str(out)]
    env = {**cli_env(shared_data, tmp_path / "cache"), "PERSPECTIVE_API_KEY": ENV_KEY}
    proc = subprocess.run(
        [str(BIN / "lm-eval-trust"), *args], env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert perspective.requests and all(f"key={ENV_KEY}" in path for _, _, path in perspective.requests)
    results, samples = read_results(out)
    written = [p.read_text() for p in out.rglob("*.json*")]
    assert len(written) == 2 and len(samples) == 2
    for text in [*written, proc.stdout, proc.stderr]:
        for secret in (ENV_KEY, MODEL_TOKEN, METADATA_KEY):
            assert secret not in text
    assert results["config"]["model_args"]["token"] == REDACTED
    assert results["configs"]["trust_toxicity"]["metadata"]["openai_api_key"] == REDACTED
    assert f"'token': '{REDACTED}'" in proc.stdout + proc.stderr
