"""CPU seconds per `moda train avatar` step, split by part (process_time, so a busy shared machine does not skew
it): data (drawing the conditions the first time, then the in-memory cache), generator forward, discriminator
forward for the generator loss, generator backward + Adam, discriminator forward/backward + Adam, and the held-out
preview (16 frames rendered and scored, once every ``preview_every`` steps).

    python benchmarks/bench_avatar_step.py SAMPLE_DIR [--presets fast full] [--batch-sizes 4 2] [--steps 5]

Converting to a step budget: an idle 2-core CPU gives about 1.7 effective cores to a 2-thread run, so
30 idle minutes = 1800 * 1.7 / (CPU s per step) steps (preview cost added per ``preview_every`` steps).
"""
from __future__ import annotations

import argparse
import time
from contextlib import contextmanager

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


@contextmanager
def timed(totals: dict, name: str):
    tic = time.process_time()
    yield
    totals[name] = totals.get(name, 0.0) + time.process_time() - tic


def measure(sample, preset: str, batch_size: int, steps: int, keep_d_grads: bool = False) -> dict:
    torch.manual_seed(0)
    generator, settings_tpe = _starting_renderer(AvatarConfig(preset=preset), log=lambda m: None)
    discriminator = MultiscaleDiscriminator(preset_config("renderer_discriminator", preset))
    config = RendererTrainConfig(val_fraction=0.2, tpe=settings_tpe, tpe_jitter=TPE_JITTER,
                                 face_center=CANONICALISATION_FACE_CENTER, lr=1e-3, perceptual_weight=0.0)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sample")
    parser.add_argument("--presets", nargs="+", default=["fast", "full"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[4, 2])
    parser.add_argument("--steps", type=int, default=5, help="timed steps (after one warm-up step)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keep-d-grads", action="store_true",
                        help="also build the discriminator's weight gradients in the generator step (as before)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sample = load_sample(args.sample)
    for preset in args.presets:
        for batch_size in args.batch_sizes:
            parts = measure(sample, preset, batch_size, args.steps, args.keep_d_grads)
            step = sum(v for k, v in parts.items() if not k.startswith(("data, first", "preview")))
            what = "D weight grads in the G step" if args.keep_d_grads else "no D weight grads in the G step"
            print(f"\n{preset} (512 px), batch {batch_size}, {args.threads} threads, {what}: {step:.2f} CPU s per step "
                  f"(cached data) -> {1800 * EFFECTIVE_CORES / step:.0f} steps in 30 idle minutes")
            for k, v in parts.items():
                share = f"{100 * v / step:5.1f} %" if not k.startswith(("data, first", "preview")) else "       "
                print(f"  {k:40s} {v:7.3f} s  {share}")


if __name__ == "__main__":
    main()
