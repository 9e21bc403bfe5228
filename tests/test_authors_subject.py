"""The authors' subject folder (repr.npz + reference.pth) -> Subject, built from the golden capture's subject.*."""
import os
import pickle
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from moda_core.authors_subject import (AuthorsSubjectError, import_subject, is_authors_subject_folder,
                                       load_restricted_pickle)
from moda_core.subject import Subject

REPR_KEYS = ("templete", "eye", "lip", "shoulder", "headmotion")


@pytest.fixture(scope="module")
def golden(parity_dir):
    """Cathy's repr.npz arrays (float64) and reference image, as stored in the end-to-end capture."""
    folder = parity_dir / "pipeline"
    with safe_open(str(folder / "pipeline_cathy.safetensors"), framework="np") as handle:
        arrays = {key: handle.get_tensor(f"subject.{key}").copy() for key in (*REPR_KEYS, "sub_info")}
    image = np.array(Image.open(folder / "cathy_reference.png").convert("RGB"))
    return arrays, image


def write_authors_folder(folder, arrays, image, reference: str = "pth", **overrides):
    folder.mkdir(parents=True, exist_ok=True)
    stored = {key: arrays[key] for key in REPR_KEYS}
    stored.update(overrides)
    np.savez(folder / "repr.npz", **{k: v for k, v in stored.items() if v is not None})
    if reference == "pth":
        torch.save({"example_files": ["./data/crop_frames/cathy_train#frame_0002591.png"], "examples": [image]},
                   folder / "reference.pth")
    else:
        Image.fromarray(image).save(folder / "reference.png")
    return folder


def test_import_round_trip_keeps_the_authors_values_exactly(golden, tmp_path):
    arrays, image = golden
    folder = write_authors_folder(tmp_path / "Cathy", arrays, image)
    assert is_authors_subject_folder(folder)
    subject = import_subject(folder)
    assert subject.name == "Cathy" and subject.means_float64
    assert subject.template.dtype == subject.mean_head_pose.dtype == subject.mean_torso.dtype == torch.float64
    assert np.array_equal(subject.template.numpy(), arrays["templete"])
    assert np.array_equal(subject.mean_head_pose.numpy(), arrays["headmotion"])     # incl. the scale (7th value)
    assert np.array_equal(subject.mean_torso.numpy(), arrays["shoulder"])
    assert np.array_equal(subject.reference_image.numpy(), image)
    assert torch.equal(subject.style_vector(), torch.from_numpy(arrays["sub_info"]).reshape(-1))  # float32 input
    means = subject.track_means()                         # the unused repr eye/lip equal the template subsets
    assert np.array_equal(means["eyes"].numpy(), arrays["eye"]) and np.array_equal(means["mouth"].numpy(),
                                                                                     arrays["lip"])

    # the subject file keeps float64; the CLI writes the same file
    saved = Subject.load(subject.save(tmp_path / "cathy.safetensors"))
    assert saved.means_float64 and torch.equal(saved.template, subject.template)
    assert torch.equal(saved.mean_head_pose, subject.mean_head_pose)
    from moda_core.cli import main
    assert main(["import-subject", str(folder), "--out", str(tmp_path / "cli.safetensors"), "--name", "cathy"]) == 0
    from_cli = Subject.load(tmp_path / "cli.safetensors")
    assert from_cli.name == "cathy" and torch.equal(from_cli.mean_torso, subject.mean_torso)
    assert torch.equal(from_cli.reference_image, subject.reference_image)


def test_reference_pth_written_with_numpy_1(golden, tmp_path):
    """The authors' file was pickled under numpy 1.x, whose arrays name numpy.core.multiarray._reconstruct."""
    arrays, image = golden
    folder = write_authors_folder(tmp_path / "Cathy", arrays, image)
    with zipfile.ZipFile(folder / "reference.pth") as archive:
        entries = [(info, archive.read(info.filename)) for info in archive.infolist()]
    with zipfile.ZipFile(folder / "reference.pth", "w") as archive:
        for info, data in entries:
            if info.filename.endswith("data.pkl"):
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
                assert b"numpy.core.multiarray\n_reconstruct" in data
            archive.writestr(info, data)
    assert np.array_equal(import_subject(folder).reference_image.numpy(), image)


