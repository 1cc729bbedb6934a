"""`python -m examples.horse_or_human` end to end, on synthetic data, tiny and fast."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import keras
import pytest

from examples import horse_or_human
from examples.horse_or_human import command

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--image-size", "32",
    "--epochs", "2",
    "--steps-per-epoch", "2",
    "--validation-steps", "2",
    "--batch-size", "16",
    "--validation-batch-size", "16",
]  # fmt: skip


def test_command_writes_table_json_and_plot_that_agree(tmp_path, synthetic_cache):
    env = os.environ | {
        "KERAS_HOME": str(synthetic_cache.parent),
        "KERAS_BACKEND": keras.backend.backend(),
        "PYTHONPATH": str(ROOT),
    }
    completed = subprocess.run(
        [sys.executable, "-m", "examples.horse_or_human", "--data", "synthetic", *TINY],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    default_output = tmp_path / "horse_or_human_results"
    table = (default_output / "table.md").read_text()
    assert table in completed.stdout
    assert (default_output / "curves.png").read_bytes().startswith(b"\x89PNG")
    for name in ("table.md", "results.json", "curves.png"):
        assert str(default_output / name) in completed.stdout
    # Not a terminal: one line per epoch (2 runs of 2 epochs), no bars.
    assert "Epoch 1/2" in completed.stdout
    assert "\r" not in completed.stdout and "━" not in completed.stdout
    epoch_lines = [
        line for line in completed.stdout.splitlines() if line.startswith("2/2 - ")
    ]
    assert len(epoch_lines) == 4 and all(" - loss: " in x for x in epoch_lines)
    # Synthetic data say so in every output (the plot's title too).
    assert table.startswith("**horse-or-human, SYNTHETIC stand-in")
    assert completed.stdout.startswith("horse-or-human, SYNTHETIC stand-in")

    data = json.loads((default_output / "results.json").read_text())
    assert data["metadata"]["backend"] == keras.backend.backend()
    assert data["metadata"]["data"]["source"] == "synthetic"
    assert data["metadata"]["data"]["train_images"] == 1027
    assert data["metadata"]["options"]["image_size"] == 32
    assert data["metadata"]["versions"]["keras"] == keras.__version__
    assert data["metadata"]["title"].startswith("horse-or-human, SYNTHETIC")
    # The summary ends with one verdict per headline measure, as saved.
    printed = completed.stdout.split("\n\n")[-2].splitlines()
    assert [line.split(":")[0] for line in printed] == [
        "GC minus bare, final val_accuracy",
        "GC minus bare, final val_loss",
        "GC minus bare, time per epoch after the first (s)",
    ]
    for line, verdict in zip(printed, data["verdict"].values(), strict=True):
        assert line.endswith(f": {verdict['verdict']}.")
        assert verdict["verdict"] in table
    rows = {tuple(line.split(" | ")[:2]): line for line in table.splitlines()}
    for run in data["runs"]:
        row = rows[(f"| {run['arm']}", "0")]
        assert f" {run['total_seconds']:.1f} " in row
        assert f" {run['first_epoch_seconds']:.1f} " in row
        for value in run["final"].values():
            assert f" {value:.4f} " in row


def test_quiet_no_plot_and_zips_on_disk(tmp_path, synthetic_cache, capsys, monkeypatch):
    folders = horse_or_human.get_folders("synthetic", cache_dir=synthetic_cache)
    zips = []
    for folder in (folders.train, folders.validation):
        path = tmp_path / f"{folder.name}.zip"
        with zipfile.ZipFile(path, "w") as archive:
            for name in horse_or_human.CLASS_NAMES:
                for image in sorted((folder / name).glob("*.png"))[:12]:
                    archive.write(image, f"{name}/{image.name}")
        zips.append(str(path))
    output = tmp_path / "out"
    options = ["--data", *zips, *TINY, "--epochs", "1"]
    options += ["--quiet", "--no-plot", "--output", str(output)]
    options += ["--gc-mode", "update", "--conv-only"]
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "home"))
    assert command.main(options) == 0
    printed = capsys.readouterr().out
    assert "Epoch" not in printed
    assert "mean ± sd, n=1" in printed
    assert not (output / "curves.png").exists()
    data = json.loads((output / "results.json").read_text())
    assert data["metadata"]["data"]["source"] == "path"
    assert data["metadata"]["data"]["train_images"] == 24
    assert [run["arm"] for run in data["runs"]] == ["bare", "gc"]
    assert data["metadata"]["options"]["gc_mode"] == "update"
    assert data["metadata"]["options"]["conv_only"] is True


def test_unknown_optimizer_is_refused(capsys):
    with pytest.raises(SystemExit):
        command.parse_args(["--optimizer", "nope"])
    assert "unknown optimizer 'nope'" in capsys.readouterr().err
    assert command.parse_args(["--optimizer", "AdamW"]).optimizer == "adamw"
