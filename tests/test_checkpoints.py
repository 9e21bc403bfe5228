"""Our .safetensors format (round trip, strict errors, atomic writes), authors' checkpoint conversion and CLI."""
from __future__ import annotations

import json
from collections import OrderedDict

import pytest
import torch
from safetensors.torch import save_file

from moda_core import checkpoints
from moda_core.checkpoints import (FORMAT_VERSION, KINDS, build_model, convert_authors_checkpoint,
                                   describe_checkpoint, detect_kind, load_model, read_authors_checkpoint,
                                   save_model)
from moda_core.cli import main as cli_main


def _tiny_model(kind: str, seed: int = 0) -> torch.nn.Module:
    """A tiny network of ``kind`` with every state_dict entry randomised (BatchNorm statistics included)."""
    config_class, _ = checkpoints.model_classes(kind)
    model = build_model(kind, config_class.tiny())
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif tensor.dtype == torch.int64:
                tensor.fill_(int(torch.randint(1, 100, (), generator=generator)))
    return model


def _assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    state_a, state_b = a.state_dict(), b.state_dict()
    assert list(state_a) == list(state_b)
    for key in state_a:
        assert state_a[key].dtype == state_b[key].dtype, key
        assert torch.equal(state_a[key], state_b[key]), key


def _our_file(path, tensors: dict, kind: str, config, version: str = FORMAT_VERSION):
    save_file(tensors, str(path),
              metadata={"moda_format": version, "kind": kind, "config": json.dumps(config.to_dict())})
    return path


@pytest.fixture(scope="module")
def faco_tiny():
    return _tiny_model("faco")


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_is_bit_exact(tmp_path, kind):
    model = _tiny_model(kind)
    path = save_model(model, tmp_path / f"{kind}.safetensors")
    loaded = load_model(path, kind=kind)
    assert type(loaded) is type(model) and loaded.config == model.config and not loaded.training
    _assert_same_state(model, loaded)
    info = describe_checkpoint(path)
    assert (info.kind, info.config) == (kind, model.config)
    assert info.num_parameters == checkpoints.count_parameters(model)
    assert info.num_tensors == len(model.state_dict())


def test_load_casts_dtype(tmp_path, faco_tiny):
    path = save_model(faco_tiny, tmp_path / "faco.safetensors")
    loaded = load_model(path, dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in loaded.parameters())
    with pytest.raises(ValueError, match="dtype"):
        load_model(path, dtype=torch.int32)


def test_save_rejects_kind_mismatch(tmp_path, faco_tiny):
    with pytest.raises(ValueError, match="renderer"):
        save_model(faco_tiny, tmp_path / "x.safetensors", kind="renderer")


def test_save_is_atomic(tmp_path, faco_tiny, monkeypatch):
    path = save_model(faco_tiny, tmp_path / "faco.safetensors")
    before = path.read_bytes()

    def failing_save(tensors, filename, metadata=None):
        with open(filename, "wb") as handle:
            handle.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoints, "save_file", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_model(_tiny_model("faco", seed=1), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["faco.safetensors"]


def test_missing_key_is_named(tmp_path, faco_tiny):
    state = dict(faco_tiny.state_dict())
    state.pop("decoder.layers.6.bias")
    path = _our_file(tmp_path / "missing.safetensors", state, "faco", faco_tiny.config)
    with pytest.raises(ValueError, match=r"missing\.safetensors.*1 missing key.*decoder\.layers\.6\.bias"):
        load_model(path)


def test_unexpected_key_is_named(tmp_path, faco_tiny):
    state = dict(faco_tiny.state_dict(), **{"decoder.layers.8.weight": torch.zeros(2)})
    path = _our_file(tmp_path / "extra.safetensors", state, "faco", faco_tiny.config)
    with pytest.raises(ValueError, match=r"1 unexpected key.*decoder\.layers\.8\.weight"):
        load_model(path)


def test_wrong_shape_is_named(tmp_path, faco_tiny):
    state = dict(faco_tiny.state_dict())
    state["decoder.layers.0.bias"] = torch.zeros(3)
    path = _our_file(tmp_path / "shape.safetensors", state, "faco", faco_tiny.config)
    with pytest.raises(ValueError, match=r"wrong shape.*decoder\.layers\.0\.bias \(file \[3\], model \[16\]\)"):
        load_model(path)
    with pytest.raises(ValueError, match="decoder.layers.0.bias"):
        describe_checkpoint(path)


def test_truncated_file(tmp_path, faco_tiny):
    path = save_model(faco_tiny, tmp_path / "cut.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.safetensors.*truncated or corrupt"):
        load_model(path)


def test_unknown_format_version(tmp_path, faco_tiny):
    path = _our_file(tmp_path / "v9.safetensors", dict(faco_tiny.state_dict()), "faco", faco_tiny.config,
                     version="9")
    with pytest.raises(ValueError, match=r"v9\.safetensors.*moda_format version '9'"):
        load_model(path)


def test_foreign_safetensors_and_kind_mismatch(tmp_path, faco_tiny):
    foreign = tmp_path / "foreign.safetensors"
    save_file(dict(faco_tiny.state_dict()), str(foreign))
    with pytest.raises(ValueError, match="moda convert"):
        load_model(foreign)
    path = save_model(faco_tiny, tmp_path / "faco.safetensors")
    with pytest.raises(ValueError, match="holds a faco network, expected renderer"):
        load_model(path, kind="renderer")
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "absent.safetensors")


