"""Editing R between stages: pure functions ``edit(r, ..., subject=None) -> TalkingRepr``.

* :mod:`.head_pose`: gain, offset, smoothing, clamp, freeze, keyframes, blend with another R's pose.
* :mod:`.eyes`: openness, blink detection / rate, adding and removing blinks, openness gain, gaze offset.
* :mod:`.mouth`: mouth openness, lip amplitude that keeps closed lips closed, torso gain.
* :mod:`.timing`: trim, time shift, loop to a length.
* :mod:`.keyframes`: keyframe / time specs, ease-in/out of any edit.
* :mod:`.curves_io`: curves as CSV / JSON and back.
* :mod:`.plots`: curve plots and landmark overlays (images).

Edits never write into their input and return R with only the tracks they target changed (eye and mouth
edits also move the same points of ``face`` when R has one).
"""
from moda_core.editing.curves_io import CURVE_COLUMNS, apply_curves, curves_table, load_curves, save_curves
from moda_core.editing.eyes import (add_blinks, add_blinks_at, blink_rate, detect_blinks, eye_openness,
                                    remove_blinks, scale_eye_openness, set_eye_openness, shift_gaze)
from moda_core.editing.head_pose import (blend_head_pose, clamp_head_pose, freeze_head_pose, keyframe_head_pose,
                                         offset_head_pose, scale_head_pose, smooth_head_pose)
from moda_core.editing.keyframes import ease_edit, keyframe_curve, parse_keyframes, parse_times
from moda_core.editing.mouth import mouth_openness, scale_mouth, scale_torso, set_mouth_openness
from moda_core.editing.plots import overlay_landmarks, plot_curves
from moda_core.editing.timing import loop, time_shift, trim

__all__ = [
    "CURVE_COLUMNS", "apply_curves", "curves_table", "load_curves", "save_curves",
    "add_blinks", "add_blinks_at", "blink_rate", "detect_blinks", "eye_openness", "remove_blinks",
    "scale_eye_openness", "set_eye_openness", "shift_gaze",
    "blend_head_pose", "clamp_head_pose", "freeze_head_pose", "keyframe_head_pose", "offset_head_pose",
    "scale_head_pose", "smooth_head_pose",
    "ease_edit", "keyframe_curve", "parse_keyframes", "parse_times",
    "mouth_openness", "scale_mouth", "scale_torso", "set_mouth_openness",
    "overlay_landmarks", "plot_curves",
    "loop", "time_shift", "trim",
]
