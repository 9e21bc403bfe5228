"""The fast renderer's streaming path: TPE values instead of TPE planes, 8-bit inputs by table, overlapped stages
(warp + drawing a batch ahead, H.264 in a worker thread) giving the same frames as one stage after another."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from moda_core.models.renderer import IMAGE_CHANNELS, RendererConfig, RenderGenerator, render
from moda_core.pipeline import AnimateOptions, MODAModels, _signed_nhwc, _to_signed, animate, render_batch, render_stream
from moda_core.render_backends import TorchBackend
from moda_core.repr import TalkingRepr
from moda_core.streaming import prefetch
from moda_core.tpe import TPEConfig, temporal_positional_encoding, tpe_values
from moda_core.video import VideoWriter

SIZE = 64
WARP_REFINE = RendererConfig(ngf=4, num_levels=3, image_size=SIZE, width_cap=2, space_to_depth=2,
                             reference_residual=True, tpe_bias=True, warped_reference=True)


def _net(config: RendererConfig) -> RenderGenerator:
    torch.manual_seed(0)
    net = RenderGenerator(config).eval()
    with torch.no_grad():                     # a trained-looking residual: the output is not just the reference
        for parameter in net.parameters():
            parameter.normal_(0, 0.2)
    return net


def _copy(net: RenderGenerator) -> RenderGenerator:
    other = RenderGenerator(net.config).eval()
    other.load_state_dict(net.state_dict())
    return other


@pytest.fixture(scope="module")
def subject(data_dir):
    from moda_core.preprocess import subject_from_photo

    subject, _ = subject_from_photo(data_dir / "portraits" / "obama.jpg", models_dir=data_dir / "models")
    return subject


def _motion(subject, frames: int = 7) -> TalkingRepr:
    generator = torch.Generator().manual_seed(3)
    head = torch.randn(1, frames, 7, generator=generator) * torch.tensor([2.0, 2.0, 1.0, 3.0, 3.0, 0.0, 0.01])
    return TalkingRepr(mouth=torch.randn(1, frames, 40, 3, generator=generator) * 0.5,
                       eyes=torch.zeros(1, frames, 60, 3), face=torch.randn(1, frames, 478, 3, generator=generator) * 0.3,
                       head_pose=head, torso=torch.zeros(1, frames, 18, 3), fps=30.0, is_offset=True
                       ).to_absolute(subject)


def _old_signed(images: torch.Tensor) -> torch.Tensor:
    """The conversion render_batch did before the tables (the authors' im2tensor), written out."""
    levels = images.to(torch.float32) * (1.0 if images.dtype == torch.uint8 else 255.0)
    rounded = levels.round()
    if images.dtype != torch.uint8 and (levels - rounded).abs().max() > 1e-3:
        return images.permute(0, 3, 1, 2).to(torch.float32) * 2.0 - 1.0
    return rounded.mul_(2.0).sub_(255.0).div_(255.0).permute(0, 3, 1, 2)


# ------------------------------------------------------------------------------------------- TPE values
@pytest.mark.parametrize("config", [WARP_REFINE, RendererConfig(ngf=4, num_levels=3, image_size=SIZE, tpe_bias=True),
                                    RendererConfig.tiny()], ids=["space-to-depth", "tpe-bias", "authors-layout"])
def test_tpe_values_give_the_frames_of_tpe_planes(config):
    net = _net(config)
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(3, IMAGE_CHANNELS, SIZE, SIZE, generator=generator) * 2 - 1
    values = tpe_values([5, 6, 900])
    planes = torch.cat([images, temporal_positional_encoding([5, 6, 900], SIZE, SIZE)], dim=1)
    expected = render(net, planes)
    torch.testing.assert_close(render(net, images, tpe=values), expected, atol=1e-6, rtol=0)
    backend = TorchBackend(_copy(net), "fp32")                   # channels-last memory
    torch.testing.assert_close(backend(images, tpe=values), backend(planes), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match=r"TPE values must be \[3, 13\]"):
        net(images, tpe=values[:, :12])
    with pytest.raises(ValueError, match=r"renderer input must be \[B, 6, H, W\]"):
        net(planes, tpe=values)


def test_openvino_takes_tpe_values_for_tpe_bias_renderers(tmp_path):
    pytest.importorskip("openvino")
    from moda_core.render_backends import OpenVINOBackend

    net = _net(WARP_REFINE)
    backend = OpenVINOBackend(_copy(net), "fp32", weights_hash="w", cache_dir=tmp_path, log=None)
    assert OpenVINOBackend.input_names(WARP_REFINE) == ["images", "tpe"]
    assert len(backend.compiled.inputs) == 2, "converted with the TPE values as an input of their own"
    generator = torch.Generator().manual_seed(2)
    images = torch.rand(2, IMAGE_CHANNELS, SIZE, SIZE, generator=generator) * 2 - 1
    values = tpe_values([0, 1])
    expected = render(net, images, tpe=values)
    torch.testing.assert_close(backend(images, tpe=values), expected, atol=1e-4, rtol=0)
    planes = torch.cat([images, temporal_positional_encoding([0, 1], SIZE, SIZE)], dim=1)
    torch.testing.assert_close(backend(planes), expected, atol=1e-4, rtol=0)
    conditions, references = torch.rand(2, SIZE, SIZE, 3, generator=generator), torch.rand(2, SIZE, SIZE, 3)
    torch.testing.assert_close(render_batch(backend, conditions, references, 7),
                               render_batch(net, conditions, references, 7), atol=1e-4, rtol=0)


# ------------------------------------------------------------------------------------------- render_batch input
def test_eight_bit_images_convert_by_table_exactly_as_before():
    levels = torch.arange(256, dtype=torch.uint8).view(1, 16, 16, 1).expand(2, 16, 16, 3)
    for images in (levels, levels.float() / 255.0, levels.double() / 255.0):
        assert torch.equal(_to_signed(images), _old_signed(images))
        assert _signed_nhwc(images).is_contiguous() and _signed_nhwc(images).shape == (2, 16, 16, 3)
    # one value off the 8-bit levels, away from the probed positions: the whole image is scaled as 2x - 1
    off = (levels.float() / 255.0).contiguous()
    off.view(-1)[1] += 0.4 / 255.0
    assert torch.equal(_to_signed(off), _old_signed(off))
    assert torch.equal(_to_signed(off), off.permute(0, 3, 1, 2) * 2.0 - 1.0)
    assert not torch.equal(_to_signed(off)[:, :, 4:], _to_signed(levels)[:, :, 4:]), "the two formulas differ"
    wide = torch.tensor([-1.0, 2.0]).view(1, 1, 2, 1).expand(1, 1, 2, 3)        # levels outside 0..255
    assert torch.equal(_to_signed(wide), _old_signed(wide))


@pytest.mark.parametrize("config", [WARP_REFINE, RendererConfig.tiny()], ids=["warp-refine", "authors-layout"])
def test_render_batch_matches_the_plane_input_of_before(config):
    net = _net(config)
    backend = TorchBackend(_copy(net), "fp32")                   # channels-last memory: compared with itself
    generator = torch.Generator().manual_seed(4)
    drawn = (torch.rand(3, SIZE, SIZE, 3, generator=generator) * 255).round().to(torch.uint8)
    references = [torch.rand(3, SIZE, SIZE, 3, generator=generator), torch.rand(SIZE, SIZE, 3, generator=generator)]
    for conditions in (drawn, drawn.float() / 255.0):
        for reference in references:
            signed_reference = _old_signed(reference if reference.dim() == 4 else reference[None]).expand(3, -1, -1, -1)
            x = torch.cat([_old_signed(conditions), signed_reference,
                           temporal_positional_encoding(torch.arange(10, 13), SIZE, SIZE, TPEConfig())], dim=1)
            for run in (net, backend):
                y = render(net, x) if run is net else backend(x)
                expected = ((y.clamp(-1, 1) + 1.0) / 2.0).permute(0, 2, 3, 1)
                got = render_batch(run, conditions, reference, 10)
                assert got.shape == (3, SIZE, SIZE, 3)
                torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------------------- overlapped stages
def test_prefetch_keeps_order_raises_the_workers_error_and_stops_with_its_consumer():
    assert list(prefetch(iter(range(20)), depth=2)) == list(range(20))

    def failing():
        yield from range(3)
        raise OSError("disk gone")

    got = []
    with pytest.raises(OSError, match="disk gone"):
        for item in prefetch(failing()):
            got.append(item)
    assert got == [0, 1, 2]

    made, closed = [], threading.Event()

    def endless():
        try:
            for index in range(10 ** 6):
                made.append(index)
                yield index
        finally:
            closed.set()

    stream = prefetch(endless(), depth=2)
    assert next(stream) == 0
    stream.close()
    assert closed.is_set(), "the source was closed by the worker before close() returned"
    assert len(made) <= 4, "at most depth + 1 items ahead of the consumer"
    assert not any(t.name == "moda-prefetch" for t in threading.enumerate())
    with pytest.raises(ValueError, match="depth must be >= 1"):
        next(prefetch([1], depth=0))


def _warp_refine_models() -> MODAModels:
    from moda_core.geometry import AUTHORS_INFERENCE_FACE_CENTER
    from moda_core.render_settings import RenderSettings

    net = _net(WARP_REFINE)
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.mul_(0.1)               # small corrections over the warp frames
    return MODAModels(moda=None, faco=None, renderer=net,
                      render_settings=RenderSettings(face_center=AUTHORS_INFERENCE_FACE_CENTER))


def test_overlapped_stream_gives_the_frames_of_one_stage_after_another(subject, data_dir):
    models, r = _warp_refine_models(), _motion(subject)
    seen = {}

    def stream(overlap: bool, renderer: str = "neural"):
        options = AnimateOptions(batch_size=3, models_dir=str(data_dir / "models"), overlap_stages=overlap,
                                 renderer=renderer)
        conditions = seen.setdefault(overlap, [])
        frames = list(render_stream(models, r, subject, options,
                                    on_batch=lambda start, drawn, out: conditions.append((start, drawn))))
        return frames

    sequential, overlapped = stream(False), stream(True)
    assert [f.shape[0] for f in overlapped] == [3, 3, 1]
    for a, b in zip(overlapped, sequential):
        assert torch.equal(a, b)
    assert [start for start, _ in seen[True]] == [0, 3, 6]
    for (_, a), (_, b) in zip(seen[True], seen[False]):
        assert a.dtype == torch.float32 and torch.equal(a, b)        # on_batch sees 0..1 floats either way
    assert torch.equal(torch.cat(stream(True, renderer="warp")), torch.cat(stream(False, renderer="warp")))


def test_overlapped_animate_writes_the_same_video_and_stops_on_interrupt(subject, data_dir, tmp_path, monkeypatch):
    import av

    from moda_core.warp_renderer import WarpRenderer

    models, r = _warp_refine_models(), _motion(subject, frames=9)
    wave = np.zeros(int(r.duration * 16000), np.float32)

    def frames_of(path):
        with av.open(str(path)) as container:
            return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])

    for overlap in (False, True):
        options = AnimateOptions(batch_size=2, models_dir=str(data_dir / "models"), overlap_stages=overlap)
        result = animate(models, wave, subject, tmp_path / f"{overlap}.mp4", options, repr_override=r)
        assert result.frames == 9
    assert np.array_equal(frames_of(tmp_path / "True.mp4"), frames_of(tmp_path / "False.mp4"))

    warped = []
    original = WarpRenderer.render_points
    monkeypatch.setattr(WarpRenderer, "render_points",
                        lambda self, *args: warped.append(1) or original(self, *args))

    def interrupt(stage, done, total):
        if stage == "render" and done >= 2:
            raise KeyboardInterrupt

    options = AnimateOptions(batch_size=1, models_dir=str(data_dir / "models"))
    with pytest.raises(KeyboardInterrupt):
        animate(models, wave, subject, tmp_path / "cut.mp4", options, repr_override=r, progress=interrupt)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["False.mp4", "True.mp4"], "no partial file"
    assert len(warped) <= 2 + 3, "the warp worker stopped at most a queue's length ahead"
    assert not any(t.name in ("moda-prefetch", "moda-video-writer") for t in threading.enumerate())


