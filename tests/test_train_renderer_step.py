"""The renderer's generator step does not build the discriminator's weight gradients, and trains exactly as when
it did (those gradients were discarded by the discriminator's own step)."""
from __future__ import annotations

import copy

import torch
from torch.utils.data import default_collate

from moda_core.models.discriminators import DiscriminatorConfig, MultiscaleDiscriminator
from moda_core.models.renderer import RendererConfig, RenderGenerator
from moda_core.tpe import TPEConfig
from moda_core.train import RendererTask, RendererTrainConfig
from test_train_common import _seeded, sample, sample_dir  # noqa: F401  (fixtures)


def _task(generator, discriminator, sample, *, keep_discriminator_grads: bool) -> RendererTask:
    task = RendererTask(generator, discriminator, [sample],
                        RendererTrainConfig(tpe=TPEConfig(), lr=1e-3, perceptual_weight=0.0))
    task.to(torch.device("cpu"))
    if keep_discriminator_grads:          # the distributed path: gradients of every discriminator weight are built
        task._parallel = {"renderer_discriminator": task.forward_module("renderer_discriminator")}
    return task


def test_generator_step_skips_discriminator_weight_grads_with_the_same_result(sample, monkeypatch):
    generator = RenderGenerator(RendererConfig.tiny())
    discriminator = MultiscaleDiscriminator(DiscriminatorConfig(ndf=4, n_layers=2, num_D=2))
    fast = _task(generator, discriminator, sample, keep_discriminator_grads=False)
    full = _task(copy.deepcopy(generator), copy.deepcopy(discriminator), sample, keep_discriminator_grads=True)
    batch = fast.batch_to_device(default_collate([fast.train_set[i] for i in (0, 7)]))

    seen = []
    original = RendererTask.optimise

    def record(self, name, loss):
        if name == "renderer":
            seen.append([p.requires_grad for p in self.networks["renderer_discriminator"].parameters()])
        original(self, name, loss)

    monkeypatch.setattr(RendererTask, "optimise", record)
    for _ in range(2):
        assert fast.train_step(batch) == full.train_step(batch)
    assert not any(any(flags) for flags in seen[0::2])               # frozen during the generator step (fast task)
    assert all(all(flags) for flags in seen[1::2])                   # the distributed path keeps them
    for kind in ("renderer", "renderer_discriminator"):
        assert all(p.requires_grad for p in fast.networks[kind].parameters()), kind
        a, b = fast.networks[kind].state_dict(), full.networks[kind].state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), kind
