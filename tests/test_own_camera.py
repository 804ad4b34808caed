"""configs/own_camera.yaml then configs/own_camera_ft.yaml, end to end on the CPU (tiny sizes):
synthetic pre-training with a camera file, fine-tuning on a folder of real triplets."""

from __future__ import annotations

from pathlib import Path

import torch

import twohded
from twohded.camera_file import write_camera_file
from twohded.checkpoint import model_from_checkpoint
from twohded.config import load_config
from twohded.data.synthetic import SceneConfig, make_scene
from twohded.io import write_depth_png_mm, write_image
from twohded.optics import get_preset
from twohded.training.trainer import train

from .helpers import REPO_ROOT

CONFIGS = REPO_ROOT / "configs"
TINY = ["train.max_steps=2", "train.batch_size=2", "train.num_workers=0", "train.device=cpu", "train.amp=none",
        "train.progress=false", "train.val_every=1", "train.checkpoint_every=1", "data.size=32"]


def _triplets(root: Path, camera, n: int = 2) -> None:
    """``root/{train,val}/{defocused,rgb,depth}``: scenes defocused by ``camera``."""
    for split, seeds in (("train", range(n)), ("val", range(n, n + 1))):
        for seed in seeds:
            s = make_scene(seed, SceneConfig(height=40, width=48, depth_range_m=(0.7, 6.0)))
            real = twohded.render_defocus(s.aif, s.depth, camera)
            write_image(root / split / "defocused" / f"f{seed}.png", real.clamp(0, 1))
            write_image(root / split / "rgb" / f"f{seed}.png", s.aif)
            write_depth_png_mm(root / split / "depth" / f"f{seed}.png", s.depth[0])


def test_pretrain_with_a_camera_file_then_fine_tune_on_triplets(tmp_path):
    cam_file = write_camera_file(tmp_path / "mycam.yaml", get_preset("dfd_indoor"))
    pre = train(load_config(CONFIGS / "own_camera.yaml", TINY + [
        f"data.preset={cam_file}", "data.options={n: 4, height: 32, width: 32, depth_range_m: [0.7, 6.0]}",
        "data.val_split=null"]), run_dir=tmp_path / "pre", verbose=False)
    assert pre.step == 2 and pre.last_checkpoint.exists()
    saved = (tmp_path / "pre" / "config.yaml").read_text()
    assert str(cam_file) in saved  # the run records which camera rendered its scenes
    root = tmp_path / "triplets"
    _triplets(root, get_preset("dfd_indoor").camera)
    ft = train(load_config(CONFIGS / "own_camera_ft.yaml", TINY + [
        f"data.root={root}", f"model.init_checkpoint={pre.last_checkpoint}", "data.val_options={size: 32}"]),
        run_dir=tmp_path / "ft", verbose=False)
    assert ft.step == 2 and ft.last_checkpoint.exists()
    first = model_from_checkpoint(pre.last_checkpoint).state_dict()
    second = model_from_checkpoint(ft.last_checkpoint).state_dict()
    key = "encoder.features.conv0.weight"
    assert not torch.equal(first[key], second[key])  # fine-tuning moved the weights it started from
