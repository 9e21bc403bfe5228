"""MODA Evaluate node through the ComfyUI doubles."""
from __future__ import annotations

import json

import pytest
import torch
from comfy_harness import *  # noqa: F401,F403  (fixtures)
from comfy_harness import run_node
from test_cli_eval import _absolute_repr


def test_schema(moda_nodes):
    schema = moda_nodes["MODA_Evaluate"].GET_SCHEMA()
    assert schema.is_output_node and schema.category == "MODA" and schema.description
    assert all(i.tooltip for i in schema.inputs)
    assert [o.io_type for o in schema.outputs] == ["STRING"]


def test_table_values(moda_nodes):
    node = moda_nodes["MODA_Evaluate"]
    reference = _absolute_repr()
    generated = reference.replace(mouth=reference.mouth + torch.tensor([0.0, 2.0, 0.0]))
    frames = torch.rand(4, 32, 32, 3)
    out = run_node(node, format="json", generated=generated, reference=reference, generated_frames=frames,
                   reference_frames=frames.clone())
    rows = {row["name"]: row for row in json.loads(out.result[0])["metrics"]}
    assert abs(rows["LMD"]["value"] - 2.0) < 1e-4 and rows["PSNR"]["value"] == 100.0
    assert out.ui is not None


def test_errors_name_the_input(moda_nodes):
    node = moda_nodes["MODA_Evaluate"]
    with pytest.raises(ValueError, match="MODA Evaluate: input 'generated': nothing to evaluate"):
        run_node(node, format="text")
    with pytest.raises(ValueError, match="input 'reference_frames'"):
        run_node(node, format="text", generated_frames=torch.rand(2, 8, 8, 3))
