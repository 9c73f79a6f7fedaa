"""The training driver: config defaults in sync with the schema, clear errors, a tiny real run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from holocat.pipeline.config import validate_config
from holocat.pipeline.train import TRAIN_DEFAULTS, train_star_model, training_sections


def test_train_defaults_equal_the_schema_defaults():
    schema_train = validate_config({"samples": "-"})["segment"]["train"]
    assert schema_train == TRAIN_DEFAULTS


def test_training_sections_cycle_through_sizes_and_damage():
    params = {"n_electrodes": 2, "shape": [32, 48, 48], "section_step": 16}
    images, labels, record = training_sections(params)
    assert len(images) == len(labels) == record["synthetic"]["n_sections"] > 0
    assert record["synthetic"]["seeds"] == [100, 101]
    for img, lab in zip(images, labels, strict=True):
        assert img.shape == lab.shape and img.dtype == np.float32 and lab.max() >= 1


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"synthetic": False}, "no training data"),
        ({"epochs": 0}, r"segment.train.epochs"),
        ({"cycles": []}, r"segment.train.cycles"),
        ({"n_epochs": 3}, r"unknown key\(s\) \['n_epochs'\]"),
    ],
)
def test_bad_training_settings_are_named(params, match):
    with pytest.raises(ValueError, match=match):
        training_sections(params)


def test_cli_train_writes_a_model_folder_and_refuses_to_overwrite(tmp_path):
    from holocat.cli import main

    out = tmp_path / "model"
    params = {
        "train": {
            "n_electrodes": 1,
            "shape": [32, 48, 48],
            "section_step": 8,
            "base_filters": 4,
            "patch_size": 32,
            "epochs": 1,
            "steps_per_epoch": 2,
            "batch_size": 2,
        },
        "device": "cpu",
    }
    assert main(["train", str(out), "--params", json.dumps(params)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert set(config["training"]["heldout_accuracy"]) == {"0.3", "0.5", "0.7"}
    assert config["training"]["data"]["synthetic"]["n_electrodes"] == 1
    assert "holocat train" in config["training"]["command"]
    assert (out / "weights.pt").is_file() and (out / "thresholds.json").is_file()
    assert main(["train", str(out), "--params", json.dumps(params)]) != 0


def test_train_star_model_rejects_an_existing_folder(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "weights.pt").write_bytes(b"user data")
    params = {"n_electrodes": 1, "shape": [32, 48, 48], "base_filters": 4, "patch_size": 32}
    params |= {"epochs": 1, "steps_per_epoch": 1, "batch_size": 2}
    with pytest.raises((ValueError, FileExistsError)):
        train_star_model(tmp_path / "m", params)
    assert (tmp_path / "m" / "weights.pt").read_bytes() == b"user data"
