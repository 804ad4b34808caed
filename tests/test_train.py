"""Training on the CPU: the loss goes down, a killed run resumes exactly, bad input is refused clearly.

Tiny runs on the built-in synthetic scenes (32-64 px, a handful of scenes, batch 2).
"""

from __future__ import annotations

import csv
import os
import time
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from twohded.checkpoint import load_checkpoint, model_from_checkpoint
from twohded.cli import main
from twohded.config import ExperimentConfig, ScheduleConfig, dump_config
from twohded.errors import InputError
from twohded.training import KILL_ENV, NonFiniteLossError, train
from twohded.training.ddp import dist_info_from_env
from twohded.training.optim import LRSchedule
from twohded.training.sampler import ShardedEpochSampler

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def tiny(tmp_path: Path, **overrides) -> ExperimentConfig:
    """A run of a few CPU seconds: 2hded-depth, synthetic 32x32 scenes, batch 2."""
    base = {
        "name": "tiny",
        "seed": 3,
        "model.name": "2hded-depth",
        "data.name": "synthetic",
        "data.size": 32,
        "data.preset": "paper",
        "data.defocus": "deferred",
        "data.options": {"n": 4, "height": 32, "width": 32},
        "data.val_options": {"n": 2},
        "optim.name": "adam",
        "optim.lr": 1e-3,
        "optim.betas": [0.5, 0.999],
        "schedule.name": "constant",
        "train.epochs": 1,
        "train.batch_size": 2,
        "train.num_workers": 0,
        "train.device": "cpu",
        "train.progress": False,
        "train.log_every": 1,
        "train.out_dir": str(tmp_path / "runs"),
    }
    base.update(overrides)
    return ExperimentConfig().replace(**base)


def _rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "log.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main(["train", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


# ------------------------------------------------------------------------------------------
# training works
# ------------------------------------------------------------------------------------------


def test_a_few_steps_lower_the_loss(tmp_path):
    # the full two-head model, 4 scenes seen 3 times
    cfg = tiny(tmp_path, **{"model.name": "2hded", "data.size": 64, "data.options": {"n": 4, "height": 64, "width": 64},
                            "train.epochs": 3, "train.val_every": 3, "train.checkpoint_every": 3})
    result = train(cfg, verbose=False)
    losses = [h["loss"] for h in result.history]
    assert len(losses) == 3 and result.step == 6 and result.epoch == 3
    assert losses[-1] < 0.8 * losses[0], losses

    run = result.run_dir
    assert run == tmp_path / "runs" / "tiny"
    assert {p.name for p in run.iterdir()} >= {"config.yaml", "last.pt", "best.pt", "log.csv", "tb"}
    assert any(p.name.startswith("events.out.tfevents") for p in (run / "tb").iterdir())
    assert (run / "config.yaml").read_text() == dump_config(cfg)  # the resolved config
    rows = _rows(run)
    train_rows = [r for r in rows if r["split"] == "train"]
    val_rows = [r for r in rows if r["split"] == "val"]
    assert [int(r["step"]) for r in train_rows] == list(range(1, 7))
    assert {"loss", "depth_l1", "depth_grad", "deblur_charbonnier", "deblur_ssim", "lr"} <= set(train_rows[0])
    assert [int(r["step"]) for r in val_rows] == [6] and float(val_rows[0]["psnr"]) > 0 and float(val_rows[0]["rmse"]) > 0
    assert result.best_metric == "rmse" and result.best_checkpoint == run / "best.pt"
    assert set(result.metrics) >= {"loss", "rmse", "abs_rel", "delta1", "psnr", "ssim"}

    last = load_checkpoint(run / "last.pt")
    assert (last["step"], last["epoch"], last["model_name"]) == (6, 3, "2hded")
    for key in ("optimizer_state", "scheduler_state", "rng_state", "config", "metrics", "trainer_state"):
        assert last[key], key
    model = model_from_checkpoint(run / "best.pt")  # what evaluate / predict load
    out = model(torch.rand(1, 3, 64, 64))
    assert out.depth.shape == (1, 1, 64, 64) and out.aif.shape == (1, 3, 64, 64)


