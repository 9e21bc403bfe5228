import numpy as np
import pytest

from moda_core.editing import keyframe_curve, parse_keyframes, parse_times
from moda_core.editing.keyframes import ease_weights, parse_names

FPS, FRAMES = 30.0, 120                       # a 4 s clip


def test_text_and_json_specs_agree():
    frames, values = parse_keyframes("0s: 0, 1.5s: 10; 90f: -5\n4: 2,", FPS, FRAMES)
    assert frames.tolist() == [0, 45, 90, 120] and values.tolist() == [0, 10, -5, 2]
    json_frames, json_values = parse_keyframes('[{"t": 1.5, "value": 10}, {"frame": 0, "value": 0}]', FPS, FRAMES)
    assert json_frames.tolist() == [0, 45] and json_values.tolist() == [0, 10]
    assert parse_keyframes([{"frame": 3, "value": 1}], FPS, FRAMES)[0].tolist() == [3]
    assert parse_keyframes("3: 1", FPS, FRAMES, unit="f")[0].tolist() == [3]


def test_curve_interpolates_and_holds_ends():
    curve = keyframe_curve("1s: 2, 2s: 4", FPS, FRAMES)
    assert curve.shape == (FRAMES,)
    assert curve[0] == 2 and curve[30] == 2 and curve[45] == 3 and curve[60] == 4 and curve[-1] == 4
    cubic = keyframe_curve("0s: 0, 1s: 10, 2s: 0, 3s: 10", FPS, FRAMES, interpolation="cubic")
    assert cubic[[0, 30, 60, 90]] == pytest.approx([0, 10, 0, 10])
    assert cubic.max() <= 10 and cubic.min() >= 0
    assert keyframe_curve("2s: 7", FPS, FRAMES, interpolation="cubic").tolist() == [7.0] * FRAMES


def test_times():
    assert parse_times("2s, 0.5, 30f", FPS, FRAMES).tolist() == [15, 30, 60]
    assert parse_times([1.0, 2.0], FPS, FRAMES).tolist() == [30, 60]


@pytest.mark.parametrize("spec,message", [
    ("0s: 0, 5s: 1", r"keyframes: time '5s' is outside the clip \(0 to 4.000 s"),
    ("-1s: 0", r"keyframes: time '-1s' is outside the clip"),
    ("0s: nan", r"keyframes: value 'nan' at time '0s' is not a finite number"),
    ("0s: ten", r"keyframes: malformed value 'ten'"),
    ("0s 1", r"keyframes: malformed keyframe '0s 1'"),
    ("1x: 1", r"keyframes: malformed time '1x'"),
    ("nan: 1", r"keyframes: malformed time 'nan'"),
    ("1s: 1, 30f: 2", "two keyframes at frame 30"),
    ("", "keyframes is empty"),
    ('[{"t": 1}]', r'needs "value"'),
    ('[{"t": 1, "value": 2', "malformed JSON"),
    ('[{"t": 1, "frame": 3, "value": 2}]', "one of"),
    ('[{"t": 1, "value": 2, "ease": 1}]', "unknown keys"),
])
def test_invalid_keyframes_name_parameter_and_token(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_keyframes(spec, FPS, FRAMES)


def test_invalid_times_and_names():
    with pytest.raises(ValueError, match=r"times: time '9s' is outside the clip"):
        parse_times("1s, 9s", FPS, FRAMES)
    with pytest.raises(ValueError, match=r"blinks: malformed time 'soon'"):
        parse_times("soon", FPS, FRAMES, param="blinks")
    with pytest.raises(ValueError, match="interpolation must be one of linear, cubic"):
        keyframe_curve("0: 1", FPS, FRAMES, interpolation="spline")
    with pytest.raises(ValueError, match=r"axes: unknown name 'wobble'"):
        parse_names("yaw, wobble", ("yaw", "pitch"), param="axes")
    assert parse_names(" ALL ", ("yaw", "pitch"), param="axes") == ("yaw", "pitch")
    assert parse_names(["pitch", "yaw"], ("yaw", "pitch"), param="axes") == ("yaw", "pitch")


def test_ease_weights():
    w = ease_weights(21, 10, 10).numpy()
    assert w[0] == 0 and w[10] == 1 and w[20] == 0 and w[5] == pytest.approx(0.5)
    assert np.array_equal(ease_weights(5).numpy(), np.ones(5))
    with pytest.raises(ValueError, match="ease_in_frames must be between 0"):
        ease_weights(5, -1)
