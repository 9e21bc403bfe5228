"""DistributedDataParallel smoke test: 2 CPU processes (gloo) train the tiny renderer and MODA in sync."""
from __future__ import annotations

import os
import socket
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from test_train_common import sample_dir  # noqa: F401  (fixture)

STEPS = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, sample_folder: str, out: str) -> None:
    """What `torchrun` gives each process: RANK / LOCAL_RANK / WORLD_SIZE and a rendezvous address."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")                  # the offline VGG19 warning, once per process
    from moda_core.models.discriminators import DiscriminatorConfig, MultiscaleDiscriminator
    from moda_core.models.moda import MODAConfig, MODANet
    from moda_core.models.renderer import RendererConfig, RenderGenerator
    from moda_core.train import (LoopConfig, MODATask, MODATrainConfig, RendererTask, RendererTrainConfig,
                                 load_sample, run_training)

    dist.init_process_group("gloo")                  # kept across both runs; the loop reuses it
    sample = load_sample(sample_folder)
    torch.manual_seed(rank)                          # different initial weights: DDP must broadcast rank 0's
    tasks = [RendererTask(RenderGenerator(RendererConfig.tiny()),
                          MultiscaleDiscriminator(DiscriminatorConfig(ndf=4, n_layers=2, num_D=2)), [sample],
                          RendererTrainConfig(perceptual_weight=0.0)),
             MODATask(MODANet(MODAConfig.tiny()), [sample], MODATrainConfig(window=20, hop=5))]
    results = {}
    for task in tasks:
        result = run_training(task, out, LoopConfig(max_steps=STEPS, batch_size=2, progress=False))
        results[task.name] = {"step": result.step,
                              "params": {kind: torch.cat([p.detach().flatten() for p in net.parameters()])
                                         for kind, net in task.networks.items()}}
    torch.save(results, Path(out) / f"rank{rank}.pt")
    dist.destroy_process_group()


def test_two_process_gloo_training_stays_in_sync(sample_dir, tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(sample_dir), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for name, kinds in (("renderer", ("renderer", "renderer_discriminator")), ("moda", ("moda",))):
        assert ranks[0][name]["step"] == ranks[1][name]["step"] == STEPS
        for kind in kinds:
            torch.testing.assert_close(ranks[0][name]["params"][kind], ranks[1][name]["params"][kind],
                                       rtol=0, atol=1e-6)
        assert (tmp_path / f"{name}.safetensors").is_file()
        assert (tmp_path / "runs" / name / "losses.csv").read_text().count("\n") == 2   # header + final row
