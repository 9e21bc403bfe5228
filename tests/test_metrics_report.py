import json

import numpy as np
import pytest
import torch

from moda_core import TalkingRepr
from moda_core.metrics import MetricResult, MetricsReport, evaluate, syncnet_confidence
from moda_core.metrics.syncnet import NO_WEIGHTS_REASON


def make_r(samples=1, frames=8, shift=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    mouth = torch.rand(1, frames, 40, 3, generator=g) * 60 + 220
    eyes = torch.rand(1, frames, 60, 3, generator=g) * 60 + 160
    pose = torch.zeros(1, frames, 7)
    pose[..., 0] = torch.linspace(0, 7, frames)
    pose[..., 6] = 1.0
    mouth, eyes, pose = (x.repeat(samples, 1, 1, *([1] * (x.ndim - 3))) for x in (mouth, eyes, pose))
    mouth = mouth + shift + torch.arange(samples).view(-1, 1, 1, 1)
    return TalkingRepr(mouth=mouth, eyes=eyes, head_pose=pose, torso=torch.zeros(samples, frames, 18, 3), fps=25)


def frames(t=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(t, 32, 32, 3), dtype=np.uint8)


def test_evaluate_everything_it_can():
    gen, ref = make_r(samples=2, shift=3.0), make_r()
    video = frames()
    report = evaluate(gen, ref, generated_frames=video, reference_frames=video, audio=np.zeros(16000),
                      sample_rate=16000)
    values = report.values()
    assert values["LMD"] > 0 and values["LMD-v"] == pytest.approx(0.0, abs=1e-4)
    assert 0 <= values["MA"] < 1
    assert values["PSNR"] == 100.0 and values["SSIM"] == pytest.approx(1.0) and values["TCM"] == 1.0
    assert values["Diversity"] == pytest.approx(0.25 * 40 / 100, rel=1e-4)   # mouth x,y var 0.25; eyes 0
    assert values["pose range yaw"] == pytest.approx(7.0) and values["pose speed yaw"] == pytest.approx(25.0)
    assert report["NIQE"].skipped and report["Sync"].skipped == NO_WEIGHTS_REASON
    assert report["blink rate"].ok
    text, md = report.to_text(), report.to_markdown()
    assert "LMD" in text and "skipped:" in text
    assert md.splitlines()[0] == "| metric | value | unit | better |" and "| PSNR | 100 | dB | ↑ |" in md
    data = json.loads(report.to_json())
    assert data["format"] == "moda-metrics"
    assert {m["name"] for m in data["metrics"]} >= {"LMD", "LMD-v", "MA", "PSNR", "SSIM", "TCM", "NIQE", "Sync"}


def test_evaluate_without_inputs_skips_with_reasons():
    report = evaluate()
    assert len(report) > 10 and all(not r.ok and r.skipped for r in report)
    assert "reference" in report["LMD"].skipped
    single = evaluate(make_r(samples=1))
    assert "2 samples" in single["Diversity"].skipped and single["pose range yaw"].ok


def test_evaluate_reports_invalid_inputs_as_errors():
    report = evaluate(make_r(frames=8), make_r(frames=9))
    assert report["LMD"].skipped.startswith("error:") and "frames" in report["LMD"].skipped


def test_report_table_formats():
    report = MetricsReport([MetricResult("A", 1.23456, "px", False), MetricResult.skip("B", "why | not", "", True)])
    assert report["A"].format_value() == "1.235"
    assert "why \\| not" in report.to_markdown()
    assert report.to_text().splitlines()[0].startswith("A ↓")
    with pytest.raises(KeyError, match="no metric"):
        report["C"]
    assert json.loads(MetricsReport([MetricResult("inf", float("inf"))]).to_json())["metrics"][0]["value"] == "inf"


def test_syncnet_skip_paths(tmp_path):
    video, audio = frames(), torch.zeros(1, 2, 8000)
    rows = syncnet_confidence(video, audio, 16000)
    assert [(r.name, r.value, r.skipped) for r in rows] == [("Sync", None, NO_WEIGHTS_REASON),
                                                            ("Sync-D", None, NO_WEIGHTS_REASON),
                                                            ("Sync offset", None, NO_WEIGHTS_REASON)]
    with pytest.raises(FileNotFoundError, match="syncnet_v2.model"):
        syncnet_confidence(video, audio, 16000, fps=25, weights_path=tmp_path / "missing.model")
    weights = tmp_path / "syncnet_v2.model"
    weights.write_bytes(b"not really weights")
    with pytest.raises(ValueError, match="not a readable torch checkpoint"):
        syncnet_confidence(video, audio, 16000, fps=25, weights_path=weights)


def test_evaluate_reports_sync_problems_as_rows(tmp_path):
    from moda_core.models.syncnet import SyncNet, SyncNetConfig

    network = SyncNet(SyncNetConfig.tiny()).eval()
    report = evaluate(generated_frames=frames(t=3), audio=np.zeros(16000), sample_rate=16000, fps=25,
                      syncnet=network)
    assert report["Sync"].skipped.startswith("error: SyncNet needs at least 7 frames")
    assert report["Sync-D"].skipped == report["Sync"].skipped
    no_rate = evaluate(generated_frames=frames(t=3), audio=np.zeros(16000), sample_rate=16000, syncnet=network)
    assert no_rate["Sync"].skipped == "error: SyncNet needs the frame rate of the frames (fps)"


def test_syncnet_bad_inputs_raise():
    with pytest.raises(ValueError, match="sample_rate"):
        syncnet_confidence(frames(), np.zeros(100), None)
    with pytest.raises(ValueError, match="waveform"):
        syncnet_confidence(frames(), np.zeros((2, 3, 4)), 16000)
    with pytest.raises(ValueError, match="must be frames"):
        syncnet_confidence(np.zeros((3, 32, 32)), np.zeros(100), 16000)
