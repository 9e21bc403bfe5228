"""The evaluation mini-protocol end to end on a tiny training budget."""
import json

from moda_core.cli import main


def test_protocol_reports_every_metric(data_dir, tmp_path, capsys):
    import torch

    from moda_core.models.syncnet import SyncNet, SyncNetConfig

    torch.save(SyncNet(SyncNetConfig.tiny()).state_dict(), tmp_path / "syncnet_v2.model")
    code = main(["protocol", str(data_dir / "video" / "may_5s.mp4"), "--out", str(tmp_path / "run"), "--minutes",
                 "0.05", "--models", str(data_dir / "models"), "--format", "json", "--no-progress",
                 "--syncnet", str(tmp_path / "syncnet_v2.model")])
    assert code == 0
    out = capsys.readouterr().out
    table = json.loads(out[out.index("{"):])
    rows = {row["name"]: row for row in table["metrics"]}
    for name in ("LMD", "LMD-v", "PSNR", "SSIM", "TCM"):
        assert not rows[name]["skipped"], rows[name]
    assert rows["LMD"]["value"] > 0 and 0 < rows["SSIM"]["value"] < 1
    assert rows["sharpness ratio"]["value"] > 0 and "landmark follow" in rows       # the renderer's face region
    assert (tmp_path / "run" / "protocol-held-out.mp4").is_file()
    assert rows["Sync"]["value"] is not None or rows["Sync"]["skipped"].startswith("error: SyncNet: no face"), rows

