"""CPU seconds per `moda train avatar` step, split by part (process_time, so a busy shared machine does not skew
it): data (drawing the conditions the first time, then the in-memory cache), generator forward, discriminator
forward for the generator loss, generator backward + Adam, discriminator forward/backward + Adam, and the held-out
preview (16 frames rendered and scored, once every ``preview_every`` steps).

    python benchmarks/bench_avatar_step.py SAMPLE_DIR [--presets fast full] [--batch-sizes 4 2] [--steps 5]
    python benchmarks/bench_avatar_step.py SAMPLE_DIR --compare-discriminators [--presets fast] [--batch-sizes 4]

``--compare-discriminators``: whole ``RendererTask.train_step`` calls with discriminator variants (the fast
preset's before 2026-12-03: ndf 32, 3 layers, 2 scales at 512 px; one scale; ndf 16; on a 256- or 128-px
downscale; combinations; none: GAN and feature-matching weights 0; the preset's own when it is none of these),
interleaved step by step on the same batches, as CPU s per step and the ratio to the first variant.

Converting to a step budget: an idle 2-core CPU gives about 1.7 effective cores to a 2-thread run, so
30 idle minutes = 1800 * 1.7 / (CPU s per step) steps (preview cost added per ``preview_every`` steps).
"""
from __future__ import annotations

import argparse
import copy
import time
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import torch

from moda_core.geometry import CANONICALISATION_FACE_CENTER
from moda_core.metrics import psnr, ssim
from moda_core.models.discriminators import MultiscaleDiscriminator
from moda_core.train.avatar import TPE_JITTER, AvatarConfig, _render_frames, _starting_renderer
from moda_core.train.datasets import load_sample
from moda_core.train.losses import feature_matching_loss, lsgan_loss
from moda_core.train.presets import preset_config
from moda_core.train.renderer_trainer import RendererTask, RendererTrainConfig

EFFECTIVE_CORES = 1.7
FAST_BEFORE = {"ndf": 32, "n_layers": 3, "num_D": 2, "downscale": 1}     # the fast preset's D until 2026-12-03
DISCRIMINATOR_VARIANTS = {             # label -> DiscriminatorConfig fields over FAST_BEFORE (None: no D)
    "ndf 32, 3 layers, 2 scales (before)": {},
    "1 scale": {"num_D": 1},
    "ndf 16": {"ndf": 16},
    "256-px downscale": {"downscale": 2},
    "256-px downscale, 1 scale": {"downscale": 2, "num_D": 1},
    "ndf 16, 256-px downscale": {"ndf": 16, "downscale": 2},
    "128-px downscale": {"downscale": 4},
    "no D (GAN and FM weights 0)": None,
}


@contextmanager
def timed(totals: dict, name: str):
    tic = time.process_time()
    yield
    totals[name] = totals.get(name, 0.0) + time.process_time() - tic


def measure(sample, preset: str, batch_size: int, steps: int, keep_d_grads: bool = False,
            models_dir: str | None = None) -> dict:
    torch.manual_seed(0)
    generator, settings_tpe = _starting_renderer(AvatarConfig(preset=preset), log=lambda m: None)
    discriminator = MultiscaleDiscriminator(preset_config("renderer_discriminator", preset))
    config = RendererTrainConfig(val_fraction=0.2, tpe=settings_tpe, tpe_jitter=TPE_JITTER,
                                 face_center=CANONICALISATION_FACE_CENTER, lr=1e-3, perceptual_weight=0.0,
                                 models_dir=models_dir)
    task = RendererTask(generator, discriminator, [sample], config)
    task.to(torch.device("cpu"))
    rng = np.random.default_rng(0)
    totals: dict[str, float] = {}
    count = batch_size * (steps + 1)
    drawn = rng.permutation(len(task.train_set))[:count] if len(task.train_set) >= count else \
        rng.integers(0, len(task.train_set), count)
    batches = [drawn[i * batch_size:(i + 1) * batch_size] for i in range(steps + 1)]
    discriminator_weights = list(task.networks["renderer_discriminator"].parameters())
    for step, items in enumerate(batches):
        with timed(totals, "data, first draw"):
            batch = torch.utils.data.default_collate([task.train_set[int(i)] for i in items])
        with timed(totals, "data, cached"):
            batch = torch.utils.data.default_collate([task.train_set[int(i)] for i in items])
        batch = task.batch_to_device(batch)
        parts: dict[str, float] = {}
        x, real = batch["input"], batch["target"]
        for param in discriminator_weights:           # as RendererTask.train_step (unless keep_d_grads)
            param.requires_grad_(keep_d_grads)
        with timed(parts, "G forward"):
            fake = task.networks["renderer"](x)
        with timed(parts, "D forward (G loss)"):
            fake_out, real_out = task._discriminate(x, fake, real)
            terms = task.reconstruction_terms(fake, batch)
            terms["gan"] = lsgan_loss(fake_out, True)
            terms["fm"] = feature_matching_loss(fake_out, real_out)
            g_loss = 50 * terms["color"] + 100 * terms["mouth"] + terms["gan"] + terms["fm"]
        with timed(parts, "G+D backward, G Adam"):
            task.optimise("renderer", g_loss)
        for param in discriminator_weights:
            param.requires_grad_(True)
        with timed(parts, "D step (fwd+bwd+Adam)"):
            fake_out, real_out = task._discriminate(x, fake.detach(), real)
            d_loss = 0.5 * (lsgan_loss(real_out, True) + lsgan_loss(fake_out, False))
            task.optimise("renderer_discriminator", d_loss)
        if step == 0:
            continue                      # warm-up
        for k, v in parts.items():
            totals[k] = totals.get(k, 0.0) + v
    per_step = {k: v / steps for k, v in totals.items() if not k.startswith("data")}
    per_step["data, first draw"] = totals["data, first draw"] / (steps + 1)
    per_step["data, cached"] = totals["data, cached"] / (steps + 1)
    held = task.val_set.datasets[0]
    items = sorted(set(np.linspace(0, len(held) - 1, min(16, len(held))).round().astype(int).tolist()))
    tic = time.process_time()
    renders, reals = _render_frames(task.networks["renderer"], held, items)
    psnr(renders, reals), ssim(renders, reals)
    per_step["preview (16 held-out frames), per call"] = time.process_time() - tic
    return per_step


