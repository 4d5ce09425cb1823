"""Options dataclasses from their dict form (YAML, JSON, a checkpoint's record), typed:
each value checked against its field's type, so a stored record that does not fit this
version is an error naming the key, not a crash later."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping

from recog.data.utterance import ConfigError

T = typing.TypeVar("T")


def from_dict(cls: type[T], data: Mapping, prefix: str = "") -> T:
    """``cls`` (an options dataclass) built from its dict form (``dataclasses.asdict``, YAML,
    a checkpoint's record): groups by their types, absent keys at their defaults. A key
    ``cls`` does not have, or a value of the wrong type, is a ConfigError naming it."""
    if not isinstance(data, Mapping):
        raise ConfigError(prefix.rstrip(".") or cls.__name__,
                          f"expected a mapping, not {data!r:.60}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(f"{prefix}{key}", f"not an option of {cls.__name__}")
        kwargs[key] = _typed_value(hints[key], value, f"{prefix}{key}")
    return cls(**kwargs)


def _typed_value(tp: object, value: object, key: str) -> object:
    """``value`` as type ``tp`` (dataclass, optional, list, tuple, bool, int, float, str)."""
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, f"{key}.")  # type: ignore[arg-type]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        (tp,) = [a for a in args if a is not type(None)]
        return _typed_value(tp, value, key)
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(key, f"expected a list, not {value!r:.60}")
        kinds = args[:1] * len(value) if origin is list or args[-1:] == (...,) else args
        if len(kinds) != len(value):
            raise ConfigError(key, f"expected {len(kinds)} values, not {len(value)}")
        return origin(_typed_value(k, v, f"{key}[{i}]")
                      for i, (k, v) in enumerate(zip(kinds, value, strict=True)))
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp in (bool, int, str) and type(value) is tp:
        return value
    raise ConfigError(key, f"expected {getattr(tp, '__name__', tp)}, not {value!r:.60}")
