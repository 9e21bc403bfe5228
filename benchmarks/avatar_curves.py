"""Training curves of `moda train avatar`: from scratch vs fine-tuned from another person's renderer.

Runs (or reads, when already finished) three avatar trainings with :func:`moda_core.train.train_avatar`:

    scratch    TARGET from scratch
    pretrain   OTHER from scratch (the other person's renderer)
    finetune   TARGET, ``init`` = pretrain/renderer.safetensors

then prints both held-out curves (PSNR/SSIM every ``--preview-every`` steps, 16 held-out frames), the steps the
fine-tune needs to reach the scratch run's final PSNR, and writes OUT/curves.csv and OUT/curves.png.

    python benchmarks/avatar_curves.py --target SAMPLE_OR_VIDEO --other SAMPLE_OR_VIDEO --out DIR \
        --preset fast --steps 300 --pretrain-steps 300 --preview-every 20
    python benchmarks/avatar_curves.py ... --only scratch     # one run (to run them in parallel processes)

Steps are the budget (the curves do not depend on the machine); wall time is printed but means little on a
shared CPU.
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path


def run(name: str, source: Path, out: Path, args, init: Path | None = None, lr: float | None = None) -> dict:
    import torch

    from moda_core.train.avatar import AvatarConfig, train_avatar, write_png

    torch.set_num_threads(args.threads)
    steps = args.pretrain_steps if name == "pretrain" else args.steps
    config = AvatarConfig(steps=steps, init=init, preset=args.preset, seed=args.seed, batch_size=args.batch_size,
                          preview_every=args.preview_every, lr=lr, perceptual=False if args.no_perceptual else None,
                          checkpoint_every=max(args.preview_every, 50), device="cpu")
    stop_file = out / name / "STOP"           # touch it to stop after the current step (state saved, resumable)
    result = train_avatar(source, out / name, config, log=lambda m: print(f"[{name}] {m}", flush=True),
                          should_stop=stop_file.exists,
                          on_preview=lambda step, image: write_png(out / name / "preview_latest.png", image),
                          progress=lambda s, t, l: print(f"[{name}] step {s}/{t} " + " ".join(
                              f"{k}={v:.3f}" for k, v in l.items()), flush=True) if s % 10 == 0 else None)
    return result.report


def report_of(out: Path, name: str) -> dict | None:
    """report.json of a finished run; of a stopped one, its curve so far (train/curve.json, last held-out point)."""
    path = out / name / "report.json"
    if path.is_file():
        return json.loads(path.read_text())
    curve_path = out / name / "train" / "curve.json"
    if not curve_path.is_file() or not json.loads(curve_path.read_text()):
        return None
    curve = json.loads(curve_path.read_text())
    run = json.loads((out / name / "train" / "avatar_run.json").read_text())
    return {"steps": curve[-1]["step"], "lr": run["lr"], "held_out_frames": "16 curve", "psnr": curve[-1]["psnr"],
            "ssim": curve[-1]["ssim"], "sharpness": float("nan"), "curve": curve}


def pretrained(out: Path) -> Path:
    """The pretrain run's renderer: the finished file, else the last saved state of a stopped run."""
    done = out / "pretrain" / "renderer.safetensors"
    return done if done.is_file() else out / "pretrain" / "train" / "runs" / "renderer" / "last" / "renderer.safetensors"


def steps_to_reach(curve: list[dict], psnr: float) -> int | None:
    return next((p["step"] for p in curve if p["psnr"] >= psnr), None)


def summarise(out: Path) -> None:
    scratch, finetune = report_of(out, "scratch"), report_of(out, "finetune")
    rows = []
    for name, report in (("scratch", scratch), ("finetune", finetune)):
        if report is None:
            print(f"{name}: no report yet in {out / name}")
            continue
        print(f"{name}: {report['steps']} steps, lr {report['lr']:g}, held-out ({report['held_out_frames']} "
              f"frames) PSNR {report['psnr']:.2f} dB, SSIM {report['ssim']:.4f}, sharpness {report['sharpness']:.3f}")
        print("  step  psnr   ssim")
        for p in report["curve"]:
            print(f"  {p['step']:4d}  {p['psnr']:.2f}  {p['ssim']:.4f}")
            rows.append({"run": name, "step": p["step"], "psnr": p["psnr"], "ssim": p["ssim"]})
    if scratch and finetune:
        target = scratch["curve"][-1]["psnr"]
        reached = steps_to_reach(finetune["curve"], target)
        print(f"scratch final curve PSNR {target:.2f} dB after {scratch['curve'][-1]['step']} steps; fine-tune "
              f"reaches it at step {reached if reached is not None else 'never (within its run)'}"
              + (f" ({reached / scratch['curve'][-1]['step']:.2f} of the scratch steps)" if reached else ""))
    if not rows:
        return
    with open(out / "curves.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["run", "step", "psnr", "ssim"])
        writer.writeheader()
        writer.writerows(rows)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"wrote {out / 'curves.csv'} (no matplotlib: no plot)")
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name in ("scratch", "finetune"):
        pts = [r for r in rows if r["run"] == name]
        for ax, key in zip(axes, ("psnr", "ssim")):
            ax.plot([r["step"] for r in pts], [r[key] for r in pts], marker=".", label=name)
            ax.set_xlabel("step")
            ax.set_ylabel(key)
            ax.grid(True)
            ax.legend()
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=80)
    print(f"wrote {out / 'curves.csv'}, {out / 'curves.png'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", type=Path, required=True, help="the person's clip or prepared sample")
    parser.add_argument("--other", type=Path, help="another person's clip or sample (pretraining)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--steps", type=int, default=300, help="steps of the scratch and fine-tune runs")
    parser.add_argument("--pretrain-steps", type=int, default=300)
    parser.add_argument("--preview-every", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=None, help="scratch lr (default: AvatarConfig's)")
    parser.add_argument("--finetune-lr", type=float, default=None, help="fine-tune lr (default: AvatarConfig's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-perceptual", action="store_true")
    parser.add_argument("--only", choices=["scratch", "pretrain", "finetune", "summary"], default=None)
    args = parser.parse_args()
    out = args.out
    parts = [args.only] if args.only else ["scratch", "pretrain", "finetune", "summary"]
    if "scratch" in parts:
        run("scratch", args.target, out, args, lr=args.lr)
    if "pretrain" in parts:
        run("pretrain", args.other, out, args, lr=args.lr)
    if "finetune" in parts:
        run("finetune", args.target, out, args, init=pretrained(out), lr=args.finetune_lr)
    summarise(out)


if __name__ == "__main__":
    main()
