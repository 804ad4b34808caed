"""Cross-validation study on DFD indoor: several arms x folds x seeds trained at once on one GPU.

    python scripts/dfd_cv.py --root DFD_ROOT --out OUT \
        --arm d3net=configs/dfd_d3net.yaml --arm f8=configs/dfd_d3net_f8.yaml \
        --folds 0-4 --seeds 0 [--set train.max_steps=12000] [--deadline-s 420] [--jobs 10]

For every (arm, fold k, seed) it runs ``twohded train --config CONFIG data.root=DFD_ROOT
data.train_split=cv<k>-train data.val_split=cv<k>-val seed=SEED [overrides]`` into
``OUT/runs/<arm>-f<k>-s<seed>`` (up to ``--jobs`` at once; logs in ``OUT/logs``). Runs still
going ``--deadline-s`` seconds after the start are stopped (SIGTERM) and their newest
``last.pt`` is evaluated, with the step it reached recorded. Then every run's ``last.pt`` is
scored on its held-out fold with ``twohded evaluate`` (standard protocol, whole frames),
against the f/8 photo as published and registered (``OUT/eval/<run>/{published,registered}``),
and ``OUT/summary.md`` / ``summary.json`` give mean ± sd over folds and seeds per arm
(:mod:`twohded.crossval`), next to the mean-training-depth reference of the same folds
(``--reference``, computed on the CPU). Folds: :data:`twohded.data.dfd.CV_FOLDS`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from twohded.crossval import markdown_table, run_metrics


def parse_range(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        out += list(range(int(a), int(b or a) + 1))
    return out


def parse_arm(text: str) -> tuple[str, str, list[str]]:
    name, _, rest = text.partition("=")
    config, *overrides = rest.split(",")
    return name, config, overrides


def jobs_of(args) -> list[dict]:
    """Every (arm, fold, seed) training; with ``--final ARM``, also ARM on all 81 frames
    (``trainval``, fold None: the model that would ship, not scored by the cross-validation)."""
    jobs = []
    finals = set(filter(None, (args.final or "").split(",")))
    for arm in args.arm:
        name, config, overrides = parse_arm(arm)
        for seed in parse_range(args.seeds):
            folds = parse_range(args.folds) + ([None] if name in finals else [])
            for k in folds:
                run = f"{name}-f{k}-s{seed}" if k is not None else f"{name}-all-s{seed}"
                split = [f"data.train_split=cv{k}-train", f"data.val_split=cv{k}-val"] if k is not None else [
                    "data.train_split=trainval", "data.val_split=val"]
                cmd = [sys.executable, "-m", "twohded", "train", "--config", config, "--out", str(args.out / "runs" / run),
                       "--no-progress", f"data.root={args.root}", *split, f"seed={seed}", *args.set, *overrides]
                resume = [sys.executable, "-m", "twohded", "train", "--resume", str(args.out / "runs" / run),
                          "--no-progress", *args.set]
                jobs.append({"run": run, "arm": name, "fold": k, "seed": seed, "cmd": cmd, "resume_cmd": resume})
    return jobs


def finished(run_dir: Path) -> bool:
    """Whether a run reached its ``train.max_steps`` (from its saved config and log)."""
    import yaml

    cfg = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    target = (cfg.get("train") or {}).get("max_steps")
    step = reached_step(run_dir)
    return target is not None and step is not None and step >= int(target)


def train_all(jobs: list[dict], out: Path, max_jobs: int, deadline_s: float | None, resume: bool = False) -> dict[str, dict]:
    """Run the trainings, ``max_jobs`` at once; at the deadline send SIGTERM to what still runs
    (the trainer saves ``last.pt`` at that step; killed after 120 s). With ``resume``, runs that
    have a ``last.pt`` but did not reach their ``max_steps`` continue (``twohded train --resume``)."""
    (out / "logs").mkdir(parents=True, exist_ok=True)
    start, pending, running, status = time.time(), list(jobs), {}, {}
    last_report = start
    while pending or running:
        if time.time() - last_report > 30:
            last_report = time.time()
            steps = {run: reached_step(out / "runs" / run) for run in running}
            print(f"t={time.time() - start:.0f}s running {len(running)}: " +
                  " ".join(f"{r}@{s}" for r, s in steps.items()), flush=True)
        while pending and len(running) < max_jobs:
            job = pending.pop(0)
            cmd = job["cmd"]
            run_dir = out / "runs" / job["run"]
            if (run_dir / "last.pt").exists():
                if not resume or finished(run_dir):
                    status[job["run"]] = {"rc": None, "note": "exists, not retrained"}
                    continue
                cmd = job["resume_cmd"]
            elif run_dir.exists() and resume:
                import shutil

                shutil.rmtree(run_dir)  # started but no checkpoint yet: start again
            import shutil

            shutil.rmtree(out / "eval" / job["run"], ignore_errors=True)  # scores of an older checkpoint
            log = open(out / "logs" / f"{job['run']}.txt", "a")
            running[job["run"]] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=worker_env()),
                                   log, time.time())
        for run, (proc, log, t0) in list(running.items()):
            rc = proc.poll()
            late = deadline_s is not None and time.time() - start > deadline_s
            if rc is None and late:
                proc.send_signal(signal.SIGTERM)
                try:
                    rc = proc.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    rc = proc.wait()
                status[run] = {"rc": rc, "note": "stopped at the deadline", "train_s": time.time() - t0}
            elif rc is not None:
                status[run] = {"rc": rc, "note": "finished" if rc == 0 else "failed", "train_s": time.time() - t0}
            if rc is not None:
                log.close()
                del running[run]
        time.sleep(1.0)
    return status


def worker_env() -> dict[str, str]:
    """Environment of the child processes: one BLAS / OpenMP thread each (many run at once)."""
    env = dict(os.environ)
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[key] = "1"
    return env


def reached_step(run_dir: Path) -> int | None:
    """The newest step in a run's log.csv (None without one)."""
    log = run_dir / "log.csv"
    if not log.exists():
        return None
    import csv

    rows = list(csv.DictReader(log.open()))
    steps = [int(float(r["step"])) for r in rows if r.get("step")]
    return max(steps) if steps else None


