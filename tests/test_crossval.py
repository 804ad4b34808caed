"""Cross-validation summaries (twohded.crossval) and the DFD folds by place."""

import json
import math

import pytest

from twohded.crossval import Spread, markdown_table, run_metrics, summarise
from twohded.data.dfd import CV_FOLDS, N_FOLDS, VAL_SCENES, fold_of, split_keeps
from twohded.errors import InputError


def test_spread_mean_sd_and_t_interval():
    s = Spread.of([1.0, 2.0, 3.0, float("nan"), None])
    assert s.n == 3 and s.mean == pytest.approx(2.0) and s.sd == pytest.approx(1.0)
    assert s.half_width == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)  # t(0.975, 2) = 4.3027
    assert s.text(2) == "2.00 ± 1.00"
    assert Spread.of([0.5]).text() == "0.500" and Spread.of([]).n == 0


def test_summary_table_over_runs(tmp_path):
    runs = [{"depth": {"rmse": r, "abs_rel": 0.1, "delta1": 0.9}, "aif": {"psnr": 27.0}, "gain": {"psnr": 0.5}}
            for r in (0.3, 0.5)]
    assert summarise(runs)["RMSE (m)"].mean == pytest.approx(0.4)
    table = markdown_table({"a": runs, "mean depth": [{"depth": {"rmse": 1.0}}]}, extra={"a": {"steps": "8000"}})
    lines = table.splitlines()
    assert lines[0].startswith("| arm | runs | RMSE (m)") and lines[0].endswith("steps |")
    assert "| a | 2 | 0.400 ± 0.141 |" in lines[2] and "| 8000 |" in lines[2]
    assert lines[3].startswith("| mean depth | 1 | 1.000 |")
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(runs[0]))
    assert run_metrics(path)["depth"]["rmse"] == 0.3
    path.write_text("{broken")
    with pytest.raises(InputError, match="metrics.json"):
        run_metrics(path)


def test_folds_are_contiguous_places_and_cover_the_validation_runs():
    assert len(CV_FOLDS) == N_FOLDS and list(CV_FOLDS) == sorted(CV_FOLDS)
    assert [fold_of(s) for s in CV_FOLDS] == list(range(N_FOLDS))
    assert fold_of("2018-04-26T16:00:00") == 0 and fold_of("2018-04-26T18:00:00") == N_FOLDS - 1
    assert {fold_of(s) for s in VAL_SCENES} == {3, 4}  # the 11 validation scenes stay within two folds
    stem = VAL_SCENES[0]
    k = fold_of(stem)
    assert split_keeps(f"cv{k}-val", stem) and not split_keeps(f"cv{k}-train", stem)
    assert split_keeps(f"cv{(k + 1) % N_FOLDS}-train", stem) and split_keeps("trainval", stem)
    assert split_keeps("val", stem) and not split_keeps("train", stem)
