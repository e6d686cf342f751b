"""Runs that differ in what computed or framed the answers are not compared: engine, precision,
prompts as sent, scoring options (the toxicity scorer's are in test_bad_input_scoring.py)."""

from __future__ import annotations

import json

import pytest
from report_fixtures import advglue_config, compression, trust_results, write_run

from lm_eval_trust.report import ReportError, write_report

GPTQ = compression("gptq", bits=4, group_size=128)
RECORD = {"scenarios_run": ["advglue_dev_sst2"], "documents": 4, "documents_sha256": "aaa"}


def pair(tmp_path, dense: dict, compressed: dict, dense_meta=None, compressed_meta=None):
    for folder, compress, run_config, meta in (
        ("dense", None, dense, dense_meta),
        ("gptq", GPTQ, compressed, compressed_meta),
    ):
        write_run(
            tmp_path / folder,
            "tiny",
            compress,
            {"trust_advglue": trust_results("trust_advglue", 50.0)},
            {"trust_advglue": advglue_config(**(meta or {}))},
            **run_config,
        )


def refused(tmp_path) -> str:
    with pytest.raises(ReportError, match="not comparable") as err:
        write_report([tmp_path], tmp_path / "out")
    assert not (tmp_path / "out" / "report.json").exists()
    return str(err.value)


@pytest.mark.parametrize(
    ("dense", "compressed", "shown", "fix"),
    [
        (
            {"model": "trust-vllm", "engine": "vllm 0.32.0"},
            {"model": "trust-hf"},
            "engine: engine is",
            "--model",
        ),
        ({"dtype": "float32"}, {"dtype": "bfloat16"}, 'precision: precision is "bfloat16"', "dtype="),
        ({"dtype": "torch.float16"}, {"dtype": "bfloat16"}, '"float16"', "dtype="),
    ],
)
def test_runs_on_another_engine_or_precision_are_refused(tmp_path, dense, compressed, shown, fix):
    pair(tmp_path, dense, compressed)
    message = refused(tmp_path)
    assert shown in message and fix in message


@pytest.mark.parametrize(
    ("dense", "compressed"),
    [
        ({"dtype": "torch.float32"}, {"dtype": "float32"}),  # trust-hf and trust-vllm spell it apart
        ({"dtype": "float32"}, {}),  # older results: unknown is not compared
        ({"dtype": "auto"}, {"dtype": "bfloat16"}),  # `auto` names no precision
    ],
)
def test_equal_or_unknown_precisions_are_compared(tmp_path, dense, compressed):
    pair(tmp_path, dense, compressed)
    assert write_report([tmp_path], tmp_path / "out").is_file()


def test_runs_whose_prompts_were_sent_differently_are_refused(tmp_path):
    """Same documents (messages), other chat template or system instruction: other prompts."""
    pair(
        tmp_path,
        {},
        {},
        {"comparability": {**RECORD, "prompts_sha256": "with-template"}},
        {"comparability": {**RECORD, "prompts_sha256": "plain"}},
    )
    message = refused(tmp_path)
    assert 'prompts_sha256 is "plain"' in message and "--apply_chat_template" in message


def test_a_run_records_the_prompts_it_sent(run_cli, tmp_path):
    """A system instruction changes the recorded prompt digest; the messages digest stays."""
    records = []
    for instruction in ((), ("--system_instruction", "Answer briefly.")):
        out = tmp_path / f"out{len(instruction)}"
        run_cli(
            "lm-eval-trust",
            *("--model", "trust-scripted", "--tasks", "trust_advglue", "--limit", "2"),
            *instruction,
            *("--output_path", str(out)),
        )
        (path,) = out.rglob("results_*.json")
        records.append(json.loads(path.read_text())["configs"]["trust_advglue"]["metadata"]["comparability"])
    plain, chat = records
    assert plain["documents_sha256"] == chat["documents_sha256"]
    assert plain["prompts_sha256"] != chat["prompts_sha256"] and len(plain["prompts_sha256"]) == 64


def test_a_draw_of_every_document_is_compared_with_a_full_run(run_cli, tmp_path):
    """Compared by the documents drawn: `docs_per_scenario` 100000 draws the full set (it was refused
    as a subsample mismatch); 2 a scenario is refused, naming the documents."""
    records = {}
    for name, metadata in (
        ("full", {}),
        ("all", {"docs_per_scenario": 100000}),
        ("two", {"docs_per_scenario": 2}),
    ):
        out = tmp_path / name
        run_cli(
            "lm-eval-trust",
            *("--model", "trust-scripted", "--tasks", "trust_advglue"),
            *("--metadata", json.dumps({**metadata, "scenarios": ["advglue_dev_sst2"]})),
            *("--output_path", str(out)),
        )
        (path,) = out.rglob("results_*.json")
        records[name] = json.loads(path.read_text())["configs"]["trust_advglue"]["metadata"]["comparability"]
    pair(tmp_path / "same", {}, {}, {"comparability": records["full"]}, {"comparability": records["all"]})
    assert write_report([tmp_path / "same"], tmp_path / "same" / "out").is_file()
    pair(tmp_path / "fewer", {}, {}, {"comparability": records["full"]}, {"comparability": records["two"]})
    assert "documents_sha256 is" in refused(tmp_path / "fewer")
