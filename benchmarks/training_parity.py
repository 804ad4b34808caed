"""Does the fast training setting reach the paper setting's validation accuracy? (issue 7)

    python benchmarks/training_parity.py --out DIR                       # 3 seeds each, on a GPU
    python benchmarks/training_parity.py --out DIR --seeds 0,1,2,3 --jobs 4
    python benchmarks/training_parity.py --quick --out /tmp/parity       # smoke test on a CPU (seconds)

Trains ``configs/speed/parity_paper.yaml`` (fp32 eager, SGD lr 2e-4, batch 4, DataLoader with
rendering every step) and ``configs/speed/parity_fast.yaml`` (bf16, channels-last, preloaded
split, CUDA-graph step, batch 64, lr scaled linearly with a warm-up epoch) for the same epochs
on the same synthetic scenes, once per seed (the seed sets the weights, the scenes and the
order, the same for both settings), each as its own ``twohded train`` process (``--jobs`` at
once), and compares the last validation metrics.

"Within noise", per metric: a paired comparison over seeds. The difference fast - paper of
each seed; its mean must lie within the two-sided 95 % t interval of zero,
``|mean| <= t(0.975, n - 1) * sd / sqrt(n)`` (n seeds). The seed-to-seed spread of each
setting is printed too. Writes ``parity.json`` and ``parity.md`` (the table) in ``--out``;
each run's folder and console log are in ``--out/runs``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"paper": ROOT / "configs/speed/parity_paper.yaml", "fast": ROOT / "configs/speed/parity_fast.yaml"}
METRICS = (("rmse", "min"), ("abs_rel", "min"), ("delta1", "max"), ("psnr", "max"), ("ssim", "max"))
#: two-sided 95 % Student t quantiles by degrees of freedom
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}
#: --quick: tiny scenes on the CPU, one epoch (a smoke test of the script, not a measurement)
QUICK = ["data.size=32", "data.options.n=16", "data.options.height=32", "data.options.width=32", "data.val_options.n=8",
         "train.epochs=1", "train.val_every=1", "train.checkpoint_every=1", "train.batch_size=4", "train.num_workers=0",
         "train.device=cpu", "train.amp=none", "schedule.milestones=[1]", "schedule.warmup_epochs=0"]


def last_val(log_csv: Path) -> dict[str, float]:
    """The last ``split == val`` row of a run's log.csv, as floats."""
    row = None
    with open(log_csv, newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            if r.get("split") == "val":
                row = r
    if row is None:
        raise RuntimeError(f"{log_csv}: no validation row")
    return {k: float(v) for k, v in row.items() if v not in ("", None) and k != "split"}


def run_one(setting: str, seed: int, out: Path, extra: list[str]) -> dict:
    run_dir = out / "runs" / f"{setting}_seed{seed}"
    log = out / "runs" / f"{setting}_seed{seed}.log"
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "twohded", "train", "--config", str(SETTINGS[setting]), "--out", str(run_dir),
           "--no-progress", f"seed={seed}", *extra]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    t0 = time.perf_counter()
    with open(log, "w", encoding="utf-8") as fh:
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT).returncode
    wall = time.perf_counter() - t0
    row = {"setting": setting, "seed": seed, "rc": rc, "wall_s": wall, "run_dir": str(run_dir), "log": str(log)}
    if rc == 0:
        row["val"] = last_val(run_dir / "log.csv")
        notes = [line.strip() for line in log.read_text(encoding="utf-8").splitlines()
                 if "train.cuda_graphs" in line or "train.preload" in line]
        row["notes"] = notes
    return row


def compare(rows: list[dict], seeds: list[int]) -> list[dict]:
    by = {(r["setting"], r["seed"]): r for r in rows if r["rc"] == 0}
    paired = [s for s in seeds if ("paper", s) in by and ("fast", s) in by]
    out = []
    for name, better in METRICS:
        p = [by[("paper", s)]["val"][name] for s in paired]
        f = [by[("fast", s)]["val"][name] for s in paired]
        d = [b - a for a, b in zip(p, f)]
        n = len(d)
        row = {"metric": name, "better": better, "seeds": n,
               "paper_mean": statistics.fmean(p) if p else None, "paper_sd": statistics.stdev(p) if n > 1 else None,
               "fast_mean": statistics.fmean(f) if f else None, "fast_sd": statistics.stdev(f) if n > 1 else None,
               "diff_mean": statistics.fmean(d) if d else None, "diff_sd": statistics.stdev(d) if n > 1 else None}
        if n > 1:
            half = T975.get(n - 1, 1.96) * row["diff_sd"] / math.sqrt(n)
            row["ci_half"] = half
            row["within_noise"] = abs(row["diff_mean"]) <= half
        else:
            row["ci_half"] = None
            row["within_noise"] = None
        out.append(row)
    return out


def fmt(x, digits: int = 4) -> str:
    return "-" if x is None else (f"{x:.{digits}g}" if isinstance(x, float) else str(x))


def table(rows: list[dict], comparison: list[dict]) -> str:
    lines = ["| setting | seed | wall s | " + " | ".join(m for m, _ in METRICS) + " |", "|---|---|---|" + "---|" * len(METRICS)]
    for r in sorted(rows, key=lambda r: (r["setting"], r["seed"])):
        vals = " | ".join(fmt(r.get("val", {}).get(m)) for m, _ in METRICS) if r["rc"] == 0 else f"FAILED (exit {r['rc']}, {r['log']})"
        lines.append(f"| {r['setting']} | {r['seed']} | {r['wall_s']:.0f} | {vals} |")
    lines += ["", "| metric | paper mean (sd) | fast mean (sd) | fast - paper, mean (sd) | 95 % t half-width | within noise |",
              "|---|---|---|---|---|---|"]
    for c in comparison:
        verdict = {True: "yes", False: "NO", None: "-"}[c["within_noise"]]
        lines.append(f"| {c['metric']} | {fmt(c['paper_mean'])} ({fmt(c['paper_sd'], 2)}) | {fmt(c['fast_mean'])} "
                     f"({fmt(c['fast_sd'], 2)}) | {fmt(c['diff_mean'], 3)} ({fmt(c['diff_sd'], 2)}) | {fmt(c['ci_half'], 3)} | {verdict} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    p.add_argument("--jobs", type=int, default=3, help="runs at once (default 3)")
    p.add_argument("--quick", action="store_true", help="tiny CPU smoke test of the script (not a measurement)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides for both settings")
    a = p.parse_args(argv)
    seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
    extra = (QUICK if a.quick else []) + list(a.overrides)
    a.out.mkdir(parents=True, exist_ok=True)
    jobs = [(s, seed) for seed in seeds for s in ("paper", "fast")]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, a.jobs)) as pool:
        rows = list(pool.map(lambda j: run_one(j[0], j[1], a.out, extra), jobs))
    comparison = compare(rows, seeds)
    text = table(rows, comparison)
    print(text)
    result = {"seeds": seeds, "overrides": extra, "wall_s": time.perf_counter() - t0, "runs": rows, "comparison": comparison,
              "settings": {k: str(v.relative_to(ROOT)) for k, v in SETTINGS.items()}}
    (a.out / "parity.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    (a.out / "parity.md").write_text(text + "\n", encoding="utf-8")
    failed = [r for r in rows if r["rc"] != 0]
    for r in failed:
        print(f"training_parity: {r['setting']} seed {r['seed']} failed (exit {r['rc']}); see {r['log']}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
