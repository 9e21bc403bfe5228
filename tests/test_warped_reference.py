"""Renderers with ``warped_reference``: the warp renderer's frame is their reference, in training and inference."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from moda_core.geometry import CANONICALISATION_FACE_CENTER
from moda_core.models.renderer import REFERENCE_CHANNELS, RenderGenerator, RendererConfig
from moda_core.pipeline import AnimateOptions, reference_warp, render_batch, render_stream
from moda_core.projection import project_repr
from moda_core.render_settings import RenderSettings
from moda_core.tpe import TPEConfig
from moda_core.train import RenderFrames

from test_train_common import _seeded, sample, sample_dir  # noqa: F401  (fixtures)

SIZE = 64


def _warp_refine(**changes) -> RenderGenerator:
    config = RendererConfig(ngf=4, num_levels=3, image_size=SIZE, width_cap=2, space_to_depth=2,
                            reference_residual=True, tpe_bias=True, warped_reference=True, **changes)
    return RenderGenerator(config).eval()


def test_config_flag_is_checked_and_compact_only():
    assert RendererConfig.fast().warped_reference and not RendererConfig().warped_reference
    assert not RendererConfig(warped_reference=True).is_authors_layout
    with pytest.raises(ValueError, match="warped_reference must be a bool"):
        RendererConfig(warped_reference=1)
    roundtrip = RendererConfig.from_dict(RendererConfig.fast().to_dict())
    assert roundtrip == RendererConfig.fast()


def test_render_frames_put_the_warped_frame_in_the_reference_channels(sample, data_dir):
    frames = RenderFrames(sample, "val", SIZE, tpe=TPEConfig(), warped_reference=True,
                          models_dir=data_dir / "models")
    still = RenderFrames(sample, "val", SIZE, tpe=TPEConfig())
    item, plain = frames[5], still[5]
    torch.testing.assert_close(item["input"][:3], plain["input"][:3])                  # same condition
    torch.testing.assert_close(item["input"][6:], plain["input"][6:])                  # same TPE
    torch.testing.assert_close(item["still_reference"], plain["input"][REFERENCE_CHANNELS])
    face, torso = project_repr(sample.repr, sample.subject, face_center=CANONICALISATION_FACE_CENTER)
    warp = reference_warp(sample.subject, SIZE, CANONICALISATION_FACE_CENTER, data_dir / "models")
    part = slice(frames.frames.start, frames.frames.stop)        # warped in order, as the dataset does
    expected = warp.render_points(face[part, :, :2].float().double().numpy(),
                                  torso[part, :, :2].float().double().numpy())[5]
    got = (item["input"][REFERENCE_CHANNELS].permute(1, 2, 0).numpy() + 1.0) / 2.0
    assert np.abs(got - expected).max() <= 0.5 / 255 + 1e-6                          # stored as uint8
    # the frame moved: the warped reference is not the still crop
    assert (item["input"][REFERENCE_CHANNELS] - item["still_reference"]).abs().mean() > 1e-3


def test_render_batch_takes_one_reference_per_frame():
    net = _warp_refine()
    conditions = torch.rand(3, SIZE, SIZE, 3)
    references = torch.rand(3, SIZE, SIZE, 3)
    out = render_batch(net, conditions, references, 0)
    # zero-initialised residual: a fresh warp-refine renderer returns its references
    torch.testing.assert_close(out, references, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="2 reference images for 3 condition images"):
        render_batch(net, conditions, references[:2], 0)


def test_render_stream_feeds_the_warp_frames_to_the_renderer(sample, data_dir):
    """A fresh warp-refine renderer renders exactly what the warp renderer does; a trained one differs from it."""
    net = _warp_refine()
    net.render_settings = RenderSettings(tpe=TPEConfig(), face_center=CANONICALISATION_FACE_CENTER)
    r = sample.repr.slice_time(10, 14)
    options = AnimateOptions(batch_size=2, models_dir=str(data_dir / "models"))
    frames = torch.cat(list(render_stream(net, r, sample.subject, options)))
    warp = reference_warp(sample.subject, SIZE, CANONICALISATION_FACE_CENTER, data_dir / "models")
    face, torso = project_repr(r, sample.subject, face_center=CANONICALISATION_FACE_CENTER)
    expected = warp.render_points(face[..., :2].double().numpy(), torso[..., :2].double().numpy())
    assert frames.shape == (4, SIZE, SIZE, 3)
    assert np.abs(frames.numpy() - expected).max() < 1e-5
    with torch.no_grad():
        net.netG.model.model[-1].weight.normal_(0, 0.05)
    changed = torch.cat(list(render_stream(net, r, sample.subject, options)))
    assert (changed - frames).abs().mean() > 1e-3
