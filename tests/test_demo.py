"""The demo, shortened (--quick): every stage runs and the report and its files are written."""

import json

from twohded.cli import main


def test_quick_demo_writes_report(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--device", "cpu"]) == 0
    report = (out / "report.md").read_text()
    assert "| 2HDED:NET (this run) |" in report and "mean training depth" in report
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["beats_baselines"]) == {"depth_rmse", "depth_abs_rel", "aif_psnr"}
    assert summary["model"]["depth"]["rmse"] > 0 and summary["baselines"]["input_as_deblurred"]["psnr"] > 0
    assert (out / "train" / "best.pt").exists() and (out / "train" / "log.csv").exists()
    assert list((out / "eval" / "figures").glob("*.png"))
    assert len(list((out / "predict").glob("*_depth.npy"))) == 1
    # a second run refuses to overwrite a finished demo
    assert main(["demo", "--quick", "--out", str(out), "--device", "cpu"]) == 2
    assert "not empty" in capsys.readouterr().err


def test_demo_recipe_configures_what_the_report_describes():
    """The CPU recipe: mean-depth bias, no dropout, MSE losses, fresh scenes; quick uses it too."""
    from twohded.demo import DemoSettings, demo_config

    for settings in (DemoSettings.cpu(), DemoSettings.gpu(), DemoSettings.quick()):
        cfg = demo_config(settings, "cpu", mean_depth_m=3.25)
        assert cfg.model.options == {"decoder_dropout": 0.0, "depth_bias_m": 3.25}
        assert cfg.loss.depth_mse and cfg.loss.mse and not cfg.loss.l1 and not cfg.loss.ssim
    cpu = DemoSettings.cpu()
    assert cpu.epochs * (cpu.n_train // cpu.batch_size) == 336  # the step count the report gives
