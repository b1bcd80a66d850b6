"""One base class for every group of hyperparameters: a frozen dataclass read from and written to
plain dicts (JSON files, settings, a model set's manifest).

``from_dict`` is strict: a key the class does not have is refused with its name (a typo would
otherwise silently give the default), and a value of the wrong type is refused with the field's
name and the type expected. JSON's numbers are converted where nothing is lost: an int where a
float is expected, an integral float where an int is, a list where a tuple is. A field whose type is
itself a ``Config`` is read from a nested dict, so groups compose instead of repeating fields::

    @dataclass(frozen=True)
    class MyStage(Config):
        weight: float = 0.1
        window_days: int = 30

    MyStage.from_dict({"weight": 0.2})      # MyStage(weight=0.2, window_days=30)
    MyStage.from_dict({"wieght": 0.2})      # ConfigError: MyStage has no field 'wieght' ...
"""
from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from functools import cache
from typing import Any, TypeVar

__all__ = ["Config", "ConfigError"]

C = TypeVar("C", bound="Config")


class ConfigError(ValueError):
    """A dict that is not a valid config; the message names the class, the key and what was expected."""


@dataclasses.dataclass(frozen=True)
class Config:
    """Base of the hyperparameter groups. Subclasses are ``@dataclass(frozen=True)`` with defaults."""

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any] | None) -> C:
        """The config with ``data``'s values over the defaults; unknown keys and wrong types raise
        ``ConfigError``."""
        if data is None:
            return cls()
        if isinstance(data, cls):
            return data
        if not isinstance(data, Mapping):
            raise ConfigError(f"{cls.__name__}: expected a dict of fields, got {type(data).__name__}")
        hints = _field_types(cls)
        unknown = [key for key in data if key not in hints]
        if unknown:
            raise ConfigError(f"{cls.__name__} has no field {unknown[0]!r} (fields: {', '.join(hints)})")
        values = {name: _convert(value, hints[name], f"{cls.__name__}.{name}", _default(cls, name))
                  for name, value in data.items()}
        try:
            return cls(**values)
        except (TypeError, ValueError) as error:
            if isinstance(error, ConfigError):
                raise
            raise ConfigError(f"{cls.__name__}: {error}") from None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values: nested configs as dicts, tuples as lists."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def replace(self: C, **changes: Any) -> C:
        """A copy with ``changes``, checked like ``from_dict``."""
        return type(self).from_dict({**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}, **changes})


@cache
def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def _type_name(kind: Any) -> str:
    if isinstance(kind, type):
        return kind.__name__
    return str(kind).replace("typing.", "")


def _default(cls: type, name: str) -> Any:
    field = cls.__dataclass_fields__[name]
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def _convert(value: Any, kind: Any, where: str, default: Any = None) -> Any:
    """``value`` as the annotated ``kind``, or ConfigError naming ``where`` and the type expected.
    A dict for a nested config applies over ``default`` when that is one (else over its class's defaults)."""
    if kind is Any:
        return value
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None:
            if type(None) in options:
                return None
            raise ConfigError(f"{where}: expected {_type_name(kind)}, got None")
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, where, default)
            except ConfigError as error:
                errors.append(error)
        if len(errors) == 1:  # X | None: X's own message (a nested config's names the nested key)
            raise errors[0]
        raise ConfigError(f"{where}: expected {_type_name(kind)}, got {type(value).__name__} {value!r}")
    if origin is typing.Literal:
        if value in typing.get_args(kind):
            return value
        raise ConfigError(f"{where}: expected one of {', '.join(map(repr, typing.get_args(kind)))}, got {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected {_type_name(kind)}, got {type(value).__name__} {value!r}")
        args = typing.get_args(kind)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(item, args[0], f"{where}[{i}]") for i, item in enumerate(value))
        if args and len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        if not args:
            return tuple(value)
        return tuple(_convert(item, arg, f"{where}[{i}]") for i, (item, arg) in enumerate(zip(value, args)))
    if origin in (dict, Mapping) or kind is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a dict, got {type(value).__name__} {value!r}")
        return dict(value)
    if origin is list or kind is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        return list(value)
    if isinstance(kind, type) and issubclass(kind, Config):
        if isinstance(value, kind):
            return value
        if isinstance(value, Mapping):
            if isinstance(default, kind):
                value = {**{f.name: getattr(default, f.name) for f in dataclasses.fields(default)}, **value}
            return kind.from_dict(value)
        raise ConfigError(f"{where}: expected {kind.__name__} (a dict of its fields), got {type(value).__name__}")
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind is str:
        if isinstance(value, str):
            return value
    elif isinstance(kind, type):
        if isinstance(value, kind):
            return value
    else:  # an annotation this reader does not interpret: taken as given
        return value
    raise ConfigError(f"{where}: expected {_type_name(kind)}, got {type(value).__name__} {value!r}")


def _plain(value: Any) -> Any:
    if isinstance(value, Config):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value
