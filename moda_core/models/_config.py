"""Shared behaviour of the flat network config dataclasses: dict round trips and positive-int checks."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, fields
from typing import Any, TypeVar

_Config = TypeVar("_Config", bound="ConfigMixin")


class ConfigMixin:
    """For ``@dataclass(frozen=True)`` configs; error messages name the concrete class."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls: type[_Config], data: Mapping[str, Any]) -> _Config:
        unknown = sorted(set(data) - {field.name for field in fields(cls)})
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown fields {unknown}")
        return cls(**data)

    def _check_positive_ints(self, names: Iterable[str] | None = None) -> None:
        """Every field named in ``names`` (default: all fields) must be an int >= 1."""
        for name in (field.name for field in fields(self)) if names is None else names:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{type(self).__name__}.{name} must be a positive int, got {value!r}")
