"""CPU seconds per training step of the quickstart's three stages, and the step budgets they imply.

``moda quickstart`` budgets training in steps (:data:`moda_core.train.quickstart.QuickstartConfig.max_steps`). Those
counts were chosen as what the earlier 8-minute wall-clock budget reached on an idle 2-core CPU (MODA 12 %, FaCo-Net
6 %, the renderer the rest, about 6.5 minutes after the motion check). This script measures each stage with the
quickstart's settings on one thread, by process CPU time (robust when the machine is busy), validation passes
included, and prints the steps that fit those shares at ``--speedup`` (2 threads over 1; 1.7 assumed).

    python benchmarks/bench_quickstart_steps.py [--sample FOLDER] [--steps 40 40 12]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from moda_core.train.quickstart import SAMPLES_DIR, QuickstartConfig

SHARES_SECONDS = {"moda": 0.12 * 480, "faco": 0.06 * 480, "renderer": 480 - 0.18 * 480 - 30}   # 30 s: motion check


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sample", type=Path, default=None, help="prepared sample of samples/talking.mp4")
    parser.add_argument("--steps", type=int, nargs=3, default=(40, 40, 12), metavar=("MODA", "FACO", "RENDERER"))
    parser.add_argument("--speedup", type=float, default=1.7, help="2-thread over 1-thread speed of a step")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from moda_core.preprocess import prepare_video_sample
    from moda_core.train import (FaCoTrainConfig, LoopConfig, MODATrainConfig, RendererTrainConfig, load_sample,
                                 preset_config, train_faco, train_moda, train_renderer)
    from moda_core.tpe import TPEConfig
    from moda_core.train.quickstart import TPE_JITTER

    work = Path(tempfile.mkdtemp(prefix="bench_quickstart_"))
    sample_dir = args.sample
    if sample_dir is None:
        sample_dir = work / "sample"
        prepare_video_sample(SAMPLES_DIR / "talking.mp4", sample_dir, models_dir=SAMPLES_DIR / "models")
    sample = load_sample(sample_dir, fps=30.0)
    quick = QuickstartConfig()

    def loop(kind: str, steps: int) -> LoopConfig:
        return LoopConfig(max_steps=steps, batch_size=quick.batch_size, val_every=quick.val_every[kind],
                          device="cpu", progress=False)

    stages = {
        "moda": lambda n: train_moda([sample], work / "out", model_config=preset_config("moda", "small"),
                                     loop=loop("moda", n),
                                     config=MODATrainConfig(window=60, hop=10, fps=30.0, lr=1e-3,
                                                            train_feature_encoder=True)),
        "faco": lambda n: train_faco([sample], work / "out", model_config=preset_config("faco", "small"),
                                     loop=loop("faco", n), config=FaCoTrainConfig(window=30, fps=30.0, lr=1e-3)),
        "renderer": lambda n: train_renderer(
            [sample], work / "out", model_config=preset_config("renderer", "small"),
            discriminator_config=preset_config("renderer_discriminator", "small"), loop=loop("renderer", n),
            config=RendererTrainConfig(tpe=TPEConfig(), tpe_jitter=TPE_JITTER, lr=1e-3, perceptual_weight=0.0)),
    }
    print(f"{'stage':10s} {'CPU s/step (1 thread)':>22s} {'share s':>8s} {'steps in share':>15s} {'cap':>6s}")
    for (kind, run), steps in zip(stages.items(), args.steps):
        run(2)                                        # warm-up (first steps, allocations)
        cpu, wall = time.process_time(), time.perf_counter()
        result = run(2 + steps)                       # resumes from step 2
        per_step = (time.process_time() - cpu) / max(result.step - 2, 1)
        fit = int(SHARES_SECONDS[kind] * args.speedup / per_step)
        print(f"{kind:10s} {per_step:22.3f} {SHARES_SECONDS[kind]:8.0f} {fit:15d} {quick.max_steps[kind]:6d}"
              f"   (wall {time.perf_counter() - wall:.1f} s here)")


if __name__ == "__main__":
    main()