def test_float32_subjects_and_old_files_are_unchanged(golden, tmp_path):
    arrays, image = golden
    subject = Subject(reference_image=image, template=arrays["templete"], mean_head_pose=arrays["headmotion"],
                      mean_torso=arrays["shoulder"])
    assert not subject.means_float64 and subject.template.dtype == torch.float32
    loaded = Subject.load(subject.save(tmp_path / "old.safetensors"))
    assert not loaded.means_float64 and loaded.mean_head_pose.dtype == torch.float32


def test_png_reference_instead_of_pth(golden, tmp_path):
    arrays, image = golden
    folder = write_authors_folder(tmp_path / "Cathy", arrays, image, reference="png")
    assert np.array_equal(import_subject(folder, name="x").reference_image.numpy(), image)
    small = tmp_path / "Small"
    write_authors_folder(small, arrays, image[::2, ::2].copy(), reference="png")
    assert tuple(import_subject(small).reference_image.shape) == (512, 512, 3)    # resized like the authors


class _RunsCode:
    def __reduce__(self):
        return os.system, ("touch ran_code",)


def test_restricted_unpickler_refuses_a_code_running_pickle(golden, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, image = golden
    folder = tmp_path / "Evil"
    folder.mkdir()
    np.savez(folder / "repr.npz", **{k: golden[0][k] for k in REPR_KEYS})
    torch.save({"example_files": ["x"], "examples": [image], "payload": _RunsCode()}, folder / "reference.pth")
    with pytest.raises(AuthorsSubjectError) as err:
        import_subject(folder)
    assert "reference.pth" in str(err.value) and ".system" in str(err.value)
    assert not (tmp_path / "ran_code").exists()
    # a plain pickle and a legacy (non-zip) torch.save file are refused the same way
    with open(tmp_path / "plain.pkl", "wb") as handle:
        pickle.dump({"examples": [_RunsCode()]}, handle)
    torch.save({"examples": [_RunsCode()]}, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    for name in ("plain.pkl", "legacy.pth"):
        with pytest.raises(AuthorsSubjectError, match="refusing to load"):
            load_restricted_pickle(tmp_path / name)
    assert not (tmp_path / "ran_code").exists()
    assert not list(tmp_path.glob("*.safetensors"))


def test_reference_pth_errors(golden, tmp_path):
    arrays, image = golden
    folder = write_authors_folder(tmp_path / "P", arrays, image)
    cases = {"tensor": {"examples": [torch.zeros(512, 512, 3, dtype=torch.uint8)]},
             "object array": {"examples": [np.array([{"a": 1}], dtype=object)]},
             "no examples": {"example_files": ["x.png"]},
             "float image": {"examples": [image.astype(np.float32)]},
             "empty image": {"examples": [image[:0]]}}
    messages = {"tensor": "torch objects", "object array": "Python objects", "no examples": "'examples'",
                "float image": "uint8 RGB", "empty image": r"uint8 RGB image \[H, W, 3\], got uint8 \[0, 512, 3\]"}
    for case, content in cases.items():
        torch.save(content, folder / "reference.pth")
        with pytest.raises(AuthorsSubjectError, match=messages[case]) as err:
            import_subject(folder)
        assert str(folder / "reference.pth") in str(err.value), case
    (folder / "reference.pth").write_bytes(b"not a pickle at all")
    with pytest.raises(AuthorsSubjectError, match="damaged or not a pickle"):
        import_subject(folder)
    with zipfile.ZipFile(folder / "reference.pth", "w") as archive:
        archive.writestr("x/other.txt", "no data.pkl")
    with pytest.raises(AuthorsSubjectError, match="data.pkl"):
        import_subject(folder)


@pytest.mark.parametrize("change, message", [
    ({"headmotion": None}, "missing key 'headmotion'"),
    ({"templete": None}, "missing key 'templete'"),
    ({"shoulder": np.zeros((9, 3))}, r"'shoulder' must have shape \[18, 3\], got \[9, 3\]"),
    ({"lip": np.zeros((40, 2))}, r"'lip' must have shape \[40, 3\]"),
    ({"headmotion": np.array([0, 0, 0, 256, 250, 0, -1.0])}, "scale"),
    ({"templete": np.full((478, 3), np.nan)}, "NaN"),
    ({"shoulder": np.array([{"x": 1}] * 54, dtype=object).reshape(18, 3)}, "Python objects"),
])
def test_bad_repr_npz_errors_name_the_file_and_write_nothing(golden, tmp_path, change, message, capsys):
    arrays, image = golden
    folder = write_authors_folder(tmp_path / "Bad", arrays, image, **change)
    with pytest.raises(AuthorsSubjectError, match=message) as err:
        import_subject(folder)
    assert str(folder / "repr.npz") in str(err.value)
    from moda_core.cli import main
    assert main(["import-subject", str(folder), "--out", str(tmp_path / "new" / "out.safetensors")]) == 2
    assert "repr.npz" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()                   # not even the output folder


def test_repr_npz_bare_array_and_unused_members(golden, tmp_path):
    import io as _io

    arrays, image = golden
    folder = write_authors_folder(tmp_path / "P", arrays, image)
    with open(folder / "repr.npz", "wb") as handle:                  # a .npy saved under the .npz name
        np.save(handle, arrays["templete"])
    with pytest.raises(AuthorsSubjectError, match=r"repr.npz: one bare array \(float64 \[478, 3\]\), not an .npz"):
        import_subject(folder)
    # a member the authors' loader does not use is not read (here one declaring 8 TB of data)
    np.savez(folder / "repr.npz", **{k: arrays[k] for k in REPR_KEYS})
    header = _io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10 ** 12,)})
    with zipfile.ZipFile(folder / "repr.npz", "a") as archive:
        archive.writestr("unused.npy", header.getvalue())
    assert np.array_equal(import_subject(folder).template.numpy(), arrays["templete"])