def compare_discriminators(sample, preset: str, batch_size: int, steps: int, models_dir: str | None) -> dict:
    """CPU s per whole train step for each of DISCRIMINATOR_VARIANTS (plus the preset's own D)."""
    torch.manual_seed(0)
    generator, settings_tpe = _starting_renderer(AvatarConfig(preset=preset), log=lambda m: None)
    preset_d = preset_config("renderer_discriminator", preset)
    base = replace(preset_d, **FAST_BEFORE)
    variants = {label: None if fields is None else replace(base, **fields)
                for label, fields in DISCRIMINATOR_VARIANTS.items()}
    if preset_d not in variants.values():
        variants[f"preset {preset!r}: ndf {preset_d.ndf}, {preset_d.n_layers} layers, {preset_d.num_D} scales, "
                 f"downscale {preset_d.downscale}"] = preset_d
    config = RendererTrainConfig(val_fraction=0.2, tpe=settings_tpe, tpe_jitter=TPE_JITTER,
                                 face_center=CANONICALISATION_FACE_CENTER, lr=1e-3, perceptual_weight=0.0,
                                 models_dir=models_dir)
    tasks = {}
    for label, d_config in variants.items():
        cfg = config if d_config is not None else replace(config, gan_weight=0.0, feature_matching_weight=0.0)
        task = RendererTask(copy.deepcopy(generator), MultiscaleDiscriminator(d_config or base), [sample], cfg)
        task.to(torch.device("cpu"))
        tasks[label] = task
    train_set = next(iter(tasks.values())).train_set
    rng = np.random.default_rng(0)
    drawn = rng.integers(0, len(train_set), batch_size * (steps + 1))
    totals = dict.fromkeys(tasks, 0.0)
    for step in range(steps + 1):
        items = drawn[step * batch_size:(step + 1) * batch_size]
        batch = torch.utils.data.default_collate([train_set[int(i)] for i in items])
        for label, task in tasks.items():                  # interleaved: machine load drifts hit all alike
            torch.manual_seed(step)
            tic = time.process_time()
            task.train_step(task.batch_to_device(batch))
            if step:                                       # step 0: warm-up
                totals[label] += time.process_time() - tic
    return {label: total / steps for label, total in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sample")
    parser.add_argument("--presets", nargs="+", default=["fast", "full"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[4, 2])
    parser.add_argument("--steps", type=int, default=5, help="timed steps (after one warm-up step)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keep-d-grads", action="store_true",
                        help="also build the discriminator's weight gradients in the generator step (as before)")
    parser.add_argument("--compare-discriminators", action="store_true",
                        help="whole train steps with discriminator variants instead of the split by part")
    parser.add_argument("--models", default=None, help="MediaPipe models folder (warped-reference renderers)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sample = load_sample(args.sample)
    if args.compare_discriminators:
        for preset in args.presets:
            for batch_size in args.batch_sizes:
                costs = compare_discriminators(sample, preset, batch_size, args.steps, args.models)
                first = costs[next(k for k in costs if k.startswith("ndf 32"))]
                print(f"\n{preset}, batch {batch_size}, {args.threads} threads, {args.steps} steps each (interleaved):"
                      f" CPU s per train step, ratio to the fast D before")
                for label, cost in costs.items():
                    print(f"  {label:60s} {cost:7.2f} s  {cost / first:5.2f}x")
        return
    for preset in args.presets:
        for batch_size in args.batch_sizes:
            parts = measure(sample, preset, batch_size, args.steps, args.keep_d_grads, args.models)
            step = sum(v for k, v in parts.items() if not k.startswith(("data, first", "preview")))
            what = "D weight grads in the G step" if args.keep_d_grads else "no D weight grads in the G step"
            print(f"\n{preset} (512 px), batch {batch_size}, {args.threads} threads, {what}: {step:.2f} CPU s per step "
                  f"(cached data) -> {1800 * EFFECTIVE_CORES / step:.0f} steps in 30 idle minutes")
            for k, v in parts.items():
                share = f"{100 * v / step:5.1f} %" if not k.startswith(("data, first", "preview")) else "       "
                print(f"  {k:40s} {v:7.3f} s  {share}")


if __name__ == "__main__":
    main()
