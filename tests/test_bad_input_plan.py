"""`lm-eval-trust plan` and `rescore`: bad arguments end in one line naming the flag, the value and the
fix (exit 2), before any work is done; a paired estimate of a run against itself is refused."""

from __future__ import annotations

import os
import shutil

import pytest
from report_fixtures import advglue_config, advglue_docs, advglue_samples, trust_results, write_run

from lm_eval_trust.plan import plan_main
from lm_eval_trust.rescore import rescore_main

PREFIX = "lm-eval-trust plan: error: "


def one_error_line(capsys, prefix: str = PREFIX) -> str:
    """The single stderr line of a refused command; nothing was printed to stdout."""
    captured = capsys.readouterr()
    assert captured.out == "", captured.out
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), captured.err
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--tasks", ","], ["--tasks ','", "--tasks trust"]),
        (["--tasks", " , ,"], ["names no task", "--tasks trust"]),
        (["--tasks", "trust_advglue", "--limit", "nan"], ["--limit nan", "a count"]),
        (["--tasks", "trust_advglue", "--limit", "inf"], ["--limit inf", "a count"]),
        (["--tasks", "trust_advglue", "--limit", "-1"], ["--limit -1", "selects no documents"]),
        (["--tasks", "trust_advglue", "--limit", "0"], ["--limit 0", "selects no documents"]),
        (["--tasks", "trust_advglue", "--iters", "1"], ["--iters 1", "at least 2"]),
        (["--tasks", "trust_advglue", "--iters", "1000000000"], ["--iters 1000000000", "at most"]),
        (
            ["--tasks", "trust_advglue", "--metadata", '{"docs_per_scenario": {"advglu_*": 2}}'],
            ["['advglu_*'] can match no scenario of the tasks run"],
        ),
    ],
)
def test_bad_numbers_and_task_lists_are_named(argv, expected, capsys):
    assert plan_main(argv) == 2
    line = one_error_line(capsys)
    for text in expected:
        assert text in line, line


def test_an_unusable_json_path_is_refused_before_any_work(tmp_path, capsys):
    assert plan_main(["--tasks", "trust_advglue", "--json", str(tmp_path)]) == 2
    line = one_error_line(capsys)
    assert f"--json {tmp_path}" in line and "is a folder" in line
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert plan_main(["--tasks", "trust_advglue", "--json", str(blocker / "plan.json")]) == 2
    line = one_error_line(capsys)
    assert f"--json {blocker / 'plan.json'}" in line and str(blocker) in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_an_unwritable_json_folder_is_refused(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    assert plan_main(["--tasks", "trust_advglue", "--json", str(locked / "plan.json")]) == 2
    assert "cannot be written" in one_error_line(capsys)


def small_run(folder):
    docs = advglue_docs(2)
    lines = advglue_samples(docs, ["positive", "no", "negative", "yes"])
    results = {"trust_advglue": trust_results("trust_advglue", 50.0)}
    write_run(folder, "m", None, results, {"trust_advglue": advglue_config()}, {"trust_advglue": lines})
    return folder


def test_a_run_paired_with_itself_is_refused(tmp_path, capsys):
    run = small_run(tmp_path / "run")
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    link = tmp_path / "link"
    link.symlink_to(run)
    for other in (run, link, copy):
        argv = ["--tasks", "trust_advglue", "--samples", str(run), "--other_samples", str(other)]
        assert plan_main(argv) == 2, other
        line = one_error_line(capsys)
        assert "trust_advglue" in line and "two different runs" in line, line
        assert str(run) in line and str(other) in line, line


def test_rescore_output_that_is_a_file_is_refused(tmp_path, capsys):
    run = small_run(tmp_path / "run")
    taken = tmp_path / "taken.json"
    taken.write_text("keep")
    for flag in ("-o", "--output"):
        assert rescore_main([str(run), flag, str(taken)]) == 2
        line = one_error_line(capsys, "lm-eval-trust rescore: error: ")
        assert f"--output {taken}" in line and "is a file" in line, line
    assert taken.read_text() == "keep"
    assert rescore_main([str(run), "-o", str(taken / "below")]) == 2
    assert str(taken) in one_error_line(capsys, "lm-eval-trust rescore: error: ")


def test_rescore_into_the_runs_own_folder_is_refused(tmp_path, capsys):
    run = small_run(tmp_path / "run")
    before = sorted(p.name for p in run.iterdir())
    assert rescore_main([str(run), "-o", str(run)]) == 2
    line = one_error_line(capsys, "lm-eval-trust rescore: error: ")
    assert f"--output {run}" in line and "new folder" in line, line
    assert sorted(p.name for p in run.iterdir()) == before


def test_rescore_of_a_missing_input_names_it_not_the_output(tmp_path, capsys):
    assert rescore_main([str(tmp_path / "missing"), "-o", str(tmp_path / "out")]) == 2
    line = one_error_line(capsys, "lm-eval-trust rescore: error: ")
    assert f"{tmp_path / 'missing'}: no such file or folder" in line, line
    assert not (tmp_path / "out").exists()
