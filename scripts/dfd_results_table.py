"""Collect the DFD experiments' metrics (scripts/run_dfd_experiments.sh) into one markdown table.

    python scripts/dfd_results_table.py OUT_DIR     # prints the table, writes OUT_DIR/results.json
    python scripts/dfd_results_table.py OUT_DIR --figure docs/figures/dfd_validation.png

Rows come from OUT_DIR/eval/<run>/metrics.json (validation scenes, last checkpoint); training
time from OUT_DIR/logs/timings.txt.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

#: run -> (experiment, what it is)
ROWS = {
    "dfd_real": ("1", "2HDED:NET, real f/2.8 input, full hybrid loss"),
    "dfd_real_depth": ("2", "depth head only (2hded-depth), f/2.8 input"),
    "dfd_real_aif": ("2", "AiF head only (2hded-aif), f/2.8 input"),
    "dfd_f8_depth": ("3", "depth head only, f/8 input (no defocus)"),
    "dfd_sim2real": ("4a", "2HDED:NET trained on rendered defocus only (fitted camera)"),
    "dfd_sim2real_ft": ("4b", "4a fine-tuned on real f/2.8"),
    "dfd_synth_pretrain": ("5a", "2HDED:NET trained on synthetic scenes only"),
    "dfd_synth_ft": ("5b", "5a fine-tuned on real f/2.8"),
    "dfd_real_l1_charb": ("6", "as 1, loss L1 + Charbonnier only"),
}


_VAL = re.compile(r"step (\d+) .*\| val loss \S+(?P<rest>.*)$")


def last_validation(log: Path) -> dict | None:
    """The trainer's last validation line of a run's console log -> {"step", metric: value}.

    The trainer validates with the evaluation code on the same scenes (its numbers equal
    ``twohded evaluate``'s to the printed digits); used when a run has no evaluation folder.
    """
    if not log.exists():
        return None
    found = None
    for line in log.read_text().splitlines():
        m = _VAL.search(line)
        if m:
            values = dict(zip(*[iter(m.group("rest").split())] * 2))
            found = {"step": int(m.group(1)), **{k: float(v) for k, v in values.items() if k != "(best)"}}
    return found


def stack_figures(paths: list[Path], out: Path) -> None:
    """Stack per-scene figure strips vertically into one PNG (written atomically)."""
    from PIL import Image

    from twohded.io import atomic_write

    strips = [Image.open(p).convert("RGB") for p in paths]
    if not strips:
        raise SystemExit(f"no figures to stack in {paths}")
    canvas = Image.new("RGB", (max(s.width for s in strips), sum(s.height for s in strips)), "white")
    y = 0
    for s in strips:
        canvas.paste(s, (0, y))
        y += s.height
    with atomic_write(out) as tmp:
        canvas.save(tmp, format="PNG", optimize=True)


def _fmt(d: dict, key: str, digits: int) -> str:
    v = d.get(key) if d else None
    return "" if v is None else f"{v:.{digits}f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("out", type=Path)
    p.add_argument("--figure", type=Path, default=None, help="stack the first 4 figures of eval/dfd_real into one PNG")
    args = p.parse_args()
    if args.figure:
        stack_figures(sorted((args.out / "eval" / "dfd_real" / "figures").glob("*.png"))[:4], args.figure)
    times = {}
    tfile = args.out / "logs" / "timings.txt"
    if tfile.exists():
        for line in tfile.read_text().splitlines():
            m = re.match(r"(\S+): train rc=(\d+), (\d+) s", line)
            if m:
                times[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    lines = [
        "| exp | run | RMSE (m) | AbsRel | delta1 | PSNR out (dB) | SSIM out | PSNR input (dB) | SSIM input | steps | train s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    table = {}
    input_psnr = input_ssim = ""
    for f in sorted((args.out / "eval").glob("*/metrics.json")):
        i = json.loads(f.read_text()).get("input") or {}
        if i.get("psnr") is not None and "f8" not in f.parent.name:
            input_psnr, input_ssim = _fmt(i, "psnr", 2), _fmt(i, "ssim", 4)
            break
    for run, (exp, what) in ROWS.items():
        f = args.out / "eval" / run / "metrics.json"
        if not f.exists() and (v := last_validation(args.out / "logs" / f"{run}.txt")):
            d = {k: v[k] for k in ("rmse", "abs_rel", "delta1") if k in v}
            a = {k: v[k] for k in ("psnr", "ssim") if k in v}
            table[run] = {"experiment": exp, "what": what, "depth": d or None, "aif": a or None, "step": v["step"],
                          "source": "trainer's last validation (console log)", "train_s": times.get(run, (None, None))[1]}
            lines.append(
                f"| {exp} | `{run}`: {what} | {_fmt(d, 'rmse', 3)} | {_fmt(d, 'abs_rel', 3)} | {_fmt(d, 'delta1', 3)} | "
                f"{_fmt(a, 'psnr', 2)} | {_fmt(a, 'ssim', 4)} | {input_psnr} | {input_ssim} | {v['step']} (†) | "
                f"{times.get(run, (None, ''))[1]} |"
            )
            continue
        if not f.exists():
            rc = times.get(run, (None,))[0]
            lines.append(f"| {exp} | `{run}`: {what} | not run (train rc={rc}) | | | | | | | | |")
            continue
        m = json.loads(f.read_text())
        table[run] = {"experiment": exp, "what": what, "depth": m.get("depth"), "aif": m.get("aif"), "input": m.get("input"),
                      "count": m.get("count"), "step": m["settings"].get("step"), "train_s": times.get(run, (None, None))[1]}
        d, a, i = m.get("depth") or {}, m.get("aif") or {}, m.get("input") or {}
        lines.append(
            f"| {exp} | `{run}`: {what} | {_fmt(d, 'rmse', 3)} | {_fmt(d, 'abs_rel', 3)} | {_fmt(d, 'delta1', 3)} | "
            f"{_fmt(a, 'psnr', 2)} | {_fmt(a, 'ssim', 4)} | {_fmt(i, 'psnr', 2)} | {_fmt(i, 'ssim', 4)} | {m['settings'].get('step')} | "
            f"{times.get(run, (None, ''))[1]} |"
        )
    if any("source" in v for v in table.values()):
        lines += ["", "(†) no evaluation folder: the trainer's validation of the last step (same scenes and metric code; "
                  "its numbers equal `twohded evaluate`'s to the printed digits), from logs/<run>.txt."]
    (args.out / "results.json").write_text(json.dumps(table, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
