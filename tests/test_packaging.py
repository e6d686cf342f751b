"""The installed layout: only `lm_eval_trust` at the top level, tasks and adapters beneath it."""

import subprocess
import sys
import zipfile

from conftest import REPO

from lm_eval_trust import TASKS_DIR


def test_wheel_installs_only_lm_eval_trust_at_top_level(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(REPO),
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("lm_eval_trust-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"lm_eval_trust"}
    for expected in (
        "lm_eval_trust/manifest.tsv",
        "lm_eval_trust/tasks/advglue/trust_advglue.yaml",
        "lm_eval_trust/tasks/advglue/advglue.py",
        "lm_eval_trust/model_adapters/trust_hf.py",
    ):
        assert expected in names
    (entry_points,) = [n for n in names if n.endswith("entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "lm-eval-trust = lm_eval_trust.cli:main" in text
    assert "[lm_eval.models]" in text and "trust-hf = lm_eval_trust.model_adapters.trust_hf:TrustHFLM" in text


def test_tasks_dir_command_prints_the_installed_tasks_folder(run_cli):
    printed = run_cli("lm-eval-trust", "tasks-dir").stdout.strip()
    assert printed == str(TASKS_DIR)
    assert (TASKS_DIR / "advglue" / "trust_advglue.yaml").is_file()
