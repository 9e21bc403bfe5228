"""`moda preview`: condition images of a loudness-driven motion (or an R) as an mp4, no network needed."""
from moda_core.cli import main
from moda_core.preprocess.video import probe_video, read_frames
from moda_core.subject import Subject


def test_preview_from_photo_saves_subject_and_muxes_audio(tmp_path, data_dir, capsys):
    out, saved = tmp_path / "clips" / "preview.mp4", tmp_path / "subject.safetensors"
    assert main(["preview", "--image", str(data_dir / "portraits" / "macron.png"), "--models",
                 str(data_dir / "models"), "--audio", str(data_dir / "audio" / "en_hdtf_radio31.wav"),
                 "--save-subject", str(saved), "--out", str(out)]) == 0
    info = probe_video(out)
    assert (info.width, info.height, info.has_audio) == (512, 512, True)
    assert abs(info.duration - 8.0) < 0.1                       # the audio's length at 30 fps
    assert Subject.load(saved).name == "macron"
    assert "moda preview: wrote" in capsys.readouterr().out


def test_preview_side_by_side_from_subject(tmp_path, data_dir):
    from moda_core.preprocess import subject_from_photo

    subject, _ = subject_from_photo(data_dir / "portraits" / "macron.png", models_dir=data_dir / "models")
    subject.save(tmp_path / "subject.safetensors")
    out = tmp_path / "side.mp4"
    assert main(["preview", "--subject", str(tmp_path / "subject.safetensors"), "--seconds", "0.5", "--fps", "20",
                 "--side-by-side", "--out", str(out)]) == 0
    info = probe_video(out)
    assert (info.width, info.height, info.num_frames, info.has_audio) == (1024, 512, 10, False)
    first = next(read_frames(out, 20))[2]
    reference = subject.reference_float().reshape(512, 512, 3).numpy() * 255   # left half: the reference crop
    assert abs(first[:, :512].astype(float) - reference).mean() < 6


def test_preview_refuses_other_containers(tmp_path, data_dir, capsys):
    assert main(["preview", "--subject", str(tmp_path / "s.safetensors"), "--out", str(tmp_path / "x.gif")]) == 2
    assert "--out must end in .mp4" in capsys.readouterr().err
    assert not (tmp_path / "x.gif").exists()