def run_defocus(run_dir: Path) -> str:
    """The run's input (``data.defocus`` of its saved config: ``real`` f/2.8 or ``none`` f/8)."""
    import yaml

    cfg = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    return (cfg.get("data") or {}).get("defocus") or "real"


def evaluate_all(jobs: list[dict], args) -> None:
    """Score every run's last.pt on its held-out fold, ``args.jobs`` evaluations at once."""
    todo = []
    for job in jobs:
        ckpt = args.out / "runs" / job["run"] / "last.pt"
        if job["fold"] is None or not ckpt.exists():  # the trainval run has no held-out fold
            continue
        defocus = run_defocus(args.out / "runs" / job["run"])
        for target in args.targets.split(","):
            dest = args.out / "eval" / job["run"] / target
            if (dest / "metrics.json").exists():
                continue
            cmd = [sys.executable, "-m", "twohded", "evaluate", "--checkpoint", str(ckpt), "--data", "dfd",
                   "--root", str(args.root), "--split", f"cv{job['fold']}-val", "-O", f"aif_target={target}",
                   "-O", f"defocus={defocus}", "--out", str(dest), "--no-progress"]
            todo.append((cmd, args.out / "logs" / f"eval-{job['run']}-{target}.txt"))
    running = []
    while todo or running:
        while todo and len(running) < args.jobs:
            cmd, log_path = todo.pop(0)
            log = open(log_path, "w")
            running.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=worker_env()), log))
        for proc, log in list(running):
            if proc.poll() is not None:
                log.close()
                running.remove((proc, log))
        time.sleep(0.5)


def reference_rows(args, folds: list[int]) -> list[dict]:
    """The mean training depth of each fold, scored on its held-out scenes (CPU)."""
    from twohded.baselines.trivial import TrivialBaseline, mean_depth
    from twohded.data import DFDIndoor
    from twohded.evaluate import evaluate_model

    rows = []
    for k in folds:
        train = DFDIndoor(args.root, f"cv{k}-train", augment=False)
        val = DFDIndoor(args.root, f"cv{k}-val")
        r = evaluate_model(TrivialBaseline(mean_depth(train)), val, dataset_name="dfd", device="cpu")
        rows.append({"depth": r.depth, "aif": r.aif, "gain": {}})
    return rows


def summarise(jobs: list[dict], status: dict, args) -> str:
    parts, result = [], {"runs": {}, "arms": {}}
    for target in args.targets.split(","):
        arms: dict[str, list[dict]] = {}
        steps: dict[str, list[int]] = {}
        for job in jobs:
            path = args.out / "eval" / job["run"] / target / "metrics.json"
            if not path.exists():
                continue
            m = run_metrics(path)
            arms.setdefault(job["arm"], []).append(m)
            step = reached_step(args.out / "runs" / job["run"])
            steps.setdefault(job["arm"], []).append(step or 0)
            result["runs"].setdefault(job["run"], {})[target] = {"depth": m.get("depth"), "aif": m.get("aif"),
                                                                 "gain": m.get("gain"), "step": step,
                                                                 **status.get(job["run"], {})}
        if target == "published" and args.reference:
            arms["mean training depth"] = reference_rows(args, parse_range(args.folds))
        extra = {a: {"steps": f"{min(s)}-{max(s)}" if s else ""} for a, s in steps.items()}
        parts.append(f"### AiF scored against the f/8 photo {target}\n\n" + markdown_table(arms, extra=extra))
        result["arms"][target] = {a: [{"depth": r.get("depth"), "aif": r.get("aif"), "gain": r.get("gain")} for r in rs]
                                  for a, rs in arms.items()}
    text = "\n\n".join(parts) + "\n"
    (args.out / "summary.md").write_text(text)
    (args.out / "summary.json").write_text(json.dumps(result, indent=1, default=str))
    return text


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, required=True, help="DFD indoor folder")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--arm", action="append", required=True, help="NAME=CONFIG[,key=value,...]")
    p.add_argument("--folds", default="0-4")
    p.add_argument("--seeds", default="0")
    p.add_argument("--set", action="append", default=[], help="override for every run, e.g. train.max_steps=12000")
    p.add_argument("--jobs", type=int, default=10, help="trainings at once")
    p.add_argument("--deadline-s", type=float, default=None, help="stop trainings still running after this many seconds")
    p.add_argument("--eval-only", action="store_true")
    p.add_argument("--resume", action="store_true", help="continue runs that have a last.pt but did not finish")
    p.add_argument("--final", default="", help="ARM[,ARM]: also train these arms on all 81 frames (trainval)")
    p.add_argument("--reference", action="store_true", help="add the mean-training-depth row (CPU)")
    p.add_argument("--targets", default="published,registered", help="AiF targets to score against")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = jobs_of(args)
    status = {} if args.eval_only else train_all(jobs, args.out, args.jobs, args.deadline_s, args.resume)
    (args.out / "status.json").write_text(json.dumps(status, indent=1))
    print("training done:", json.dumps(status), flush=True)
    evaluate_all(jobs, args)
    print("evaluation done", flush=True)
    print(summarise(jobs, status, args))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