@pytest.mark.parametrize("preload", [False, True], ids=["dataloader", "preload"])
def test_killed_run_resumes_exactly(tmp_path, preload):
    """Kill a run (os._exit) mid-epoch after step 5, resume from its step-4 checkpoint,
    and compare with an uninterrupted run bit for bit (weights, EMA, optimizer); with the
    DataLoader and with the split preloaded on the device (train.preload)."""
    common = {
        "train.preload": preload,
        "data.options": {"n": 6, "height": 32, "width": 32},  # 3 steps per epoch
        "optim.name": "sgd", "optim.lr": 0.02, "optim.momentum": 0.9,
        "schedule.name": "step", "schedule.milestones": [1], "schedule.warmup_epochs": 0.5,
        "train.epochs": 2, "train.ema_decay": 0.9, "train.checkpoint_every": 2, "train.checkpoint_every_steps": 4,
    }
    full = train(tiny(tmp_path, **common, **{"train.out_dir": str(tmp_path / "a")}), verbose=False)

    cfg = tiny(tmp_path, **common, **{"train.out_dir": str(tmp_path / "b")})
    cfg_file = tmp_path / "b.yaml"
    cfg_file.write_text(dump_config(cfg))
    env = {**os.environ, KILL_ENV: "5", "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.run([sys.executable, "-m", "twohded", "train", "--config", str(cfg_file)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 137, proc.stderr
    run = tmp_path / "b" / "tiny"
    killed = load_checkpoint(run / "last.pt")
    assert (killed["step"], killed["epoch"], killed["trainer_state"]["step_in_epoch"]) == (4, 1, 1)
    assert max(int(r["step"]) for r in _rows(run)) == 5  # step 5 was logged, then lost

    resumed = train(resume=run, verbose=False)
    assert resumed.step == full.step == 6
    a = load_checkpoint(full.last_checkpoint)
    b = load_checkpoint(resumed.last_checkpoint)
    for key in ("model_state", "ema_state"):
        assert a[key].keys() == b[key].keys()
        diff = [k for k in a[key] if not torch.equal(a[key][k], b[key][k])]
        assert not diff, f"{key} differs in {len(diff)} tensors, e.g. {diff[:3]}"
    for pa, pb in zip(a["optimizer_state"]["state"].values(), b["optimizer_state"]["state"].values()):
        assert torch.equal(pa["momentum_buffer"], pb["momentum_buffer"])
    assert a["metrics"] == b["metrics"] and [h["loss"] for h in full.history] == [h["loss"] for h in resumed.history]
    steps = [(r["split"], int(r["step"])) for r in _rows(run)]
    assert len(steps) == len(set(steps))  # rows after the checkpoint were dropped, not duplicated
    assert [s for s in steps if s[0] == "train"] == [("train", i) for i in range(1, 7)]


def test_sigterm_saves_and_resumes(tmp_path):
    """SIGTERM mid-run: the step in flight finishes, last.pt is saved at that step, the CLI exits
    143, and --resume finishes the run to the step an uninterrupted run reaches."""
    common = {"data.options": {"n": 6, "height": 32, "width": 32}, "train.epochs": 400, "train.log_every": 1,
              "train.checkpoint_every": 1000, "train.max_steps": 1000}
    cfg = tiny(tmp_path, **common, **{"train.out_dir": str(tmp_path / "t")})
    cfg_file = tmp_path / "t.yaml"
    cfg_file.write_text(dump_config(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "twohded", "train", "--config", str(cfg_file), "--no-progress"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run = tmp_path / "t" / "tiny"
    deadline = time.time() + 240
    while time.time() < deadline and not ((run / "log.csv").exists() and len(_rows(run)) >= 3):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "stopped by SIGTERM" in out and "Traceback" not in err
    saved = load_checkpoint(run / "last.pt")
    logged = max(int(r["step"]) for r in _rows(run) if r["split"] == "train")
    assert 3 <= saved["step"] == logged < 1000
    resumed = train(resume=run, overrides=["train.max_steps=" + str(saved["step"] + 2)], verbose=False)
    assert resumed.step == saved["step"] + 2 and not resumed.stopped


def test_nonfinite_loss_stops_the_run(tmp_path, monkeypatch, capsys):
    from twohded.losses import HybridLoss

    real = HybridLoss.forward

    def poisoned(self, *args, **kwargs):
        out = real(self, *args, **kwargs)
        return type(out)(out.total * float("nan"), {**out.parts, "total": out.total.detach() * float("nan")})

    monkeypatch.setattr(HybridLoss, "forward", poisoned)
    cfg = tiny(tmp_path)
    cfg_file = tmp_path / "nan.yaml"
    cfg_file.write_text(dump_config(cfg))
    rc, out, err = _cli(capsys, "--config", cfg_file)
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("twohded: error: step 1 (epoch 1): the loss is not finite")
    assert "Traceback" not in err and "optim.lr" in err
    assert not (tmp_path / "runs" / "tiny" / "last.pt").exists()  # nothing trained on NaN was saved
    with pytest.raises(NonFiniteLossError):
        train(cfg, run_dir=tmp_path / "again", verbose=False)


# ------------------------------------------------------------------------------------------
# bad input: one line, exit 2, nothing written
# ------------------------------------------------------------------------------------------


def _one_line_error(rc: int, err: str) -> str:
    assert rc == 2, err
    assert err.startswith("twohded: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_bad_config_is_refused(tmp_path, capsys):
    out_dir = tmp_path / "runs"
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"name: bad\ntrain: {{epochs: 1, out_dir: {out_dir}, batch_sise: 2}}\n")
    err = _one_line_error(*_cli(capsys, "--config", bad)[::2])
    assert str(bad) in err and "'train.batch_sise'" in err
    bad.write_text(f"name: bad\ntrain: {{epochs: one, out_dir: {out_dir}}}\n")
    err = _one_line_error(*_cli(capsys, "--config", bad)[::2])
    assert f"{bad}: train.epochs: expected int, got str 'one'" in err
    err = _one_line_error(*_cli(capsys, "--config", CONFIGS / "nyu_paper.yaml", f"train.out_dir={out_dir}")[::2])
    assert "data.root=/path/to/nyu_depth_v2_labeled.mat" in err
    err = _one_line_error(*_cli(capsys, "--config", CONFIGS / "nyu_paper.yaml", "train.epoch=3")[::2])
    assert "override train.epoch=3: unknown key 'train.epoch'" in err
    err = _one_line_error(*_cli(capsys, "--config", tmp_path / "missing.yaml")[::2])
    assert "missing.yaml: config file does not exist" in err
    assert not out_dir.exists()


def test_missing_data_and_unwritable_output_are_refused(tmp_path, capsys):
    out_dir = tmp_path / "runs"
    err = _one_line_error(*_cli(capsys, "--config", CONFIGS / "nyu_paper.yaml", f"data.root={tmp_path / 'no_nyu.mat'}",
                                f"train.out_dir={out_dir}")[::2])
    assert f"data.root: {tmp_path / 'no_nyu.mat'} does not exist" in err
    assert not out_dir.exists()

    cfg = tiny(tmp_path)
    cfg_file = tmp_path / "tiny.yaml"
    cfg_file.write_text(dump_config(cfg))
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    err = _one_line_error(*_cli(capsys, "--config", cfg_file, "--out", blocker / "run")[::2])
    assert "cannot write the run folder" in err and str(blocker / "run") in err
    assert blocker.read_text() == "not a folder"

    run = tmp_path / "taken"
    run.mkdir()
    (run / "last.pt").write_bytes(b"x")
    err = _one_line_error(*_cli(capsys, "--config", cfg_file, "--out", run)[::2])
    assert "already exists" in err and "--resume" in err
    err = _one_line_error(*_cli(capsys, "--resume", tmp_path / "nowhere")[::2])
    assert "does not exist" in err
    err = _one_line_error(*_cli(capsys)[::2])
    assert "--config" in err


# ------------------------------------------------------------------------------------------
# pieces
# ------------------------------------------------------------------------------------------


def test_lr_schedules():
    paper = LRSchedule(ScheduleConfig(name="step", milestones=(300,), gamma=0.1), steps_per_epoch=10, total_steps=5000)
    assert paper(0) == 1.0 and paper(2999) == 1.0 and paper(3000) == pytest.approx(0.1) and paper(4999) == pytest.approx(0.1)
    warm = LRSchedule(ScheduleConfig(name="cosine", warmup_epochs=1, min_lr_ratio=0.1), steps_per_epoch=10, total_steps=110)
    assert warm(0) == pytest.approx(0.1) and warm(9) == pytest.approx(1.0) and warm(10) == pytest.approx(1.0)
    assert warm(60) == pytest.approx(0.55) and warm(110) == pytest.approx(0.1)
    assert LRSchedule(ScheduleConfig(name="constant"), 10, 100)(99) == 1.0


def test_sampler_shards_and_resumes():
    n, batch = 11, 2
    shards = [ShardedEpochSampler(n, batch, world_size=2, rank=r, seed=5) for r in range(2)]
    for s in shards:
        s.set_epoch(3)
    a, b = list(shards[0]), list(shards[1])
    assert len(a) == len(b) == 4 and not set(a) & set(b)  # 2 steps x global batch 4; 3 items dropped
    assert shards[0].steps_per_epoch == 2
    again = ShardedEpochSampler(n, batch, world_size=2, rank=0, seed=5)
    again.set_epoch(3, start_step=1)
    assert list(again) == a[2:]  # a resumed epoch skips exactly the batches already seen
    again.set_epoch(4)
    assert list(again) != a  # a new order each epoch


def test_torchrun_environment():
    info = dist_info_from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    assert (info.rank, info.world_size, info.local_rank, info.distributed, info.is_main) == (1, 2, 1, True, False)
    assert dist_info_from_env({}).world_size == 1
    with pytest.raises(InputError):
        dist_info_from_env({"RANK": "2", "WORLD_SIZE": "2"})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_gloo(tmp_path):
    """torchrun --nproc_per_node 2 on the CPU (gloo): one run folder, global batch 2 x 2."""
    cfg = tiny(tmp_path, **{"data.options": {"n": 8, "height": 32, "width": 32}, "train.epochs": 1})
    cfg_file = tmp_path / "ddp.yaml"
    cfg_file.write_text(dump_config(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
         "--master_port", str(_free_port()), "-m", "twohded", "train", "--config", str(cfg_file)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "2 process(es) x batch 2 = global batch 4, 2 steps/epoch" in proc.stdout
    assert proc.stdout.count("last: ") == 1  # only rank 0 reports
    runs = list((tmp_path / "runs").iterdir())
    assert [r.name for r in runs] == ["tiny"]  # one run folder, written by rank 0
    last = load_checkpoint(runs[0] / "last.pt")
    assert last["step"] == 2 and last["trainer_state"]["global_batch"] == 4
    assert len(last["rng_state"]["ranks"]) == 2


def test_init_checkpoint_fine_tunes_from_weights_and_drops_missing_heads(tmp_path):
    """model.init_checkpoint loads a run's weights; a single-head model takes its head's share."""
    import torch

    from twohded.checkpoint import model_from_checkpoint
    from twohded.config import config_from_dict
    from twohded.errors import InputError
    from twohded.training.trainer import init_from_checkpoint, train

    base = {
        "name": "ft",
        "model": {"name": "2hded", "options": {"decoder_dropout": 0.0}},
        "data": {"name": "synthetic", "size": 32, "options": {"n": 4, "height": 32, "width": 32}, "val_split": None},
        "optim": {"name": "adam", "lr": 1e-3},
        "train": {"epochs": 1, "batch_size": 2, "num_workers": 0, "device": "cpu", "amp": "none"},
    }
    first = train(config_from_dict(base, where="test"), run_dir=tmp_path / "a", progress=False)
    src = model_from_checkpoint(first.last_checkpoint)
    depth_only = {**base, "model": {"name": "2hded-depth", "options": {"decoder_dropout": 0.0}, "init_checkpoint": str(tmp_path / "a")}}
    cfg = config_from_dict(depth_only, where="test")
    from twohded.models import create_model

    model = create_model("2hded-depth", decoder_dropout=0.0)
    note = init_from_checkpoint(model, tmp_path / "a")
    assert "tensors loaded" in note
    for key, value in model.state_dict().items():
        assert torch.equal(value, src.state_dict()[key]), key
    wrong = create_model("dncnn") if "dncnn" in __import__("twohded").list_models() else None
    if wrong is not None:
        with pytest.raises(InputError):
            init_from_checkpoint(wrong, tmp_path / "a")
    assert cfg.model.init_checkpoint == str(tmp_path / "a")


def test_progress_round_trips_through_the_checkpoint_layout():
    """Progress: one object saved as last.pt's step/epoch/metrics + trainer_state, and read back."""
    from twohded.training.progress import Progress

    p = Progress(step=7, epoch=1, metrics={"rmse": 0.5}, step_in_epoch=3, best_value=0.4, time_s=1.5,
                 history=[{"epoch": 1, "step": 4, "loss": 0.9}], last_val_step=4, epoch_sum={"loss": 2.0})
    top, trainer_state = p.split()
    assert top == {"step": 7, "epoch": 1, "metrics": {"rmse": 0.5}}
    assert trainer_state["epoch_sum"] == {"loss": 2.0} and "step" not in trainer_state
    back = Progress.from_checkpoint({**top, "trainer_state": {**trainer_state, "world_size": 1, "batch_size": 2}})
    assert back == p
    back.history.append({"epoch": 2})
    assert len(p.history) == 1  # copies, not shared lists
    assert Progress(step_in_epoch=0, epoch_sum={"loss": 1.0}).state_dict()["epoch_sum"] == {}  # only mid-epoch
    old = Progress.from_checkpoint({"step": "5", "epoch": 2, "metrics": None, "trainer_state": {}})
    assert (old.step, old.epoch, old.metrics, old.step_in_epoch, old.last_val_step) == (5, 2, {}, 0, -1)
