"""Bad input to `report` and `sweep`: runs that cannot be compared, NaN scores, unusable output folders,
two sweeps into one folder, shared arguments a method does not use."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from report_fixtures import advglue_config, compression, trust_results, write_run

from lm_eval_trust.output_folder import output_lock
from lm_eval_trust.report import ReportError, report_main, write_report
from lm_eval_trust.sweep import Setting, setting_command, sweep_main

GPTQ = compression("gptq", bits=4, group_size=128)


def advglue_run(folder, compress, score=80.0, documents=4, metadata=None, **run_config):
    """One model's trust_advglue results, with lm-eval's n-samples and `config` entries."""
    return write_run(
        folder,
        "tiny",
        compress,
        {"trust_advglue": trust_results("trust_advglue", score)},
        {"trust_advglue": advglue_config(**(metadata or {}))},
        n_samples={"trust_advglue": {"original": 40, "effective": documents}},
        **{"limit": None, "random_seed": 0, "torch_seed": 1234, "gen_kwargs": None, **run_config},
    )


def strict_json(path):
    """json.loads that fails on NaN/Infinity, which are not JSON."""

    def refuse(name):
        raise ValueError(f"{path} holds {name}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


# -- runs that cannot be compared --------------------------------------------------------------------


def test_runs_at_different_limits_are_refused_naming_field_values_and_folders(tmp_path):
    advglue_run(tmp_path / "dense", None, 100.0, documents=2, limit=2)
    advglue_run(tmp_path / "gptq", GPTQ, 44.4, documents=8, limit=8)
    with pytest.raises(ReportError) as err:
        write_report([tmp_path], tmp_path / "out")
    message = str(err.value)
    assert "runs not comparable with the baseline dense" in message
    assert (
        f"gptq 4-bit g128 ({tmp_path / 'gptq'}), trust_advglue: documents is 8, "
        f"the baseline's ({tmp_path / 'dense'}) is 2"
    ) in message
    assert "--limit and docs_per_scenario" in message
    assert not (tmp_path / "out" / "report.json").exists()


def test_recorded_comparability_is_compared_field_by_field(tmp_path):
    record = {
        "scenarios_run": ["advglue_dev_sst2"],
        "documents": 4,
        "documents_sha256": "aaa",
        "subsample": None,
    }
    advglue_run(tmp_path / "dense", None, metadata={"comparability": record})
    other = {**record, "documents_sha256": "bbb"}
    advglue_run(tmp_path / "gptq", GPTQ, metadata={"comparability": other})
    with pytest.raises(
        ReportError, match='trust_advglue: documents_sha256 is "bbb", the baseline\'s .* is "aaa"'
    ):
        write_report([tmp_path], tmp_path / "out")
    advglue_run(tmp_path / "gptq", GPTQ, metadata={"comparability": record})
    assert write_report([tmp_path], tmp_path / "out").is_file()


@pytest.mark.parametrize(
    ("dense", "compressed", "field"),
    [
        ({"random_seed": 0}, {"random_seed": 1}, "random_seed is 1"),
        ({"gen_kwargs": None}, {"gen_kwargs": "temperature=0.7"}, 'gen_kwargs is "temperature=0.7"'),
        ({"metadata": {}}, {"metadata": {"subsample": {"docs_per_scenario": 2}}}, "subsample is {"),
        ({"metadata": {}}, {"metadata": {"samples_per_prompt": {"s": 3}}}, 'samples_per_prompt is {"s": 3}'),
        ({"metadata": {}}, {"metadata": {"data_source": "other"}}, 'data_source is "other"'),
    ],
)
def test_seeds_generation_sampling_and_data_must_match(tmp_path, dense, compressed, field):
    advglue_run(tmp_path / "dense", None, **dense)
    advglue_run(tmp_path / "gptq", GPTQ, **compressed)
    with pytest.raises(ReportError, match="not comparable") as err:
        write_report([tmp_path], tmp_path / "out")
    assert f"trust_advglue: {field}" in str(err.value)


def test_base_model_is_compared_by_weights_hash_then_name(tmp_path):
    advglue_run(tmp_path / "dense", None, weights_sha256="base")
    compressed = {**GPTQ, "base_weights_sha256": "other"}
    advglue_run(tmp_path / "gptq", compressed, weights_sha256="compressed weights")
    with pytest.raises(ReportError, match='base model: weights is "other", the baseline\'s .* is "base"'):
        write_report([tmp_path], tmp_path / "out")
    advglue_run(tmp_path / "gptq", {**GPTQ, "base_weights_sha256": "base"}, weights_sha256="compressed")
    assert write_report([tmp_path], tmp_path / "out").is_file()


def test_a_different_model_is_not_a_baseline(tmp_path):
    advglue_run(tmp_path / "dense", None)
    write_run(
        tmp_path / "other",
        "bigger",
        GPTQ,
        {"trust_advglue": trust_results("trust_advglue", 50.0)},
        {"trust_advglue": advglue_config()},
    )
    with pytest.raises(ReportError, match='bigger \\(gptq 4-bit g128\\) .*base model: name is "bigger"'):
        write_report([tmp_path], tmp_path / "out")


# -- numbers that are not numbers ------------------------------------------------------------------


def test_nan_score_is_missing_with_a_note_and_report_json_stays_json(tmp_path):
    advglue_run(tmp_path / "dense", None, 90.0)
    path = advglue_run(tmp_path / "gptq", GPTQ, float("nan"))
    assert "NaN" in path.read_text()
    out = tmp_path / "out"
    report = write_report([tmp_path], out, formats=["markdown", "leaderboard"])
    data = strict_json(out / "report.json")
    gptq = data["rows"][1]["cells"]
    assert gptq["advglue"]["score"] is None and "change" not in gptq["advglue"]
    assert (
        f"{path}: results.trust_advglue.score,none is nan; shown as missing (gptq 4-bit g128)."
        in data["notes"]
    )
    assert strict_json(out / "leaderboard.json")[1]["Adversarial Robustness"] is None
    table_rows = [line for line in report.read_text().splitlines() if line.startswith("|")]
    assert table_rows[3].startswith("| tiny | gptq 4-bit g128 | – | – | – |")
    assert not [line for line in table_rows if "nan" in line.lower()]


# -- report output folder --------------------------------------------------------------------------


def test_report_output_that_is_a_file_is_an_error(tmp_path, capsys):
    advglue_run(tmp_path / "runs" / "dense", None)
    taken = tmp_path / "taken"
    taken.write_text("")
    assert report_main([str(tmp_path / "runs"), "-o", str(taken)]) == 2
    assert f"--output {taken}: cannot make the folder" in capsys.readouterr().err


# -- sweep output folder, lock, shared arguments ---------------------------------------------------

SWEEP = ["--model_args", "pretrained=tiny", "--settings", "dense", "--tasks", "trust_advglue"]


def test_sweep_output_path_that_is_a_file_fails_before_any_work(tmp_path, capsys):
    taken = tmp_path / "out.json"
    taken.write_text("{}")
    assert sweep_main([*SWEEP, "--output_path", str(taken)]) == 2
    assert f"--output_path {taken} is a file; give a folder" in capsys.readouterr().err
    assert taken.read_text() == "{}"


def test_sweep_output_below_a_file_fails_before_any_work(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert sweep_main([*SWEEP, "--output_path", str(tmp_path / "file" / "out")]) == 2
    assert f"--output_path {tmp_path / 'file' / 'out'} cannot be written" in capsys.readouterr().err


def test_sweep_report_dir_that_is_a_file_fails_before_any_work(tmp_path, capsys):
    (tmp_path / "report").write_text("")
    argv = [*SWEEP, "--output_path", str(tmp_path / "out"), "--report_dir", str(tmp_path / "report")]
    assert sweep_main(argv) == 2
    assert f"--report_dir {tmp_path / 'report'} is a file" in capsys.readouterr().err
    assert not (tmp_path / "out" / "dense").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_sweep_output_without_write_permission_fails_before_any_work(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert sweep_main([*SWEEP, "--output_path", str(locked / "out")]) == 2
    assert "cannot be written" in capsys.readouterr().err


HOLD = """
import sys, time
from pathlib import Path
from lm_eval_trust.output_folder import output_lock
with output_lock(Path(sys.argv[1]), "lm-eval-trust sweep --output_path out"):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_second_sweep_into_the_same_folder_refuses_naming_the_first(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        second = subprocess.run(
            [sys.executable, "-m", "lm_eval_trust.cli", "sweep", *SWEEP, "--output_path", str(out)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 2, second.stderr[-2000:]
        assert (
            f"another sweep is writing to {out}: {out / 'sweep.lock'} is held by pid {holder.pid}"
            in second.stderr
        )
        assert not (out / "dense").exists()
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
    assert "lm-eval-trust sweep --output_path out" in second.stderr
    with output_lock(out, "this test"):  # a killed holder leaves no lock behind
        assert json.loads((out / "sweep.lock.owner.json").read_text())["pid"] == os.getpid()
    assert not (out / "sweep.lock.owner.json").exists()


def test_shared_compress_args_go_only_to_methods_that_use_them(tmp_path):
    shared = {"calib_samples": 16, "dtype": "float32"}
    magnitude = setting_command(Setting.parse("magnitude:2:4"), {"pretrained": "m"}, shared, tmp_path, [])
    wanda = setting_command(Setting.parse("wanda:2:4"), {"pretrained": "m"}, shared, tmp_path, [])
    assert "pretrained=m,dtype=float32,compress=magnitude,sparsity=0.5,structure=2:4" in magnitude
    assert "pretrained=m,calib_samples=16,dtype=float32,compress=wanda,sparsity=0.5,structure=2:4" in wanda
