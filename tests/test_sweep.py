"""`lm-eval-trust sweep`: the setting grammar, and a sweep killed mid-run then resumed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import BIN, cli_env

from lm_eval_trust import output_folder
from lm_eval_trust.cluster import executors, units
from lm_eval_trust.compression import CompressionError
from lm_eval_trust.sweep import (
    PAPER_GRID,
    Setting,
    SweepError,
    parse_settings,
    setting_command,
    sweep_main,
)


@pytest.mark.parametrize(
    ("text", "name", "model_args"),
    [
        ("dense", "dense", {}),
        ("gptq:4", "gptq-w4-g128", {"compress": "gptq", "bits": 4, "group_size": 128}),
        ("GPTQ:3:g64", "gptq-w3-g64", {"compress": "gptq", "bits": 3, "group_size": 64}),
        ("awq:8", "awq-w8-g128", {"compress": "awq", "bits": 8, "group_size": 128}),
        ("wanda:2:4", "wanda-2of4-s50", {"compress": "wanda", "sparsity": 0.5, "structure": "2:4"}),
        (
            "magnitude:1:2",
            "magnitude-1of2-s50",
            {"compress": "magnitude", "sparsity": 0.5, "structure": "1:2"},
        ),
        (
            "sparsegpt:unstructured:0.3",
            "sparsegpt-unstructured-s30",
            {"compress": "sparsegpt", "sparsity": 0.3, "structure": "unstructured"},
        ),
        (
            "wanda:50%",
            "wanda-unstructured-s50",
            {"compress": "wanda", "sparsity": 0.5, "structure": "unstructured"},
        ),
        (
            "magnitude",
            "magnitude-unstructured-s50",
            {"compress": "magnitude", "sparsity": 0.5, "structure": "unstructured"},
        ),
    ],
)
def test_settings_short_form(text, name, model_args):
    setting = Setting.parse(text)
    assert (setting.name, setting.model_args) == (name, model_args)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gptq", "write gptq:BITS"),
        ("gptq:four", "write gptq:BITS"),
        ("gptq:4:64", "'64' is not a group size"),
        ("gptq:5", "needs bits in"),
        ("wanda:3:4", "structure='3:4' is not supported"),
        ("wanda:2:4:0.3", "keeps 2 of every 4"),
        ("wanda:lots", "neither a structure"),
        ("wanda:1.5", "must be between 0 and 1"),
        ("quantize:4", "unknown method 'quantize'"),
        ("dense:4", "dense takes no arguments"),
    ],
)
def test_bad_settings_name_the_setting_and_the_fix(text, message):
    with pytest.raises(CompressionError, match="setting") as err:
        Setting.parse(text)
    assert message in str(err.value) and repr(text) in str(err.value)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model_args", "pretrained=m,bits=4"], "--model_args sets ['bits']"),
        (["--model_args", "pretrained=m", "--compress_args", "group_size=64"], "--compress_args sets"),
        (["--model_args", "pretrained=m,dtype"], "--model_args: 'dtype' is not key=value"),
        (["--model_args", "dtype=float32"], "needs pretrained="),
        (["--model_args", "pretrained=m", "--bootstrap_iters", "20"], "--bootstrap_iters 20 is too few"),
        (["--model_args", "pretrained=m", "--tasks", ","], "--tasks ',' names no task"),
    ],
)
def test_bad_sweep_arguments_name_the_flag(argv, message, tmp_path, capsys):
    assert sweep_main([*argv, "--output_path", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_default_grid_is_the_papers_and_repeats_are_refused():
    names = [s.name for s in parse_settings(list(PAPER_GRID))]
    assert names[0] == "dense" and "gptq-w3-g128" in names and "wanda-2of4-s50" in names and len(names) == 10
    with pytest.raises(SweepError, match="more than once"):
        parse_settings(["wanda:2:4", "wanda:2:4:50%"])


def test_a_setting_is_done_only_for_the_same_command(tmp_path):
    setting = Setting.parse("gptq:4:g64")
    command = setting_command(
        setting, {"pretrained": "m"}, {"calib_dataset": "self"}, tmp_path, ["--limit", "3"]
    )
    assert "pretrained=m,calib_dataset=self,compress=gptq,bits=4,group_size=64" in command
    dense = setting_command(
        Setting.parse("dense"), {"pretrained": "m"}, {"calib_dataset": "self"}, tmp_path, []
    )
    assert "pretrained=m" in dense  # calibration arguments go to compressed settings only
    unit = units.setting_unit(setting.name, command, tmp_path, str)
    assert not unit.is_done()
    unit.mark_done(1.0)
    assert not unit.is_done()  # a marker without results is not done
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "results_x.json").write_text("{}")
    assert unit.is_done()
    other = setting_command(setting, {"pretrained": "m"}, {}, tmp_path, ["--limit", "4"])
    assert not units.setting_unit(setting.name, other, tmp_path, str).is_done()


def test_sweep_is_killed_mid_run_and_resumes_without_recomputing(
    shared_data, trust_cache, tiny_model, tmp_path
):
    out = tmp_path / "sweep"
    command = [
        str(BIN / "lm-eval-trust"),
        "sweep",
        "--model_args",
        f"pretrained={tiny_model}",
        "--settings",
        "dense",
        "magnitude:2:4",
        "--tasks",
        "trust_advglue",
        "--limit",
        "3",
        "--apply_chat_template",
        "--batch_size",
        "4",
        "--bootstrap_iters",
        "100",
        "--output_path",
        str(out),
    ]
    env = cli_env(shared_data, trust_cache)
    log = (tmp_path / "first.log").open("w")
    first = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 600
    while (
        not (out / "dense" / "sweep_done.json").exists()
        and first.poll() is None
        and time.monotonic() < deadline
    ):
        time.sleep(0.1)
    os.killpg(first.pid, signal.SIGKILL)  # the sweep and its running lm-eval child, mid second setting
    first.wait()
    log.close()
    assert first.returncode == -signal.SIGKILL, (tmp_path / "first.log").read_text()[-3000:]
    assert not (out / "magnitude-2of4-s50" / "sweep_done.json").exists()
    dense_results = {p: p.stat().st_mtime_ns for p in (out / "dense").rglob("results_*.json")}
    assert len(dense_results) == 1

    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "sweep [1/2] dense: done in an earlier run, skipped" in second.stdout
    assert "sweep [2/2] magnitude-2of4-s50: finished" in second.stdout
    assert {p: p.stat().st_mtime_ns for p in (out / "dense").rglob("results_*.json")} == dense_results
    (compressed,) = (out / "magnitude-2of4-s50").rglob("results_*.json")
    assert json.loads(compressed.read_text())["config"]["compression"]["method"] == "magnitude"
    report = out / "report"
    text = (report / "report.md").read_text()
    assert "dense" in text and "magnitude" in text
    for figure in ("radar.png", "compression.png"):
        assert (report / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_on_vllm_without_its_environment_says_how_to_make_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LM_EVAL_TRUST_VLLM_ENV", str(tmp_path / "no-env"))
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "vllm" else object())
    argv = ["--model", "trust-vllm", "--model_args", "pretrained=m", "--output_path", str(tmp_path / "out")]
    assert sweep_main(argv) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "no-env") in err and "lm-eval-trust vllm-env" in err
    assert not (tmp_path / "out").exists()  # refused before any work


SECRET = "hf_sweepSecret0123456789"


def test_a_token_in_model_args_is_in_no_file_or_line_the_sweep_writes(
    shared_data, trust_cache, tmp_path, monkeypatch, capfd
):
    import lm_eval_trust.sweep as sweep

    for key, value in cli_env(shared_data, trust_cache).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(sweep, "ENGINES", (*sweep.ENGINES, "trust-scripted"))
    owners = []
    real_call = executors.subprocess.call

    def call(command, **kwargs):  # the lock's owner file exists only while the sweep runs
        owners.extend(p.read_text() for p in tmp_path.rglob(output_folder.OWNER_NAME))
        return real_call(command, **kwargs)

    monkeypatch.setattr(executors.subprocess, "call", call)
    out = tmp_path / "out"
    argv = [
        "--model",
        "trust-scripted",
        "--model_args",
        f"pretrained=m,token={SECRET}",
        "--settings",
        "dense",
    ]
    argv += [
        "--tasks",
        "trust_advglue",
        "--limit",
        "2",
        "--bootstrap_iters",
        "100",
        "--output_path",
        str(out),
    ]
    assert sweep_main(argv) == 0, capfd.readouterr()
    # A failing setting: its error and the command it printed are redacted too.
    assert sweep_main([*argv[:-1], str(tmp_path / "failed"), "--tasks", "trust_nope"]) == 1
    assert sweep_main([*argv[:-2], "--output_path", str(tmp_path / "bad"), "--settings", "gptq:99"]) == 2
    printed = capfd.readouterr()
    assert "sweep [1/1] dense: finished" in printed.out and "<redacted>" in printed.out
    assert len(owners) == 2 and all(SECRET not in o and "<redacted>" in o for o in owners)
    for text, where in ((printed.out, "stdout"), (printed.err, "stderr")):
        assert SECRET not in text, where
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == units.SETTING_MARKER for p in files)
    assert [p for p in files if SECRET.encode() in p.read_bytes()] == []


def test_a_setting_in_another_precision_stops_the_sweep_before_the_rest_run(tmp_path, monkeypatch):
    """dense in float32 beside GPTQ in bfloat16 mixes precision with compression: stop at GPTQ."""
    import lm_eval_trust.sweep as sweep

    precision = {"dense": "float32", "gptq-w4-g128": "bfloat16", "awq-w4-g128": "float32"}
    ran = []

    def call(command, **kwargs):
        run_dir = Path(command[command.index("--output_path") + 1])
        ran.append(run_dir.name)
        (run_dir / "m").mkdir()
        results = {"config": {"computes_in": precision[run_dir.name]}}
        (run_dir / "m" / "results_1.json").write_text(json.dumps(results))
        return 0

    monkeypatch.setattr(executors.subprocess, "call", call)
    settings = sweep.parse_settings(["dense", "gptq:4", "awq:4"])
    with pytest.raises(
        SweepError, match=r"gptq-w4-g128 computes in bfloat16, dense in float32.*dtype=float32"
    ):
        sweep.run_sweep(
            settings, {"pretrained": "m"}, {}, tmp_path, ["--tasks", "trust_advglue"], log=lambda _: None
        )
    assert ran == ["dense", "gptq-w4-g128"]
    precision["gptq-w4-g128"] = "float32"  # one precision: every setting runs
    for folder in tmp_path.iterdir():
        shutil.rmtree(folder)
    ran.clear()
    sweep.run_sweep(
        settings, {"pretrained": "m"}, {}, tmp_path, ["--tasks", "trust_advglue"], log=lambda _: None
    )
    assert ran == ["dense", "gptq-w4-g128", "awq-w4-g128"]


def test_ctrl_c_while_the_report_is_written_prints_one_line_and_the_report_command(
    tmp_path, monkeypatch, capsys
):
    import lm_eval_trust.report as report
    import lm_eval_trust.sweep as sweep

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep, "run_sweep", lambda *a, **k: [tmp_path / "dense"])
    monkeypatch.setattr(report, "write_report", interrupted)
    argv = ["--model_args", "pretrained=m", "--settings", "dense", "--output_path", str(tmp_path / "out")]
    assert sweep_main([*argv, "--tasks", "trust_advglue"]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"lm-eval-trust report {tmp_path / 'out'} -o {tmp_path / 'out' / 'report'}" in err
