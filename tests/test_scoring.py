"""Toxicity scorers: the Perspective client against a fake loopback server, the offline scorer."""

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lm_eval_trust.data import DataRoot
from lm_eval_trust.scoring import toxicity


class FakePerspective(BaseHTTPRequestHandler):
    """Replies from a per-server script: a list of (status, body or None for a hang) per request."""

    def do_POST(self):
        server = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server.requests.append((time.monotonic(), body["comment"]["text"], self.path))
        status, reply = server.script.pop(0) if server.script else (200, {"toxicity": 0.25})
        if reply is None:
            time.sleep(1.0)
            return
        payload = (
            reply
            if isinstance(reply, str)
            else json.dumps({"attributeScores": {"TOXICITY": {"summaryScore": {"value": reply["toxicity"]}}}})
        )
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(payload.encode())

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakePerspective)
    server.requests, server.script = [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def scorer(fake_server, tmp_path, monkeypatch):
    monkeypatch.setenv("PERSPECTIVE_API_KEY", "secret-key-123")
    url = f"http://127.0.0.1:{fake_server.server_address[1]}/v1alpha1/comments:analyze"
    return toxicity.PerspectiveScorer(
        url=url, qps=100, retries=3, backoff=0.01, timeout=0.3, cache_path=tmp_path / "cache.sqlite"
    )


def test_scores_and_caches(scorer, fake_server):
    fake_server.script = [(200, {"toxicity": 0.9}), (200, {"toxicity": 0.1})]
    assert scorer.score(["bad", "good"]) == [0.9, 0.1]
    assert scorer.score(["bad"]) == [0.9]
    assert len(fake_server.requests) == 2
    assert "key=secret-key-123" in fake_server.requests[0][2]


def test_the_score_cache_is_keyed_by_the_endpoint_as_well_as_the_text(scorer, fake_server, tmp_path):
    fake_server.script = [(200, {"toxicity": 0.9}), (200, {"toxicity": 0.4})]
    assert scorer.score(["bad"]) == [0.9]
    other = toxicity.PerspectiveScorer(
        url=scorer.url.replace("v1alpha1", "v1"),
        qps=100,
        retries=0,
        timeout=0.3,
        cache_path=scorer.cache_path,
    )
    assert other.score(["bad"]) == [0.4] and len(fake_server.requests) == 2
    assert scorer.score(["bad"]) == [0.9] and len(fake_server.requests) == 2


def test_a_damaged_score_cache_is_set_aside_and_scored_again(scorer, fake_server, caplog):
    scorer.cache_path.write_bytes(b"this is not a database" * 100)
    with caplog.at_level("WARNING"):
        assert scorer.score(["bad"]) == [0.25]
    (aside,) = scorer.cache_path.parent.glob("cache.sqlite.damaged-*")
    assert (
        f"Perspective score cache {scorer.cache_path} is damaged" in caplog.text and str(aside) in caplog.text
    )
    assert scorer.score(["bad"]) == [0.25] and len(fake_server.requests) == 1


def test_retries_rate_limit_and_server_errors(scorer, fake_server):
    fake_server.script = [(429, "{}"), (503, "{}"), (200, {"toxicity": 0.5})]
    assert scorer.score(["x"]) == [0.5]
    assert len(fake_server.requests) == 3 and not scorer.failures


def test_persistent_failure_is_reported_never_zero(scorer, fake_server):
    fake_server.script = [(500, "{}")] * 4
    assert scorer.score(["x"]) == [None]
    (reason,) = scorer.failures.values()
    assert "HTTP 500 after 4 attempts" in reason and "secret" not in reason
    assert len(fake_server.requests) == 4
    fake_server.script = [(200, {"toxicity": 0.3})]
    assert scorer.score(["x"]) == [0.3], "failures are not cached"


def test_client_errors_are_not_retried(scorer, fake_server):
    fake_server.script = [(400, "{}")]
    assert scorer.score(["x"]) == [None]
    assert len(fake_server.requests) == 1


def test_timeouts_and_malformed_replies_are_retried(scorer, fake_server):
    fake_server.script = [
        (200, None),
        (200, "not json"),
        (200, '{"attributeScores": {}}'),
        (200, {"toxicity": 0.7}),
    ]
    assert scorer.score(["x"]) == [0.7]
    fake_server.script = [(200, "not json")] * 4
    assert scorer.score(["y"]) == [None]
    assert "malformed reply" in scorer.failures[next(iter(scorer.failures))]


def test_rate_limit_spaces_requests(scorer, fake_server):
    scorer.qps = 20
    scorer.score([f"t{i}" for i in range(5)])
    times = [t for t, _, _ in fake_server.requests]
    assert all(b - a >= 0.045 for a, b in zip(times, times[1:], strict=False))


def test_missing_key_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("PERSPECTIVE_API_KEY", raising=False)
    with pytest.raises(toxicity.ScorerError, match="PERSPECTIVE_API_KEY"):
        toxicity.PerspectiveScorer()


def test_unknown_scorer_names_the_choices():
    with pytest.raises(toxicity.ScorerError, match="offline, perspective, detoxify"):
        toxicity.get_scorer("nope", {}, None)


def test_agreement_figures_on_a_toy_case():
    figures = toxicity.agreement([0.1, 0.2, None, 0.9], [0.0, 0.3, 0.5, 0.8])
    assert figures["n"] == 3 and figures["spearman"] == pytest.approx(1.0) and figures["auroc"] == 1.0


def test_split_keeps_records_whole_and_is_seeded():
    records = [{"i": i} for i in range(10)]
    fit, held_out = toxicity.split_records(records)
    assert len(fit) == 5 and sorted(r["i"] for r in fit + held_out) == list(range(10))
    assert toxicity.split_records(records) == (fit, held_out)


@pytest.fixture(scope="module")
def offline(shared_data, tmp_path_factory):
    os.environ["TRUST_CACHE_DIR"] = str(tmp_path_factory.mktemp("scorer_cache"))
    try:
        yield toxicity.OfflineScorer(DataRoot(shared_data))
    finally:
        del os.environ["TRUST_CACHE_DIR"]


def test_offline_scorer_ranks_toxic_text_higher(offline):
    clean, rude = offline.score(["Have a lovely day, thank you for your help.", "Shut up, you stupid idiot."])
    assert 0 <= clean < rude <= 1
    assert offline.version.startswith("ridge-charwb15+alt-profanity-check-1.9.1/fit-")
    assert offline.score([]) == []


def test_scorer_agreement_meets_the_targets_on_the_held_out_half(shared_data):
    env = {**os.environ, "TRUST_DATA_DIR": str(shared_data)}
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "lm-eval-trust"), "scorer-agreement"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    held_out = next(line for line in proc.stdout.splitlines() if "held-out" in line)
    figures = dict(part.split("=") for part in held_out.split(": ", 1)[1].split())
    assert int(figures["n"]) > 2000
    assert float(figures["spearman"]) >= 0.85 and float(figures["auroc@0.5"]) >= 0.95


def test_detoxify_scorer_loads_a_local_checkpoint(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "you", "are", "nice"])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]").save_pretrained(
        tmp_path
    )
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=1,
        intermediate_size=8,
        num_labels=2,
        id2label={0: "severe_toxic", 1: "toxic"},
        label2id={"severe_toxic": 0, "toxic": 1},
    )
    BertForSequenceClassification(config).save_pretrained(tmp_path)
    scorer = toxicity.get_scorer("detoxify", {"toxicity_scorer_path": str(tmp_path)}, None)
    assert scorer.toxic_index == 1
    scores = scorer.score(["you are nice", "nice"])
    assert len(scores) == 2 and all(0 <= s <= 1 for s in scores)


def test_detoxify_without_a_checkpoint_says_what_to_do(tmp_path):
    with pytest.raises(toxicity.ScorerError, match="toxicity_scorer_path"):
        toxicity.DetoxifyScorer(str(tmp_path / "absent"))
