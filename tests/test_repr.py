import numpy as np
import pytest
import torch

from moda_core import ReprError, Subject, TalkingRepr


def make_repr(samples=2, frames=12, face=True, fps=30.0, seed=0) -> TalkingRepr:
    g = torch.Generator().manual_seed(seed)
    tracks = {"mouth": torch.randn(samples, frames, 40, 3, generator=g),
              "eyes": torch.randn(samples, frames, 60, 3, generator=g),
              "head_pose": torch.randn(samples, frames, 7, generator=g),
              "torso": torch.randn(samples, frames, 18, 3, generator=g)}
    if face:
        tracks["face"] = torch.randn(samples, frames, 478, 3, generator=g)
    return TalkingRepr(**tracks, fps=fps, is_offset=True, subject="tester", meta={"seed": "7"})


def make_subject() -> Subject:
    g = torch.Generator().manual_seed(1)
    return Subject(reference_image=torch.zeros(512, 512, 3, dtype=torch.uint8),
                   template=torch.rand(478, 3, generator=g) * 300 + 100,
                   mean_head_pose=torch.tensor([1.0, 2.0, 3.0, 256.0, 250.0, 0.0, 1.2]),
                   mean_torso=torch.rand(18, 3, generator=g) * 500, name="tester")


def test_shapes_and_promotion_of_single_sample():
    r = make_repr(samples=1).select_samples(0)
    single = TalkingRepr(mouth=r.mouth[0], eyes=r.eyes[0], head_pose=r.head_pose[0], torso=r.torso[0], fps=25)
    assert single.num_samples == 1 and single.num_frames == 12
    assert single.face is None
    assert single.duration == pytest.approx(12 / 25)


@pytest.mark.parametrize("field,bad,message", [
    ("mouth", torch.zeros(2, 12, 41, 3), "R.mouth must have shape"),
    ("head_pose", torch.zeros(2, 12, 6), "R.head_pose must have shape"),
    ("torso", torch.zeros(2, 11, 18, 3), "disagree on samples/frames"),
    ("eyes", torch.full((2, 12, 60, 3), float("nan")), "NaN or infinite"),
    ("face", torch.full((2, 12, 478, 3), float("inf")), "NaN or infinite"),
    ("mouth", torch.zeros(2, 12, 40, 3, dtype=torch.int64), "floating-point"),
])
def test_validation_errors_name_the_field(field, bad, message):
    with pytest.raises(ReprError, match=message):
        make_repr().replace(**{field: bad})


@pytest.mark.parametrize("fps", [0, -5, float("nan")])
def test_fps_must_be_positive(fps):
    with pytest.raises(ReprError, match="fps must be a positive number"):
        make_repr().replace(fps=fps)


def test_slice_concat_roundtrip():
    r = make_repr()
    a, b = r.slice_time(0, 5), r.slice_time(5)
    assert (a.num_frames, b.num_frames) == (5, 7)
    joined = TalkingRepr.concat_time([a, b])
    for name, value in r.tracks().items():
        assert torch.equal(getattr(joined, name), value)
    assert r.slice_time(-3).num_frames == 3
    with pytest.raises(ReprError, match="empty"):
        r.slice_time(20, 30)
    with pytest.raises(ReprError, match="equal fps.*got fps 30.0 vs 25"):
        TalkingRepr.concat_time([a, b.replace(fps=25)])
    with pytest.raises(ReprError, match="at least one R"):
        TalkingRepr.concat_time([])


def test_samples_select_and_stack():
    r = make_repr(samples=3)
    assert torch.equal(r.select_samples([2]).head_pose[0], r.head_pose[2])
    stacked = TalkingRepr.stack_samples([r.select_samples(0), r.select_samples(1)])
    assert stacked.num_samples == 2 and torch.equal(stacked.mouth, r.mouth[:2])
    with pytest.raises(ReprError, match="stack_samples needs .*got num_frames 12 vs 4"):
        TalkingRepr.stack_samples([r, r.slice_time(0, 4)])
    with pytest.raises(ReprError, match="out of range"):
        r.select_samples(3)


