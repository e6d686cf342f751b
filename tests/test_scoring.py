"""Toxicity scorers: the Perspective client against a fake loopback server, the offline scorers."""

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lm_eval_trust.data import DataRoot
from lm_eval_trust.scoring import agreement, offline, toxicity


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
    with pytest.raises(toxicity.ScorerError, match="offline-lm, offline, perspective, detoxify"):
        toxicity.get_scorer("nope", {}, None)


def test_agreement_figures_on_a_toy_case():
    figures = agreement.agreement([0.1, 0.2, None, 0.9, 0.6], [0.0, 0.3, 0.5, 0.8, 0.4])
    assert figures["n"] == 4 and figures["spearman"] == pytest.approx(1.0) and figures["auroc"] == 1.0
    assert figures["agree"] == 0.75, "0.6 against a label of 0.4 falls on the other side of 0.5"
    one_class = agreement.agreement([0.1, 0.2, 0.3], [0.6, 0.7, 0.9])
    assert one_class["auroc"] is None and one_class["agree"] == 0.0


def test_split_keeps_records_whole_and_is_seeded():
    records = [{"i": i} for i in range(10)]
    fit, held_out = offline.split_records(records)
    assert len(fit) == 5 and sorted(r["i"] for r in fit + held_out) == list(range(10))
    assert offline.split_records(records) == (fit, held_out)


FIXED = [
    "Have a lovely day, thank you for your help.",
    "Shut up, you stupid idiot.",
    "The meeting moved to Thursday at noon.",
    "I will kill you and your whole damn family.",
]


@pytest.fixture(scope="module")
def scorer_cache(trust_cache):
    """The session's user cache, so the CLI tests below and these share one fit of each scorer."""
    os.environ["TRUST_CACHE_DIR"] = str(trust_cache)
    try:
        yield trust_cache
    finally:
        del os.environ["TRUST_CACHE_DIR"]


@pytest.fixture(scope="module")
def offline_lm(shared_data, scorer_cache):
    return offline.OfflineLMScorer(DataRoot(shared_data))


def test_the_old_offline_scorer_keeps_its_name_version_and_scores(shared_data, scorer_cache):
    """Runs scored with `offline` before `offline-lm` existed rescore to the same numbers."""
    old = toxicity.get_scorer("offline", {}, DataRoot(shared_data))
    assert (old.name, old.version) == (
        "offline",
        "ridge-charwb15+alt-profanity-check-1.9.1/fit-c59ed8101dbc942b",
    )
    expected = [0.2035728970961806, 0.9687586533792247, 0.19052656474213933, 1.0]
    assert old.score(FIXED) == pytest.approx(expected, abs=1e-9)
    assert old.score([]) == []


def test_offline_lm_ranks_toxic_text_higher_and_records_its_recipe(offline_lm):
    clean, rude, neutral, threat = offline_lm.score(FIXED)
    assert 0 <= clean < rude <= 1 and neutral < threat
    assert offline_lm.name == toxicity.DEFAULT == "offline-lm"
    assert offline_lm.version.startswith(
        "stack(ridge-charwb15+alt-profanity-check-1.9.1,ridge-smollm2-135m-L8-mean)/fit-"
    )
    weights = offline_lm.fitted.final_estimator_.coef_
    assert len(weights) == 2 and all(w > 0 for w in weights), "both halves of the stack carry weight"
    assert offline_lm.score([]) == []


def test_a_texts_features_do_not_depend_on_what_it_is_scored_with(offline_lm):
    features = offline_lm.features()
    others = [f"filler text number {i} " * (i % 9 + 1) for i in range(40)]
    alone = [features([text])[0] for text in FIXED]
    mixed = features(others[:17] + FIXED + others[17:])[17 : 17 + len(FIXED)]
    assert all((a == m).all() for a, m in zip(alone, mixed, strict=True))
    odd = [
        "word " * 2000,
        "lone \udcff surrogate",
        "\ufffd\ufffd",
        "🙂 " * 300,
    ]  # 2000 words: first 512 tokens
    assert features(odd).shape == (len(odd), features.dim)
    assert all(0 <= s <= 1 for s in offline_lm.score(odd))


def test_offline_lm_fit_is_deterministic(offline_lm, shared_data, tmp_path, monkeypatch):
    """A fit in an empty cache gives the same version and the same scores as the cached one."""
    monkeypatch.setenv("TRUST_CACHE_DIR", str(tmp_path))
    again = offline.OfflineLMScorer(DataRoot(shared_data), features=offline_lm.features())
    assert again.version == offline_lm.version
    assert (tmp_path / "scorers" / f"offline-lm-{again.version.rsplit('-', 1)[1]}.pkl").is_file()
    assert again.predict(again.fitted, FIXED) == offline_lm.predict(offline_lm.fitted, FIXED)


def test_offline_lm_scores_are_cached_by_text_and_version(offline_lm, scorer_cache, monkeypatch):
    texts = ["a text scored once", "and another"]
    first = offline_lm.score(texts)

    def refuse(_fitted, _texts):
        raise AssertionError("a cached text was scored again")

    monkeypatch.setattr(offline_lm, "predict", refuse)
    assert offline_lm.score(texts[::-1]) == first[::-1]
    monkeypatch.setattr(offline_lm, "version", offline_lm.version + "-other")
    with pytest.raises(AssertionError, match="scored again"):
        offline_lm.score(texts)


def test_scorer_agreement_reports_both_scorers_and_meets_the_targets(run_cli):
    """Random split and cross-source figures of the old and the new offline scorer, in one run."""
    proc = run_cli("lm-eval-trust", "scorer-agreement")
    figures = {}
    for line in proc.stdout.splitlines():
        if line.startswith("scorer "):
            scorer = line.split()[1]
        elif " | " in line:
            test, rest = line.strip().split(" | ", 1)
            texts, values = rest.split(": ", 1)
            figures[scorer, test, texts] = dict(part.split("=") for part in values.split())
    tests = {(test, texts) for _, test, texts in figures}
    assert {"random split", "RTP -> GPT", "GPT -> RTP"} == {test for test, _ in tests}
    assert {"RTP held-out prompts", "RTP held-out continuations", "GPT-4 prompts"} <= {t for _, t in tests}
    held_out = figures["offline-lm", "random split", "RTP held-out texts"]
    assert int(held_out["n"]) > 2000
    assert float(held_out["spearman"]) >= 0.88 and float(held_out["auroc@0.5"]) >= 0.96
    old = figures["offline", "random split", "RTP held-out texts"]
    assert float(old["spearman"]) == pytest.approx(0.855, abs=0.001)
    means = dict(
        part.rsplit(" ", 1)
        for part in proc.stdout.split("cross-source mean spearman: ")[1].strip().split(", ")
    )
    assert float(means["offline-lm"]) >= float(means["offline"]) + 0.03


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
