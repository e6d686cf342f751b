"""`report` interrupted or killed part way: the output folder holds one whole report, old or new.

Every file is written into a fresh sibling folder that replaces the output folder at the end, so a
Ctrl-C before that move keeps the previous report intact, and it is one line and exit 130.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from report_fixtures import (
    advglue_config,
    advglue_docs,
    advglue_samples,
    compression,
    trust_results,
    write_run,
)

from lm_eval_trust import atomic
from lm_eval_trust.report import REPORT_FILES, ReportError, report_main, write_report

DOCS = advglue_docs(10)
RIGHT = ["positive" if d["glue_task"] == "sst2" else "yes" for d in DOCS]
WRONG = ["negative" if d["glue_task"] == "sst2" else "yes" for d in DOCS]
FORMATS = ["markdown", "html", "leaderboard"]


def two_runs(root: Path, compressed_score: float = 50.0) -> Path:
    for folder, compress, score, answers in (
        ("dense", None, 100.0, RIGHT),
        ("gptq", compression("gptq", bits=4), compressed_score, WRONG),
    ):
        write_run(
            root / folder,
            "tiny",
            compress,
            {"trust_advglue": trust_results("trust_advglue", score)},
            {"trust_advglue": advglue_config()},
            {"trust_advglue": advglue_samples(DOCS, answers)},
        )
    return root


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def partials(out: Path) -> list[Path]:
    return list(out.parent.glob(atomic.partial_prefix(out) + "*"))


def interrupt(*args, **kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize(
    "step", ["radar_figure", "compression_figure", "write_markdown", "write_html", "write_leaderboard"]
)
def test_an_interrupted_report_keeps_the_previous_set_whole(tmp_path, monkeypatch, step):
    runs, out = two_runs(tmp_path / "runs"), tmp_path / "out"
    write_report([runs], out, formats=FORMATS, bootstrap_iters=100)
    before = snapshot(out)
    assert set(before) == set(REPORT_FILES)
    two_runs(runs, compressed_score=20.0)  # the next report would say something else
    monkeypatch.setattr(f"lm_eval_trust.report.{step}", interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_report([runs], out, formats=FORMATS, bootstrap_iters=100)
    assert snapshot(out) == before
    assert not partials(out)


def test_ctrl_c_is_one_line_exit_130_and_names_the_kept_report(tmp_path, monkeypatch, capsys):
    runs, out = two_runs(tmp_path / "runs"), tmp_path / "out"
    assert report_main([str(runs), "-o", str(out)]) == 0
    before = snapshot(out)
    capsys.readouterr()
    monkeypatch.setattr("lm_eval_trust.report.compare", interrupt)  # Ctrl-C during the bootstrap
    assert report_main([str(runs), "-o", str(out)]) == 130
    captured = capsys.readouterr()
    assert captured.err == f"lm-eval-trust report: interrupted; {out} keeps its previous report\n"
    assert captured.out == "" and snapshot(out) == before and not partials(out)
    assert report_main([str(runs), "-o", str(tmp_path / "new")]) == 130
    assert "interrupted; no report was written" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


SLOW_BOOTSTRAP = """
import sys, time
import lm_eval_trust.report as report
real = report.compare
def slow(*args):
    print("bootstrap", flush=True)
    time.sleep(60)
    return real(*args)
report.compare = slow
sys.exit(report.report_main(sys.argv[1:]))
"""


def test_a_real_sigint_during_the_bootstrap_prints_no_traceback(tmp_path):
    runs, out = two_runs(tmp_path / "runs"), tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_BOOTSTRAP, str(runs), "-o", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "bootstrap"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert err == "lm-eval-trust report: interrupted; no report was written\n"


def test_a_ctrl_c_during_the_move_lands_after_it(tmp_path, monkeypatch, capsys):
    """The swap of old folder for new runs with SIGINT held, so it is never left half done."""
    runs, out = two_runs(tmp_path / "runs"), tmp_path / "out"
    write_report([runs], out, bootstrap_iters=100)
    two_runs(runs, compressed_score=20.0)
    real_rmtree = atomic.shutil.rmtree

    def rmtree_after_ctrl_c(path, *args, **kwargs):
        if Path(path) == out:
            os.kill(os.getpid(), signal.SIGINT)
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(atomic.shutil, "rmtree", rmtree_after_ctrl_c)
    assert report_main([str(runs), "-o", str(out), "--bootstrap_iters", "100"]) == 130
    assert capsys.readouterr().err == f"lm-eval-trust report: interrupted; {out} holds the new report\n"
    assert '"score": 20.0' in (out / "report.json").read_text()
    assert {p.name for p in out.iterdir()} == {"report.json", "report.md", "radar.png", "compression.png"}
    assert not partials(out)


def test_files_a_report_does_not_write_are_never_replaced(tmp_path, capsys):
    runs = two_runs(tmp_path / "runs")
    for out in (runs, tmp_path / "notes"):
        out.mkdir(exist_ok=True)
        (out / "notes.txt").write_text("mine")
        with pytest.raises(ReportError, match=f"--output {out}: holds files a report does not write"):
            write_report([runs], out)
        assert (out / "notes.txt").read_text() == "mine"
    assert report_main([str(runs), "-o", str(runs / "dense")]) == 2
    err = capsys.readouterr().err
    assert "results_2026-01-01T00-00-00.000000.json" in err and "pick an empty or new folder" in err
    assert (runs / "dense").is_dir() and not partials(runs / "dense")


def test_a_stale_file_of_an_earlier_format_goes_with_the_old_set(tmp_path):
    runs, out = two_runs(tmp_path / "runs"), tmp_path / "out"
    write_report([runs], out, formats=FORMATS, bootstrap_iters=100)
    write_report([runs], out, formats=["leaderboard"], bootstrap_iters=100)
    assert {p.name for p in out.iterdir()} == {"report.json", "leaderboard.csv", "leaderboard.json"}


def test_a_symlinked_output_folder_stays_a_link_to_the_new_report(tmp_path):
    runs, real = two_runs(tmp_path / "runs"), tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    assert write_report([runs], link, bootstrap_iters=100) == link / "report.md"
    assert link.is_symlink() and (real / "report.md").is_file()


def test_a_symlink_loop_as_output_is_an_error_not_a_traceback(tmp_path, capsys):
    runs, loop = two_runs(tmp_path / "runs"), tmp_path / "loop"
    loop.symlink_to(loop)
    assert report_main([str(runs), "-o", str(loop)]) == 2
    assert f"--output {loop}: a symlink that cannot be followed" in capsys.readouterr().err