def test_resample_keeps_endpoints_and_linear_tracks():
    frames = 31
    line = torch.linspace(0, 30, frames)
    r = make_repr(samples=1, frames=frames)
    r = r.replace(head_pose=line[None, :, None].expand(1, frames, 7).clone())
    out = r.resample(15.0)
    assert out.fps == 15.0 and out.num_frames == 16
    assert torch.allclose(out.head_pose[0, :, 0], torch.linspace(0, 30, 16), atol=1e-5)
    assert torch.equal(out.mouth[:, 0], r.mouth[:, 0]) and torch.equal(out.mouth[:, -1], r.mouth[:, -1])
    assert r.resample(30.0).num_frames == frames


def test_to_device_dtype_and_no_mutation():
    r = make_repr()
    before = r.mouth.clone()
    d = r.to(dtype=torch.float64)
    assert d.dtype == torch.float64 and d.face.dtype == torch.float64
    assert torch.equal(r.mouth, before) and r.dtype == torch.float32


def test_offsets_absolute_roundtrip():
    r, subject = make_repr(), make_subject()
    absolute = r.to_absolute(subject)
    assert not absolute.is_offset
    means = subject.track_means()
    assert torch.allclose(absolute.mouth - r.mouth, means["mouth"].expand_as(r.mouth), atol=1e-4)
    assert torch.allclose(absolute.head_pose - r.head_pose, means["head_pose"].expand_as(r.head_pose), atol=1e-5)
    back = absolute.to_offsets(subject)
    assert back.is_offset and torch.allclose(back.face, r.face, atol=1e-4)
    assert absolute.to_absolute(subject) is absolute


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
@pytest.mark.parametrize("face", [True, False])
def test_save_load_bit_exact(tmp_path, suffix, face):
    r = make_repr(face=face)
    path = r.save(tmp_path / f"motion{suffix}")
    loaded = TalkingRepr.load(path)
    assert loaded.fps == r.fps and loaded.is_offset == r.is_offset
    assert loaded.subject == r.subject and loaded.meta == r.meta
    assert set(loaded.tracks()) == set(r.tracks())
    for name, value in r.tracks().items():
        assert torch.equal(getattr(loaded, name), value), name
    assert [p.name for p in tmp_path.iterdir()] == [f"motion{suffix}"]   # no temp files left


def test_npz_edited_in_numpy_is_validated(tmp_path):
    path = make_repr(face=False).save(tmp_path / "r.npz")
    with np.load(path) as archive:
        arrays = dict(archive)
    arrays["head_pose"][0, 3, 0] = np.nan
    np.savez(tmp_path / "edited.npz", **arrays)
    with pytest.raises(ReprError, match="edited.npz.*NaN"):
        TalkingRepr.load(tmp_path / "edited.npz")


def test_unknown_version_and_foreign_files_rejected(tmp_path):
    from safetensors.torch import save_file
    r = make_repr(face=False)
    meta = r._metadata() | {"version": "99"}
    save_file({k: v.contiguous() for k, v in r.tracks().items()}, tmp_path / "future.safetensors", metadata=meta)
    with pytest.raises(ReprError, match="version '99'"):
        TalkingRepr.load(tmp_path / "future.safetensors")
    save_file({"x": torch.zeros(2)}, tmp_path / "other.safetensors")
    with pytest.raises(ReprError, match="not a MODA R file"):
        TalkingRepr.load(tmp_path / "other.safetensors")
    (tmp_path / "broken.safetensors").write_bytes(b"\x00\x01garbage")
    with pytest.raises(ReprError, match="cannot read R file"):
        TalkingRepr.load(tmp_path / "broken.safetensors")
    with pytest.raises(ReprError, match="use .safetensors or .npz"):
        r.save(tmp_path / "r.json")
    with pytest.raises(ReprError, match="not found"):
        TalkingRepr.load(tmp_path / "missing.npz")


def test_failed_save_leaves_no_file(tmp_path, monkeypatch):
    import safetensors.torch

    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", explode)
    with pytest.raises(RuntimeError, match="disk full"):
        make_repr().save(tmp_path / "r.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_subject_save_load_and_validation(tmp_path):
    s = make_subject()
    loaded = Subject.load(s.save(tmp_path / "s.safetensors"))
    assert torch.equal(loaded.template, s.template) and loaded.name == "tester"
    assert torch.equal(loaded.crop_to_source, s.crop_to_source)
    assert loaded.style_vector().shape == (1434,)
    from moda_core.subject import SubjectError
    with pytest.raises(SubjectError, match="template must have shape"):
        s.replace(template=torch.zeros(468, 3))
    with pytest.raises(SubjectError, match="scale must be > 0"):
        s.replace(mean_head_pose=torch.zeros(7))