def test_missing_files(golden, tmp_path):
    arrays, image = golden
    with pytest.raises(AuthorsSubjectError, match="subject folder not found"):
        import_subject(tmp_path / "nowhere")
    folder = write_authors_folder(tmp_path / "NoRef", arrays, image)
    (folder / "reference.pth").unlink()
    assert not is_authors_subject_folder(folder)
    with pytest.raises(AuthorsSubjectError, match="no reference image"):
        import_subject(folder)
    (folder / "repr.npz").unlink()
    with pytest.raises(AuthorsSubjectError, match="repr.npz"):
        import_subject(folder)


def test_imported_means_give_the_authors_points_exactly(golden, parity_dir, tmp_path):
    """The authors add float64 means to the float32 offsets: with the imported subject our projection gives their
    image-space points (1e-8 px) and the very integer coordinates they draw; float32 means would not."""
    from moda_core.projection import project_repr
    from moda_core.repr import TalkingRepr

    arrays, image = golden
    keys = ("smoothed.lip", "smoothed.eye", "smoothed.head", "smoothed.torso", "faco.output_smoothed",
            "points3d.mesh", "points3d.torso", "points2d.mesh", "points2d.torso")
    with safe_open(str(parity_dir / "pipeline" / "pipeline_cathy.safetensors"), framework="pt") as handle:
        stage = {key: handle.get_tensor(key).clone() for key in keys}
    r = TalkingRepr(mouth=stage["smoothed.lip"][None], eyes=stage["smoothed.eye"][None],
                    head_pose=stage["smoothed.head"][None], torso=stage["smoothed.torso"][None],
                    face=stage["faco.output_smoothed"][None], fps=30.0, is_offset=True)
    subject = import_subject(write_authors_folder(tmp_path / "Cathy", arrays, image))
    face, torso = project_repr(r, subject, face_center="authors")
    assert (face - stage["points3d.mesh"]).abs().max() < 1e-8 and (torso - stage["points3d.torso"]).abs().max() < 1e-8
    assert torch.equal(face[..., :2].to(torch.int32), stage["points2d.mesh"])       # truncation toward zero
    assert torch.equal(torso[..., :2].to(torch.int32), stage["points2d.torso"])
    face32, _ = project_repr(r, subject.replace(means_float64=False), face_center="authors")
    assert (face32 - stage["points3d.mesh"]).abs().max() > 1e-6                       # what float64 buys


