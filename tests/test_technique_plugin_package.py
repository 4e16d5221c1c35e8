"""The example technique package of docs/writing-a-technique.md, installed the way a user installs
it and run through ``vinocr-finetune``: an entry point in the ``vinocr.techniques`` group is all
vinocr needs to find a technique that lives outside this repository.

The package is installed with pip into a temporary ``--target`` folder, which the training process
gets on ``PYTHONPATH`` (importlib.metadata reads entry points from the ``.dist-info`` there), so
nothing is added to the virtualenv.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Optional

import pytest

# The seconds-long CRNN run of the data-parallel tests: 16 + 4 generated crops, batch 8.
from test_distributed import run_config, write_data

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "docs" / "examples" / "vinocr_example_technique"
NAME = "confidence_penalty"  # the entry point's name in the example's pyproject.toml


def finetune_command() -> str:
    script = Path(sys.executable).parent / "vinocr-finetune"
    found = str(script) if script.is_file() else shutil.which("vinocr-finetune")
    assert found, "vinocr-finetune is not installed (pip install -e .)"
    return found


def pip_install_target(package: Path, target: Path) -> None:
    """``pip install`` ``package`` into the folder ``target`` only, offline: the ``test`` extra
    installs ``wheel``, so the environment's own setuptools builds it (nothing is downloaded)."""
    res = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                          "--no-index", "--no-build-isolation", "--target", str(target),
                          str(package)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"pip install of the example failed:\n{res.stderr[-3000:]}"


def finetune(root: Path, config: Path, run: str, *overrides: str,
             plugin_path: Optional[Path]) -> subprocess.CompletedProcess:
    """``vinocr-finetune --technique NAME -o Global.run_dir=ROOT/RUN *overrides`` (one ``-o``: a
    second one would replace the first's values)."""
    env = dict(os.environ, VINOCR_NO_PROGRESS="1")
    if plugin_path is not None:
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(plugin_path), os.environ.get("PYTHONPATH", "")) if p)
    return subprocess.run([finetune_command(), "-c", str(config), "--nproc", "1",
                           "--technique", NAME, "-o", f"Global.run_dir={root / run}", *overrides],
                          capture_output=True, text=True, timeout=600, cwd=root, env=env)


def report(root: Path, run: str) -> Dict[str, Any]:
    return json.loads((root / run / "report.json").read_text())


def test_guide_shows_the_example_files_verbatim():
    guide = (REPO / "docs" / "writing-a-technique.md").read_text(encoding="utf-8")
    for name, lang in (("pyproject.toml", "toml"), ("vinocr_example_technique.py", "python")):
        text = (EXAMPLE / name).read_text(encoding="utf-8")
        assert f"```{lang}\n{text}```" in guide, f"docs/writing-a-technique.md: {name} differs"


def test_example_package_installs_and_trains_through_vinocr_finetune(tmp_path: Path):
    package = tmp_path / "vinocr_example_technique"
    shutil.copytree(EXAMPLE, package, ignore=shutil.ignore_patterns(
        "build", "*.egg-info", "__pycache__"))
    site = tmp_path / "site"
    pip_install_target(package, site)
    assert (site / "vinocr_example_technique.py").is_file()
    write_data(tmp_path)
    config = run_config(tmp_path, "run", Train={"epochs": 1})

    # Without the installed package on the path, the name is unknown: the entry point is what
    # makes it a technique (and the virtualenv does not have it).
    res = finetune(tmp_path, config, "not_installed", plugin_path=None)
    assert res.returncode == 2, res.stderr[-2000:]
    assert f"unknown technique {NAME!r}" in res.stderr

    res = finetune(tmp_path, config, "run", "Technique.weight=0.5",
                   plugin_path=site)
    assert res.returncode == 0, res.stderr[-3000:]
    technique = report(tmp_path, "run")["technique"]
    assert technique["name"] == NAME
    # the options travel with the run: the one given, and the default of the other
    assert technique["options"][NAME] == {"weight": 0.5, "warmup_steps": 0}
    part = technique["parts"][0]
    assert part["name"] == NAME
    # 16 samples / batch 8 x 1 epoch: 2 steps, each with the penalty added to the loss
    assert part["penalised_steps"] == report(tmp_path, "run")["global_step"] == 2
    assert part["mean_penalty"] > 0

    # weight 0 adds nothing: same data, same seed, a different training loss
    res = finetune(tmp_path, config, "off", "Technique.weight=0",
                   plugin_path=site)
    assert res.returncode == 0, res.stderr[-3000:]
    assert report(tmp_path, "off")["technique"]["parts"][0]["penalised_steps"] == 0
    losses = [json.loads((tmp_path / run / "training_history.json").read_text())[0]["train_loss"]
              for run in ("run", "off")]
    assert losses[0] != pytest.approx(losses[1], rel=1e-6), losses

    # an invalid value is a one-line error naming the option, before any training
    res = finetune(tmp_path, config, "bad", "Technique.weight=-1",
                   plugin_path=site)
    assert res.returncode == 2, res.stderr[-2000:]
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    assert res.stderr.strip().splitlines()[-1] == (
        "vinocr-finetune: error: Technique.weight: must be >= 0, got -1.0"), res.stderr[-2000:]
    assert not (tmp_path / "bad" / "report.json").exists()
