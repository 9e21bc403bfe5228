"""MODA Load Authors Subject: the authors' subject folders in models/moda, through the ComfyUI doubles."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from comfy_harness import *  # noqa: F401,F403  (fixtures)
from comfy_harness import ValidationFailed, fingerprint, object_info, run_node
from pipeline_fixtures import *  # noqa: F401,F403  (fixtures: tiny_weights, moda_dir)
from test_authors_subject import golden, write_authors_folder  # noqa: F401  (fixture)

NODE = "MODA_LoadAuthorsSubject"


def options(cls) -> list[str]:
    return object_info(cls)["input"]["required"]["subject_folder"][1]["options"]


def test_lists_and_loads_the_authors_folders(moda_nodes, comfy_dirs, golden):
    arrays, image = golden
    load = moda_nodes[NODE]
    assert options(load) == ["(no authors' subject folder in models/moda)"]
    with pytest.raises(ValidationFailed, match="^MODA Load Authors Subject: input 'subject_folder': no authors'"):
        run_node(load, subject_folder=options(load)[0])

    moda = comfy_dirs.models / "moda"
    write_authors_folder(moda / "cathy", arrays, image)
    write_authors_folder(moda / "meta_dir" / "Other", arrays, image[::-1].copy(), reference="png")
    (moda / "empty").mkdir()
    np.savez(moda / "empty" / "repr.npz", x=np.zeros(3))         # no reference beside it: not listed
    assert options(load) == ["cathy", "meta_dir/Other"]

    subject, preview = run_node(load, subject_folder="cathy").args
    assert subject.name == "cathy" and subject.means_float64
    assert np.array_equal(subject.template.numpy(), arrays["templete"])
    assert np.array_equal(subject.mean_head_pose.numpy(), arrays["headmotion"])
    assert np.array_equal(subject.reference_image.numpy(), image)
    assert preview.shape == (1, 512, 512, 3) and preview.dtype == torch.float32
    other = run_node(load, subject_folder="meta_dir/Other").args[0]
    assert other.name == "Other" and np.array_equal(other.reference_image.numpy(), image[::-1])

    before = fingerprint(load, subject_folder="cathy")
    assert before == fingerprint(load, subject_folder="cathy")
    torch.save({"example_files": ["x"], "examples": [image[:, ::-1].copy()]}, moda / "cathy" / "reference.pth")
    assert fingerprint(load, subject_folder="cathy") != before
    missing = fingerprint(load, subject_folder="gone")
    assert missing != missing                                    # NaN: always re-run, execute says what is wrong


def test_errors_name_the_node_input_and_file(moda_nodes, comfy_dirs, golden):
    arrays, image = golden
    load = moda_nodes[NODE]
    moda = comfy_dirs.models / "moda"
    write_authors_folder(moda / "bad", arrays, image, shoulder=np.zeros((9, 3)))
    with pytest.raises(ValueError, match=r"^MODA Load Authors Subject: input 'subject_folder': cannot load 'bad': "
                                         r".*repr.npz: 'shoulder' must have shape \[18, 3\]"):
        run_node(load, subject_folder="bad")
    with pytest.raises(ValueError, match="points outside models/moda"):
        run_node(load, subject_folder="../../elsewhere")
    with pytest.raises(ValueError, match="'gone' not found in models/moda"):
        run_node(load, subject_folder="gone")


def test_authors_demo_workflow_runs(moda_nodes, moda_dir, data_dir, golden):
    """workflows/api/authors_demo_api.json with tiny networks standing in for the authors' (same file names)."""
    import json

    from comfy_harness import REPO_ROOT
    from test_nodes_pipeline import _core_stand_ins, _execute, _saved_videos

    arrays, image = golden
    write_authors_folder(moda_dir / "cathy", arrays, image)
    (moda_dir / "renderer").mkdir()
    (moda_dir / "renderer" / "cathy.safetensors").symlink_to((moda_dir / "renderer.safetensors").resolve())
    prompt = json.loads((REPO_ROOT / "workflows" / "api" / "authors_demo_api.json").read_text())
    results = _execute(prompt, moda_nodes, _core_stand_ins(data_dir, seconds=0.4, frames=0))
    (video,) = _saved_videos(prompt, results)
    assert video["images"].shape == (12, 64, 64, 3) and video["fps"] == 30.0
    assert torch.isfinite(video["images"]).all() and video["audio"] is not None
