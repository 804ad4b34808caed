"""Experiment configs: every shipped file loads; bad keys / types / values are refused clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from twohded.config import (
    DataConfig,
    ExperimentConfig,
    apply_overrides,
    config_from_dict,
    dump_config,
    load_config,
    parse_overrides,
)
from twohded.errors import InputError
from twohded.losses import LossConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ALL = sorted(p for p in CONFIGS.glob("*.yaml"))
ROOT = ["data.root=/data/somewhere"]


def _root_for(path: Path) -> list[str]:
    return [] if path.name.startswith("synthetic") else ROOT


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.stem)
def test_shipped_configs_load(path):
    cfg = load_config(path, _root_for(path))
    assert cfg.name == path.stem  # the run folder is named after the file
    assert isinstance(cfg.loss, LossConfig)
    again = config_from_dict(yaml.safe_load(dump_config(cfg)))
    assert again == cfg


def test_paper_settings():
    cfg = load_config(CONFIGS / "nyu_paper.yaml", ROOT)
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.momentum) == ("sgd", 2e-4, 0.9)
    assert (cfg.schedule.name, cfg.schedule.milestones, cfg.schedule.gamma) == ("step", (300,), 0.1)
    assert (cfg.train.epochs, cfg.train.batch_size) == (500, 4)
    assert (cfg.data.name, cfg.data.size, cfg.data.preset, cfg.data.defocus, cfg.data.flip) == ("nyu", 256, "paper", "deferred", True)
    assert cfg.loss == LossConfig()  # the full hybrid loss, eq. (7)
    adam = load_config(CONFIGS / "nyu_adam.yaml", ROOT)
    assert (adam.optim.name, adam.optim.betas, adam.optim.lr) == ("adam", (0.5, 0.999), 2e-4)
    assert adam.replace(**{"optim.name": "sgd", "optim.betas": [0.9, 0.999], "name": "nyu_paper",
                           "description": cfg.description}) == cfg


def test_table_rows_differ_only_in_loss():
    paper = load_config(CONFIGS / "nyu_paper.yaml", ROOT)
    rows = sorted(CONFIGS.glob("nyu_t2_*.yaml"))
    assert len(rows) == 5
    losses = set()
    for path in rows:
        cfg = load_config(path, ROOT)
        losses.add((cfg.loss.l1, cfg.loss.gradient, cfg.loss.charbonnier, cfg.loss.ssim))
        same = {k: v for k, v in cfg.to_dict().items() if k not in ("name", "description", "loss")}
        assert same == {k: v for k, v in paper.to_dict().items() if k not in ("name", "description", "loss")}
    assert len(losses) == 5
    for flag in range(1, 4):  # gradient, charbonnier, ssim: each on and off in some row
        assert {row[flag] for row in losses} == {True, False}
    assert load_config(CONFIGS / "nyu_t3_depth_only.yaml", ROOT).model.name == "2hded-depth"
    assert load_config(CONFIGS / "nyu_t3_aif_only.yaml", ROOT).model.name == "2hded-aif"


def test_missing_data_root_says_how_to_set_it():
    with pytest.raises(InputError) as err:
        load_config(CONFIGS / "nyu_paper.yaml")
    msg = str(err.value)
    assert "nyu_paper.yaml" in msg and "data.root=/path/to/nyu_depth_v2_labeled.mat" in msg


def test_unknown_key_names_key_and_file(tmp_path):
    path = _write(tmp_path, "bad.yaml", "name: x\ntrain:\n  epochz: 3\n")
    with pytest.raises(InputError) as err:
        load_config(path)
    msg = str(err.value)
    assert str(path) in msg and "'train.epochz'" in msg and "epochs" in msg  # lists the known keys
    path = _write(tmp_path, "top.yaml", "name: x\ntrian: {epochs: 3}\n")
    with pytest.raises(InputError, match=r"top\.yaml: unknown key 'trian'"):
        load_config(path)
    path = _write(tmp_path, "loss.yaml", "loss: {sim: false}\n")
    with pytest.raises(InputError, match=r"unknown key 'loss\.sim'"):
        load_config(path)


@pytest.mark.parametrize(
    "text, key, expected",
    [
        ("train: {epochs: three}", "train.epochs", "expected int, got str 'three'"),
        ("train: {epochs: 2.5}", "train.epochs", "expected int, got float 2.5"),
        ("loss: {ssim: 1}", "loss.ssim", "expected bool, got int 1"),
        ("optim: {betas: [0.9]}", "optim.betas", "expected list of 2 float"),
        ("optim: {name: rmsprop}", "optim.name", "expected one of 'sgd', 'adam', 'adamw'"),
        ("optim: {lr: fast}", "optim.lr", "expected float, got str 'fast'"),
        ("model: {options: [1, 2]}", "model.options", "expected mapping, got list"),
        ("train: 3", "train", "expected mapping, got int 3"),
    ],
)
def test_wrong_type_names_key_type_and_file(tmp_path, text, key, expected):
    path = _write(tmp_path, "typo.yaml", text + "\n")
    with pytest.raises(InputError) as err:
        load_config(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: {key}: "), msg
    assert expected in msg


def test_yaml_floats_and_ints(tmp_path):
    # PyYAML reads 2e-4 (no dot) as a string: accepted where a float is expected
    path = _write(tmp_path, "f.yaml", "optim: {lr: 2e-4, weight_decay: 0}\nschedule: {warmup_epochs: 1}\n")
    cfg = load_config(path)
    assert cfg.optim.lr == 2e-4 and isinstance(cfg.optim.weight_decay, float)
    assert cfg.schedule.warmup_epochs == 1.0


def test_overrides(tmp_path):
    assert parse_overrides(["train.epochs=3", "optim.lr=1e-3", "optim.betas=[0.5, 0.999]", "train.ema_decay=null", "data.root=/x/y.mat"]) == {
        "train.epochs": 3, "optim.lr": "1e-3", "optim.betas": [0.5, 0.999], "train.ema_decay": None, "data.root": "/x/y.mat"}
    path = _write(tmp_path, "o.yaml", "name: o\n")
    cfg = load_config(path, ["train.epochs=3", "optim.lr=1e-3", "optim.betas=[0.5,0.999]", "train.ema_decay=0.99",
                             "model.options.decoder_dropout=0", "data.options.n=5", "data.val_split=null"])
    assert cfg.train.epochs == 3 and cfg.optim.lr == 1e-3 and cfg.optim.betas == (0.5, 0.999)
    assert cfg.train.ema_decay == 0.99 and cfg.model.options == {"decoder_dropout": 0}
    assert cfg.data.options == {"n": 5} and cfg.data.val_split is None
    # a string field keeps the text even when YAML would read something else
    assert load_config(path, ["data.name=folder", "data.root=2024-01-01"]).data.root == "2024-01-01"
    with pytest.raises(InputError, match=r"^override train\.epochz=3: unknown key 'train\.epochz'"):
        load_config(path, ["train.epochz=3"])
    with pytest.raises(InputError, match=r"^override train\.epochs=abc: train\.epochs: expected int"):
        load_config(path, ["train.epochs=abc"])
    with pytest.raises(InputError, match=r"train\.epochs is not a section"):
        load_config(path, ["train.epochs.x=1"])
    with pytest.raises(InputError, match="expected KEY=VALUE"):
        load_config(path, ["train.epochs"])
    assert apply_overrides(cfg, ["train.batch_size=2"]).train.batch_size == 2


def test_base_inheritance(tmp_path):
    _write(tmp_path, "a.yaml", "name: a\noptim: {name: adam, lr: 1.0e-3}\ndata: {options: {n: 4, height: 32}}\n")
    path = _write(tmp_path, "b.yaml", "base: a.yaml\nname: b\noptim: {lr: 5.0e-4}\ndata: {options: {n: 8}}\n")
    cfg = load_config(path)
    assert (cfg.name, cfg.optim.name, cfg.optim.lr) == ("b", "adam", 5e-4)  # merged key by key
    assert cfg.data.options == {"n": 8, "height": 32}
    _write(tmp_path, "c.yaml", "base: d.yaml\n")
    _write(tmp_path, "d.yaml", "base: c.yaml\n")
    with pytest.raises(InputError, match="circular base"):
        load_config(tmp_path / "c.yaml")
    with pytest.raises(InputError, match="missing.yaml does not exist"):
        load_config(_write(tmp_path, "e.yaml", "base: missing.yaml\n"))
    # a bad key in a base file names the base file
    bad_base = _write(tmp_path, "f.yaml", "train: {epoks: 1}\n")
    with pytest.raises(InputError, match=str(bad_base)):
        load_config(_write(tmp_path, "g.yaml", "base: f.yaml\n"))


def test_unreadable_files(tmp_path):
    with pytest.raises(InputError, match="config file does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(InputError, match=r"not valid YAML \(line"):
        load_config(_write(tmp_path, "broken.yaml", "train: [1\n"))
    with pytest.raises(InputError, match="must be a mapping"):
        load_config(_write(tmp_path, "list.yaml", "- 1\n- 2\n"))


@pytest.mark.parametrize(
    "override, match",
    [
        ("optim.lr=0", "optim.lr: must be > 0"),
        ("model.name=resnet", "unknown model 'resnet'"),
        ("data.name=kitti", "unknown dataset 'kitti'"),
        ("data.preset=pinhole", "unknown preset 'pinhole'"),
        ("data.size=big", "data.size: expected N or 'WIDTHxHEIGHT'"),
        ("train.batch_size=0", "train.batch_size: must be >= 1"),
        ("train.device=tpu", "train.device: expected auto, cpu, cuda or cuda:N"),
        ("train.ema_decay=1.5", "train.ema_decay: must be in"),
        ("schedule.milestones=[300,100]", "schedule.milestones: must be increasing"),
        ("name=a/b", "name: must be a plain folder name"),
    ],
)
def test_values_that_make_no_sense(tmp_path, override, match):
    path = _write(tmp_path, "v.yaml", "name: v\n")
    with pytest.raises(InputError, match=match):
        load_config(path, [override])


def test_defaults_and_round_trip():
    cfg = ExperimentConfig()
    assert cfg.data == DataConfig() and cfg.train.amp == "auto"
    data = cfg.to_dict()
    assert data["optim"]["betas"] == [0.9, 0.999]  # plain lists, YAML-friendly
    assert config_from_dict(data) == cfg
    with pytest.raises(InputError, match="unknown key 'bogus'"):
        config_from_dict({**data, "bogus": 1})
