"""The shared loop: CSV, best-by-validation weights, resume after a stop or Ctrl-C, budgets."""
from __future__ import annotations

import csv

import pytest
import torch

from moda_core.checkpoints import load_model
from moda_core.models.faco import FaCoConfig
from moda_core.train import FaCoTrainConfig, LoopConfig, train_faco
from moda_core.train.faco_trainer import FaCoTask
from test_train_common import _seeded, sample, sample_dir  # noqa: F401  (fixtures)

CONFIG = FaCoTrainConfig(window=16, lr=3e-3)


def _rows(folder) -> list[dict[str, str]]:
    with (folder / "runs" / "faco" / "losses.csv").open() as handle:
        return list(csv.DictReader(handle))


def _adam_steps(folder) -> set[int]:
    state = torch.load(folder / "runs" / "faco" / "last" / "state.pt", weights_only=True)
    return {int(s["step"]) for s in state["optimizers"]["faco"]["state"].values()}


def test_csv_best_weights_and_resume(sample, tmp_path):
    # 72 train frames, window 16, hop 5 -> 12 windows -> 3 steps per epoch with batches of 4
    first = train_faco([sample], tmp_path, model_config=FaCoConfig.tiny(), config=CONFIG,
                       loop=LoopConfig(max_steps=10, batch_size=4, progress=False))
    assert (first.step, first.stopped_by) == (10, "steps")
    rows = _rows(tmp_path)
    assert [int(r["step"]) for r in rows] == [3, 6, 9, 10]              # after every epoch, and at the stop
    assert {"epoch", "seconds", "train_g", "train_d", "train_l1", "val_loss"} <= set(rows[0])
    best_row = min(rows, key=lambda r: float(r["val_loss"]))
    assert first.best_step == int(best_row["step"])
    assert _adam_steps(tmp_path) == {10}

    resumed = train_faco([sample], tmp_path, model_config=FaCoConfig.tiny(), config=CONFIG,
                         loop=LoopConfig(max_steps=17, batch_size=4, progress=False))
    assert resumed.step == 17 and _adam_steps(tmp_path) == {17}       # counter and Adam state carried on
    rows = _rows(tmp_path)
    assert [int(r["step"]) for r in rows] == [3, 6, 9, 10, 12, 15, 17]  # one CSV, the curve continues
    assert float(rows[-1]["train_l1"]) < float(rows[0]["train_l1"])
    exported = load_model(tmp_path / "faco.safetensors", kind="faco")
    best = load_model(tmp_path / "runs" / "faco" / "best" / "faco.safetensors", kind="faco")
    assert all(torch.equal(v, best.state_dict()[k]) for k, v in exported.state_dict().items())


def test_ctrl_c_saves_a_resumable_state(sample, tmp_path, monkeypatch):
    original = FaCoTask.train_step
    calls = []

    def interrupt_at_eight(self, batch):
        calls.append(1)
        if len(calls) == 8:
            raise KeyboardInterrupt
        return original(self, batch)

    monkeypatch.setattr(FaCoTask, "train_step", interrupt_at_eight)
    with pytest.raises(KeyboardInterrupt):
        train_faco([sample], tmp_path, model_config=FaCoConfig.tiny(), config=CONFIG,
                   loop=LoopConfig(max_steps=20, batch_size=4, progress=False))
    state = torch.load(tmp_path / "runs" / "faco" / "last" / "state.pt", weights_only=True)
    assert (state["step"], state["epoch"], state["epoch_step"]) == (7, 2, 1)   # 3 steps per epoch
    monkeypatch.setattr(FaCoTask, "train_step", original)
    result = train_faco([sample], tmp_path, model_config=FaCoConfig.tiny(), config=CONFIG,
                        loop=LoopConfig(max_steps=8, batch_size=4, progress=False))
    assert (result.step, result.epoch) == (8, 2)                        # continued inside epoch 2


def test_resume_refuses_another_config(sample, tmp_path):
    train_faco([sample], tmp_path, model_config=FaCoConfig.tiny(), config=CONFIG,
               loop=LoopConfig(max_steps=1, progress=False))
    with pytest.raises(ValueError, match="different config"):
        train_faco([sample], tmp_path, model_config=FaCoConfig(), config=CONFIG,
                   loop=LoopConfig(max_steps=2, progress=False))


def test_time_budget_stops(sample, tmp_path):
    result = train_faco([sample], tmp_path, model_config=FaCoConfig.tiny(), config=CONFIG,
                        loop=LoopConfig(max_minutes=0.0, progress=False))
    assert result.stopped_by == "minutes" and result.step == 0
    assert (tmp_path / "faco.safetensors").is_file()                   # the initial weights are still exported
