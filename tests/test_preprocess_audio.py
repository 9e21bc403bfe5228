"""Audio loading (PyAV) and resampling (soxr HQ, as librosa.load) -> 16 kHz mono float32."""
from __future__ import annotations

import av
import numpy as np
import pytest
import torch
from scipy.io import wavfile

from moda_core.preprocess import AUDIO_RATE, PreprocessError, load_audio, resample_audio

# durations from data/SOURCES.md
DURATIONS = {"audio/en_hdtf_radio31.wav": 8.00, "audio/zh_news.wav": 8.00, "audio/moda_00083.wav": 11.46,
             "audio/ja_song_clean.wav": 12.93, "video/may_5s.mp4": 5.00, "video/vr_man_5s.mp4": 5.01}
ONE_FRAME = 1 / 30


@pytest.mark.parametrize("name", sorted(DURATIONS))
def test_load_audio_duration_and_format(data_dir, name):
    waveform, rate = load_audio(data_dir / name)
    assert rate == AUDIO_RATE
    assert waveform.dtype == np.float32 and waveform.ndim == 1
    assert abs(len(waveform) / rate - DURATIONS[name]) <= ONE_FRAME
    assert 0.01 < np.abs(waveform).max() < 1.5


def _encode(path, codec, samples: np.ndarray, rate: int):
    """Write int16 stereo ``[2, N]`` samples with PyAV (test fixture for compressed formats)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples.T.reshape(1, -1)), format="s16",
                                           layout="stereo")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


@pytest.mark.parametrize("suffix,codec", [(".mp3", "libmp3lame"), (".m4a", "aac")])
def test_load_compressed_files(tmp_path, data_dir, suffix, codec):
    rate, pcm = wavfile.read(data_dir / "audio/zh_news.wav")                 # 48 kHz stereo s16
    path = tmp_path / f"speech{suffix}"
    _encode(path, codec, pcm.T.copy(), rate)
    waveform, out_rate = load_audio(path)
    reference, _ = load_audio(data_dir / "audio/zh_news.wav")
    assert out_rate == AUDIO_RATE
    assert abs(len(waveform) - len(reference)) <= AUDIO_RATE * 0.1          # codec padding / priming
    assert np.abs(waveform).max() == pytest.approx(np.abs(reference).max(), rel=0.2)


def test_load_audio_from_file_object(data_dir):
    with open(data_dir / "audio/moda_00083.wav", "rb") as handle:
        waveform, _ = load_audio(handle)
    assert np.array_equal(waveform, load_audio(data_dir / "audio/moda_00083.wav")[0])


def test_resample_audio_matches_file_decoder(data_dir):
    rate, pcm = wavfile.read(data_dir / "audio/zh_news.wav")
    stereo = pcm.T.astype(np.float32) / 32768.0                                # [2, N] at 48 kHz
    from_memory = resample_audio(torch.from_numpy(stereo), rate)
    from_file, _ = load_audio(data_dir / "audio/zh_news.wav")
    assert from_memory.dtype == np.float32 and from_memory.shape == from_file.shape == (-(-pcm.shape[0] // 3),)
    assert np.array_equal(from_memory, from_file)          # one resampler for files and ComfyUI AUDIO
    import soxr                                            # librosa.load's default: soxr "HQ" on the float32 mean
    assert np.array_equal(from_file, soxr.resample(stereo.mean(axis=0), rate, AUDIO_RATE, quality="soxr_hq"))


def test_resample_audio_shapes_and_mono():
    tone = np.sin(2 * np.pi * 440 * np.arange(22050) / 22050).astype(np.float32)
    assert resample_audio(tone, 22050).shape == (16000,)
    assert np.array_equal(resample_audio(tone, 16000), tone)                   # same rate: unchanged
    stereo = np.stack([tone, -tone])
    assert np.allclose(resample_audio(stereo, 22050), 0.0, atol=1e-6)        # channels averaged
    with pytest.raises(PreprocessError, match="shape"):
        resample_audio(np.zeros((1, 2, 100)), 16000)


def test_missing_audio_file(tmp_path):
    with pytest.raises(PreprocessError, match="not found"):
        load_audio(tmp_path / "missing.wav")


def test_file_without_audio_track(tmp_path):
    path = tmp_path / "silent.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for _ in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    with pytest.raises(PreprocessError, match="no audio track"):
        load_audio(path)


def test_not_an_audio_file(tmp_path):
    path = tmp_path / "text.wav"
    path.write_text("not audio")
    with pytest.raises(PreprocessError, match="cannot decode audio"):
        load_audio(path)
