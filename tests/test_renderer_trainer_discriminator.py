"""The discriminator's input downscale (DiscriminatorConfig.downscale): a cheaper D for 512 px avatar training."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import default_collate

from moda_core.checkpoints import load_model, save_model
from moda_core.models.discriminators import DiscriminatorConfig, MultiscaleDiscriminator
from moda_core.models.renderer import RendererConfig, RenderGenerator
from moda_core.tpe import TPEConfig
from moda_core.train import RendererTask, RendererTrainConfig
from test_train_common import _seeded, sample, sample_dir  # noqa: F401  (fixtures)


def test_downscale_runs_the_scales_on_the_pooled_input(tmp_path):
    config = DiscriminatorConfig(input_nc=5, ndf=4, n_layers=2, num_D=2)
    assert DiscriminatorConfig().downscale == 1                                  # the authors' D sees full size
    full = MultiscaleDiscriminator(config).eval()
    pooled = MultiscaleDiscriminator(replace(config, downscale=2)).eval()
    pooled.load_state_dict(full.state_dict())                                   # same weights, same keys
    x = torch.randn(2, 5, 64, 64)
    got, expected = pooled(x), full(F.avg_pool2d(x, 2))
    assert [t.shape[-1] for t in got[0]] == [17, 9, 10, 11]                     # 32 px at the first scale
    assert all(torch.equal(a, b) for scale_a, scale_b in zip(got, expected) for a, b in zip(scale_a, scale_b))
    with pytest.raises(ValueError, match=r"downscale 2 needs H and W divisible by it, got \[63, 64\]"):
        pooled(torch.randn(1, 5, 63, 64))
    path = tmp_path / "d.safetensors"
    save_model(pooled, path, kind="renderer_discriminator")
    assert load_model(path).config.downscale == 2                              # recorded with the weights


def test_a_train_step_with_a_downscaled_discriminator(sample):
    d_config = DiscriminatorConfig(ndf=4, n_layers=2, num_D=2, downscale=2)
    task = RendererTask(RenderGenerator(RendererConfig.tiny()), MultiscaleDiscriminator(d_config), [sample],
                        RendererTrainConfig(tpe=TPEConfig(), lr=1e-3, perceptual_weight=0.0))
    task.to(torch.device("cpu"))
    batch = task.batch_to_device(default_collate([task.train_set[i] for i in (0, 7)]))
    before = {k: v.clone() for k, v in task.networks["renderer_discriminator"].state_dict().items()}
    losses = task.train_step(batch)
    assert {"gan", "fm", "d"} <= set(losses) and all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    after = task.networks["renderer_discriminator"].state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if before[k].is_floating_point())
