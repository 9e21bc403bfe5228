"""Each stage learns on tiny configs: losses drop, the tiny renderer overfits 8 frames, weights reload strictly."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import Subset, default_collate

from moda_core.checkpoints import load_model
from moda_core.models.discriminators import DiscriminatorConfig, MultiscaleDiscriminator
from moda_core.models.faco import FaCoConfig, FaCoNet, PointDiscriminator
from moda_core.models.moda import MODAConfig, MODANet
from moda_core.models.renderer import RendererConfig, RenderGenerator
from moda_core.tpe import TPEConfig
from moda_core.train import (FaCoTask, FaCoTrainConfig, LoopConfig, MODATask, MODATrainConfig, RendererTask,
                             RendererTrainConfig, evaluate_renderer, train_faco, train_moda, train_renderer)
from test_train_common import _seeded, offline_vgg, sample, sample_dir  # noqa: F401  (fixtures)

TINY_D = DiscriminatorConfig(ndf=4, n_layers=2, num_D=2)


def _steps(task, batch, count: int) -> list[dict[str, float]]:
    for network in task.networks.values():
        network.train()
    return [task.train_step(batch) for _ in range(count)]


def _mean(history: list[dict[str, float]], name: str, part: slice) -> float:
    values = [step[name] for step in history[part]]
    return sum(values) / len(values)


def test_moda_losses_drop(sample):
    for loss in ("l1", "l2_velocity"):
        torch.manual_seed(0)
        task = MODATask(MODANet(MODAConfig.tiny(dropout=0.0)), [sample],
                        MODATrainConfig(window=30, lr=3e-3, loss=loss))
        batch = default_collate([task.train_set[i] for i in range(4)])
        history = _steps(task, batch, 30)                          # noisy (VAE, SpecAugment): means of 5 steps
        for part in ("total", "lip", "eye", "head", "torso"):
            assert _mean(history, part, slice(-5, None)) < 0.9 * _mean(history, part, slice(0, 5)), (loss, part)


def test_faco_losses_drop(sample):
    task = FaCoTask(FaCoNet(FaCoConfig.tiny()), PointDiscriminator(FaCoConfig.tiny()), [sample],
                    FaCoTrainConfig(window=16, lr=3e-3))
    batch = default_collate([task.train_set[i] for i in range(4)])
    history = _steps(task, batch, 100)                             # adversarial: compare means of 10 steps
    for name in ("l1", "g", "d"):
        assert _mean(history, name, slice(-10, None)) < 0.8 * _mean(history, name, slice(0, 10)), name


def test_renderer_overfits_eight_frames(sample, offline_vgg):
    config = RendererConfig(ngf=8, num_levels=5, image_size=64)       # 64 px, 0.1 M parameters
    task = RendererTask(RenderGenerator(config), MultiscaleDiscriminator(TINY_D), [sample],
                        RendererTrainConfig(tpe=TPEConfig(), lr=5e-3, mouth_weight=20.0))
    task.to(torch.device("cpu"))
    eight = Subset(task.train_set, range(0, 64, 8))
    batch = task.batch_to_device(default_collate([eight[i] for i in range(8)]))
    history = _steps(task, batch, 80)
    assert "vgg" not in history[-1]                                  # offline: perceptual term skipped
    assert history[-1]["color"] < 0.5 * history[0]["color"]
    task.networks["renderer"].eval()
    with torch.no_grad():
        psnr = task.val_step(batch)["psnr"]
    assert psnr > 20.0, psnr


def test_trained_weights_reload_strictly(sample, tmp_path, offline_vgg):
    loop = LoopConfig(max_steps=2, batch_size=2, progress=False)
    train_moda([sample], tmp_path, model_config=MODAConfig.tiny(), config=MODATrainConfig(window=30), loop=loop)
    train_faco([sample], tmp_path, model_config=FaCoConfig.tiny(), loop=loop)
    result = train_renderer([sample], tmp_path, model_config=RendererConfig.tiny(), discriminator_config=TINY_D,
                            loop=loop)
    for kind in ("moda", "faco", "renderer"):
        loaded = load_model(tmp_path / f"{kind}.safetensors", kind=kind)
        best = load_model(tmp_path / "runs" / kind / "best" / f"{kind}.safetensors", kind=kind)
        assert all(torch.equal(v, best.state_dict()[k]) for k, v in loaded.state_dict().items())
    for kind in ("faco_discriminator", "renderer_discriminator"):
        load_model(tmp_path / "runs" / kind.split("_")[0] / "last" / f"{kind}.safetensors", kind=kind)
    from moda_core.render_settings import RenderSettings
    recorded = RenderSettings.of_weight_file(tmp_path / "renderer.safetensors")
    assert recorded.tpe == RendererTrainConfig().tpe and recorded.face_center == (256.0, 232.0, 128.0)
    psnr, ssim = evaluate_renderer(load_model(result.weights["renderer"]), sample, tpe=TPEConfig(offset=1000.0),
                                   size=128)
    assert 0 < psnr < 100 and -1 <= ssim <= 1


def test_moda_batches_of_one_never_reach_batchnorm(sample, tmp_path):
    # window 30, hop 20 over 72 train frames: 3 windows; with batches of 2 the odd one is dropped, not run alone
    result = train_moda([sample], tmp_path, model_config=MODAConfig.tiny(), config=MODATrainConfig(window=30, hop=20),
                        loop=LoopConfig(max_epochs=2, batch_size=2, progress=False))
    assert (result.step, result.epoch) == (2, 2)
    with pytest.raises(ValueError, match="batch of 2"):                # window 60: a single training window
        train_moda([sample], tmp_path / "one", model_config=MODAConfig.tiny(),
                   config=MODATrainConfig(window=60, hop=20), loop=LoopConfig(max_steps=1, progress=False))