def _authors_file(path, state: dict, prefix: str = "module."):
    """torch.save a state_dict the way DataParallel training writes it (prefix + _metadata attribute)."""
    saved = OrderedDict((prefix + key, value) for key, value in state.items())
    saved._metadata = OrderedDict({"": {"version": 1}, "module": {"version": 1}})
    torch.save(saved, path)
    return path


def test_convert_strips_module_prefix(tmp_path, faco_tiny):
    src = _authors_file(tmp_path / "best_FaCo_G.pkl", faco_tiny.state_dict())
    assert list(read_authors_checkpoint(src)) == list(faco_tiny.state_dict())
    written = convert_authors_checkpoint(src, config=faco_tiny.config)
    assert written == tmp_path / "best_FaCo_G.safetensors"
    _assert_same_state(faco_tiny, load_model(written, kind="faco"))


def test_convert_infers_renderer_width_and_depth(tmp_path):
    renderer = _tiny_model("renderer")
    src = _authors_file(tmp_path / "Cathy.pth", renderer.state_dict(), prefix="")
    written = convert_authors_checkpoint(src, tmp_path / "out" / "renderer.safetensors")
    loaded = load_model(written, kind="renderer")
    assert (loaded.config.ngf, loaded.config.num_levels) == (renderer.config.ngf, renderer.config.num_levels)
    _assert_same_state(renderer, loaded)


def test_convert_moda_with_legacy_weight_norm_names(tmp_path):
    moda = _tiny_model("moda")
    legacy = OrderedDict(
        (key.replace(".parametrizations.weight.original0", ".weight_g")
            .replace(".parametrizations.weight.original1", ".weight_v"), value)
        for key, value in moda.state_dict().items())
    assert any(key.endswith(".weight_g") for key in legacy)
    src = _authors_file(tmp_path / "MODA.pkl", legacy)
    assert detect_kind(read_authors_checkpoint(src)) == "moda"
    written = convert_authors_checkpoint(src, config=moda.config)
    _assert_same_state(moda, load_model(written, kind="moda"))


def test_convert_mismatch_is_a_clear_error(tmp_path, faco_tiny):
    src = _authors_file(tmp_path / "FaCo.pkl", faco_tiny.state_dict())
    with pytest.raises(ValueError, match=r"FaCo\.pkl.*wrong shape.*subject_encoder\.layers\.0\.weight"):
        convert_authors_checkpoint(src)        # the authors' default config is much wider than tiny
    assert not (tmp_path / "FaCo.safetensors").exists()
    with pytest.raises(ValueError, match="overwrite"):
        convert_authors_checkpoint(src, src)


def test_pickled_objects_are_refused(tmp_path):
    src = tmp_path / "evil.pkl"
    torch.save({"weight": torch.zeros(2), "payload": _NotATensor()}, src)
    with pytest.raises(ValueError, match=r"evil\.pkl.*refused.*weights_only"):
        read_authors_checkpoint(src)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match=r"garbage\.pth.*not a readable torch checkpoint"):
        read_authors_checkpoint(garbage)


class _NotATensor:
    pass


@pytest.mark.parametrize("kind", KINDS)
def test_detect_kind(kind):
    config_class, _ = checkpoints.model_classes(kind)
    assert detect_kind(build_model(kind, config_class.tiny(), device="meta").state_dict()) == kind


def test_detect_kind_unknown():
    with pytest.raises(ValueError, match="cannot tell"):
        detect_kind({"encoder.weight": torch.zeros(1)})


def test_cli_info(capsys, tmp_path, faco_tiny):
    assert cli_main(["info"]) == 0
    printed = capsys.readouterr().out
    assert "96.72" in printed and "76.21" in printed and "1.90" in printed and "20.95" in printed
    assert cli_main(["info", "--tiny"]) == 0
    path = save_model(faco_tiny, tmp_path / "faco.safetensors")
    assert cli_main(["info", str(path)]) == 0
    printed = capsys.readouterr().out
    assert "faco" in printed and f"{checkpoints.count_parameters(faco_tiny):,}" in printed


def test_cli_convert(capsys, tmp_path, faco_tiny):
    src = _authors_file(tmp_path / "FaCo.pkl", faco_tiny.state_dict())
    config_file = tmp_path / "faco_config.json"
    config_file.write_text(json.dumps(faco_tiny.config.to_dict()))
    out = tmp_path / "converted.safetensors"
    assert cli_main(["convert", str(src), "--kind", "faco", "--config", str(config_file), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out and out.is_file()
    _assert_same_state(faco_tiny, load_model(out))
    assert cli_main(["convert", str(src)]) == 2           # default config does not fit: reported, not raised
    assert "wrong shape" in capsys.readouterr().err


def test_written_files_get_the_usual_mode(tmp_path):
    import os
    import stat

    from moda_core.fileio import current_umask
    from moda_core.models.faco import FaCoConfig, FaCoNet
    path = save_model(FaCoNet(FaCoConfig.tiny()), tmp_path / "faco.safetensors")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~current_umask()
