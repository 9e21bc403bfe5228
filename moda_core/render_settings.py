"""How a renderer expects its inputs: the TPE form/offset and the face centre its condition images used.

Our trainer records these in the renderer's weight file (metadata ``render_settings``) so that inference draws
and encodes frames the way the renderer was trained. Files without it (e.g. converted authors' checkpoints)
get the authors' inference settings: TPE ``t/1000`` with offset 0 and face centre (256, 235, 128).
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field

from moda_core.geometry import AUTHORS_INFERENCE_FACE_CENTER
from moda_core.tpe import TPEConfig

METADATA_KEY = "render_settings"


@dataclass(frozen=True)
class RenderSettings:
    tpe: TPEConfig = field(default_factory=TPEConfig)
    face_center: tuple[float, float, float] = AUTHORS_INFERENCE_FACE_CENTER

    def to_json(self) -> str:
        return json.dumps({"tpe": dataclasses.asdict(self.tpe), "face_center": list(self.face_center)})

    @classmethod
    def from_json(cls, text: str) -> "RenderSettings":
        try:
            data = json.loads(text)
            return cls(tpe=TPEConfig(**data["tpe"]), face_center=tuple(float(v) for v in data["face_center"]))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise ValueError(f"damaged render_settings metadata ({err})") from None

    @classmethod
    def of_weight_file(cls, path: str | os.PathLike) -> "RenderSettings":
        """The settings recorded in a renderer file, or the authors' inference settings."""
        from moda_core.checkpoints import read_metadata

        text = read_metadata(path).get(METADATA_KEY)
        return cls() if text is None else cls.from_json(text)
