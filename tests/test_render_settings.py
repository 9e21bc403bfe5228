"""Renderer files record how they were trained (TPE, face centre) and inference follows them."""
import pytest
import torch

from moda_core.checkpoints import read_metadata, save_model
from moda_core.geometry import CANONICALISATION_FACE_CENTER
from moda_core.models.faco import FaCoConfig, FaCoNet
from moda_core.models.moda import MODAConfig, MODANet
from moda_core.models.renderer import RendererConfig, RenderGenerator
from moda_core.pipeline import AnimateOptions, MODAModels, condition_batches, render_stream
from moda_core.render_settings import METADATA_KEY, RenderSettings
from moda_core.tpe import AUTHORS_TRAIN_OFFSET, TPEConfig
from test_repr import make_repr, make_subject


def test_settings_round_trip_through_the_weight_file(tmp_path):
    settings = RenderSettings(tpe=TPEConfig(offset=AUTHORS_TRAIN_OFFSET), face_center=CANONICALISATION_FACE_CENTER)
    path = save_model(RenderGenerator(RendererConfig.tiny()), tmp_path / "renderer.safetensors",
                      extra_metadata={METADATA_KEY: settings.to_json()})
    assert RenderSettings.of_weight_file(path) == settings
    plain = save_model(RenderGenerator(RendererConfig.tiny()), tmp_path / "plain.safetensors")
    assert RenderSettings.of_weight_file(plain) == RenderSettings()          # authors' inference settings
    assert read_metadata(plain)["kind"] == "renderer"
    with pytest.raises(ValueError, match="may not replace"):
        save_model(RenderGenerator(RendererConfig.tiny()), tmp_path / "x.safetensors", extra_metadata={"kind": "x"})
    with pytest.raises(ValueError, match="damaged render_settings"):
        RenderSettings.from_json("{}")


def test_models_load_settings_and_inference_follows_them(tmp_path):
    torch.manual_seed(0)
    save_model(MODANet(MODAConfig.tiny()), tmp_path / "moda.safetensors")
    save_model(FaCoNet(FaCoConfig.tiny()), tmp_path / "faco.safetensors")
    trained = RenderSettings(face_center=CANONICALISATION_FACE_CENTER)
    save_model(RenderGenerator(RendererConfig.tiny()), tmp_path / "renderer.safetensors",
               extra_metadata={METADATA_KEY: trained.to_json()})
    models = MODAModels.load(tmp_path)
    assert models.render_settings == trained
    subject, r = make_subject(), make_repr(samples=1, frames=3, face=False).replace(is_offset=True)
    r = r.replace(mouth=r.mouth * 0, eyes=r.eyes * 0, torso=r.torso * 0, head_pose=r.head_pose * 0)
    debug = torch.cat(list(render_stream(models, r, subject, AnimateOptions(layout="debug"))))
    size = models.render_size
    drawn = {center: next(condition_batches(r, subject, batch_size=3, face_center=center, size=size))[1]
             for center in (CANONICALISATION_FACE_CENTER, (256.0, 235.0, 128.0))}
    assert torch.equal(debug[:, :, 2 * size:], drawn[CANONICALISATION_FACE_CENTER])
    assert not torch.equal(drawn[CANONICALISATION_FACE_CENTER], drawn[(256.0, 235.0, 128.0)])
    explicit = torch.cat(list(render_stream(models, r, subject, AnimateOptions(layout="debug",
                                                                               face_center=(256.0, 235.0, 128.0)))))
    assert torch.equal(explicit[:, :, 2 * size:], drawn[(256.0, 235.0, 128.0)])