def test_background_writer_encodes_the_same_video_and_reports_its_errors(tmp_path, monkeypatch):
    import av

    generator = torch.Generator().manual_seed(5)
    batches = [torch.rand(3, 32, 48, 3, generator=generator) for _ in range(4)]
    for background in (False, True):
        with VideoWriter(tmp_path / f"{background}.mp4", 25, background=background) as writer:
            for batch in batches:
                writer.write(batch)
        assert writer.frames_written == 12
    decoded = []
    for background in (False, True):
        with av.open(str(tmp_path / f"{background}.mp4")) as container:
            decoded.append(np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)]))
    assert decoded[0].shape == (12, 32, 48, 3) and np.array_equal(decoded[0], decoded[1])

    calls = []
    original = VideoWriter._encode

    def failing(self, frames):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("encoder failed")
        original(self, frames)

    monkeypatch.setattr(VideoWriter, "_encode", failing)
    with pytest.raises(OSError, match="encoder failed"):
        with VideoWriter(tmp_path / "broken.mp4", 25, background=True) as writer:
            for batch in batches:
                writer.write(batch)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["False.mp4", "True.mp4"], "no partial file"
    assert not any(t.name == "moda-video-writer" for t in threading.enumerate())
    with pytest.raises(ValueError, match="queue_size must be >= 1"):
        VideoWriter(tmp_path / "x.mp4", 25, queue_size=0)
