"""Renderer distillation: the L1 to a frozen teacher renderer's output (RendererTrainConfig.distill_weight)."""
from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch
from torch.utils.data import default_collate

from moda_core.models.discriminators import DiscriminatorConfig, MultiscaleDiscriminator
from moda_core.models.renderer import REFERENCE_CHANNELS, RendererConfig, RenderGenerator
from moda_core.tpe import TPEConfig
from moda_core.train import RendererTask, RendererTrainConfig
from test_train_common import _seeded, sample, sample_dir  # noqa: F401  (fixtures)

CONFIG = RendererTrainConfig(tpe=TPEConfig(), lr=1e-3, perceptual_weight=0.0)
TINY_D = DiscriminatorConfig(ndf=4, n_layers=2, num_D=2)


def _task(sample, generator, config=CONFIG, teacher=None) -> RendererTask:
    torch.manual_seed(0)                              # the same discriminator in every task
    task = RendererTask(generator, MultiscaleDiscriminator(TINY_D), [sample], config, teacher=teacher)
    task.to(torch.device("cpu"))
    return task


def _batch(task: RendererTask, items=(0, 7)) -> dict[str, torch.Tensor]:
    return task.batch_to_device(default_collate([task.train_set[i] for i in items]))


def _teacher(seed: int = 5, **fields) -> RenderGenerator:
    torch.manual_seed(seed)
    return RenderGenerator(replace(RendererConfig.tiny(), **fields))


def test_distillation_changes_the_step_and_leaves_the_teacher_alone(sample):
    student = RenderGenerator(RendererConfig.tiny())
    teacher = _teacher()
    before = copy.deepcopy(teacher.state_dict())
    plain = _task(sample, copy.deepcopy(student))
    taught = _task(sample, copy.deepcopy(student), replace(CONFIG, distill_weight=50.0), teacher)
    batch = _batch(plain)
    torch.manual_seed(1)
    plain_losses = plain.train_step(batch)
    torch.manual_seed(1)
    taught_losses = taught.train_step(batch)
    assert "distill" not in plain_losses and taught_losses["distill"] > 0.0
    assert taught_losses["g"] == pytest.approx(plain_losses["g"] + 50.0 * taught_losses["distill"], rel=1e-5)
    a, b = plain.networks["renderer"].state_dict(), taught.networks["renderer"].state_dict()
    changed = [k for k in a if a[k].is_floating_point() and not torch.equal(a[k], b[k])]
    assert changed, "the distillation term did not change the student's step"
    assert "teacher" not in taught.networks                          # not trained, not saved with the run
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())


def test_student_converges_toward_the_teacher(sample):
    teacher = _teacher()
    # distillation alone (no reconstruction or adversarial terms: the generator-only step, no discriminator)
    config = replace(CONFIG, distill_weight=1.0, color_weight=0.0, mouth_weight=0.0, gan_weight=0.0,
                     feature_matching_weight=0.0)
    task = _task(sample, RenderGenerator(RendererConfig.tiny()), config, teacher)
    discriminator_before = copy.deepcopy(task.networks["renderer_discriminator"].state_dict())
    batch = _batch(task, (0, 5, 11, 17))
    losses = [task.train_step(batch) for _ in range(25)]
    assert set(losses[0]) == {"g", "color", "mouth", "distill"}     # no "gan", "fm", "d": D not run
    first, last = losses[0]["distill"], losses[-1]["distill"]
    assert last < 0.6 * first, (first, last)
    discriminator_after = task.networks["renderer_discriminator"].state_dict()
    assert all(torch.equal(discriminator_before[k], v) for k, v in discriminator_after.items())


def test_teacher_sees_the_still_reference_when_the_batch_has_one(sample):
    teacher = _teacher()
    task = _task(sample, RenderGenerator(RendererConfig.tiny()), replace(CONFIG, distill_weight=10.0), teacher)
    batch = _batch(task)
    with torch.no_grad():
        same_input = teacher(batch["input"])
    assert torch.equal(task.teacher_output(batch), same_input)
    still = torch.rand(2, 3, 64, 64) * 2 - 1
    x = batch["input"].clone()
    x[:, REFERENCE_CHANNELS] = still
    with torch.no_grad():
        expected = teacher(x)
    got = task.teacher_output({**batch, "still_reference": still})
    assert torch.equal(got, expected) and not torch.allclose(got, same_input)
    assert torch.equal(batch["input"][:, REFERENCE_CHANNELS], _batch(task)["input"][:, REFERENCE_CHANNELS])
    warped_teacher = _teacher(warped_reference=True)                # a warp-refine teacher: the same input
    task.teacher = warped_teacher           # (set directly: RendererTask wants a warped-reference student for it)
    with torch.no_grad():
        assert torch.equal(task.teacher_output({**batch, "still_reference": still}), warped_teacher(batch["input"]))


def test_teacher_errors_are_clear(sample):
    student = RenderGenerator(RendererConfig.tiny())
    with pytest.raises(ValueError, match=r"teacher renderer is 128 px with 19 input channels but the trained "
                                         r"renderer is 64 px with 19"):
        _task(sample, student, replace(CONFIG, distill_weight=1.0), _teacher(image_size=128))
    with pytest.raises(ValueError, match=r"teacher renderer is 64 px with 18 input channels"):
        _task(sample, student, replace(CONFIG, distill_weight=1.0), _teacher(in_channels=18))
    with pytest.raises(ValueError, match="no teacher renderer was given"):
        _task(sample, student, replace(CONFIG, distill_weight=1.0))
    with pytest.raises(ValueError, match="distill_weight is 0"):
        _task(sample, student, CONFIG, _teacher())
    with pytest.raises(ValueError, match="distill_weight must be >= 0"):
        replace(CONFIG, distill_weight=-1.0)


def test_warped_reference_teacher_needs_a_warped_reference_student(sample):
    with pytest.raises(ValueError, match="teacher renderer refines warped references"):
        _task(sample, RenderGenerator(RendererConfig.tiny()), replace(CONFIG, distill_weight=10.0),
              _teacher(warped_reference=True))