def _dtype_with_hidden_objects() -> np.dtype:
    """A structured dtype with an object field whose flags say "no objects", as a pickle's BUILD can forge it:
    raw bytes in such an array stand for object pointers (reading one crashes the process)."""
    forged = np.dtype([("a", "O")], align=False, copy=True)
    state = list(forged.__reduce__()[2])
    state[7] = 0                                                 # flags: NPY_ITEM_HASOBJECT etc. cleared
    forged.__setstate__(tuple(state))
    assert not forged.hasobject
    return forged


def test_restricted_unpickler_refuses_forged_dtypes(golden, tmp_path):
    _, image = golden
    fake_pointers = np.ndarray((2,), dtype=_dtype_with_hidden_objects(), buffer=b"A" * 16)   # never read here
    forged_int = np.dtype("i8", False, True)
    forged_int.__setstate__((3, "<", None, None, None, -1, -1, 1))                         # "holds references"
    cases = {"hidden object field": fake_pointers, "void scalar": fake_pointers[0],
             "forged flags": np.ndarray((1,), dtype=forged_int, buffer=b"A" * 8)}
    for case, payload in cases.items():
        torch.save({"example_files": ["x"], "examples": [image], "extra": [payload]}, tmp_path / "reference.pth")
        with pytest.raises(AuthorsSubjectError, match=r"reference.pth: holds (an array|a numpy scalar) of dtype "
                                                      r"('\|V8'|'<i8').*only plain numeric"):
            load_restricted_pickle(tmp_path / "reference.pth")
    del cases, fake_pointers
    (tmp_path / "direct.pkl").write_bytes(b"\x80\x02cnumpy\nndarray\nK\x01\x85R.")      # numpy.ndarray((1,))
    with pytest.raises(AuthorsSubjectError, match="calls numpy.ndarray directly"):
        load_restricted_pickle(tmp_path / "direct.pkl")
    (tmp_path / "bytes.pkl").write_bytes(b"\x80\x02c__builtin__\nbytes\nJ\x00\x00\x00\x40\x85R.")  # bytes(2**30)
    with pytest.raises(AuthorsSubjectError, match="calls bytes"):
        load_restricted_pickle(tmp_path / "bytes.pkl")


def test_restricted_unpickler_reads_empty_arrays_and_bytes(tmp_path):
    torch.save({"examples": [np.zeros((0, 512, 3), np.uint8)], "raw": b"", "names": []}, tmp_path / "empty.pth")
    loaded = load_restricted_pickle(tmp_path / "empty.pth")
    assert loaded["examples"][0].shape == (0, 512, 3) and loaded["raw"] == b""


def test_restricted_unpickler_shared_self_referencing_and_deep_containers(tmp_path):
    loop = [np.arange(3)]
    loop.append(loop)
    shared = ["name"]
    for value in (loop, {"a": shared, "b": shared, "c": (), "d": ()}):
        with open(tmp_path / "plain.pkl", "wb") as handle:
            pickle.dump(value, handle, protocol=2)
        loaded = load_restricted_pickle(tmp_path / "plain.pkl")
        assert type(loaded) is type(value) and len(loaded) == len(value)
    depth = 5000                                                # deeper than Python's recursion limit
    (tmp_path / "deep.pkl").write_bytes(b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b".")
    deep = load_restricted_pickle(tmp_path / "deep.pkl")
    for _ in range(depth - 1):
        (deep,) = deep
    assert deep == []
    with open(tmp_path / "plain.pkl", "wb") as handle:
        pickle.dump([loop, {"x": [np.array([{"a": 1}], dtype=object)]}], handle, protocol=2)
    with pytest.raises(AuthorsSubjectError, match=r"holds an array of dtype '\|O'.*Python objects"):
        load_restricted_pickle(tmp_path / "plain.pkl")
