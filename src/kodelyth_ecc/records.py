"""``Record``: an immutable value class, typed like a frozen dataclass.

Why not ``dataclasses`` or ``typing.NamedTuple``: importing them (with ``inspect``
or ``typing``) costs the CLI 8-20 ms at every start, a fifth of the dry-run's
budget (see benchmarks/bench_swarm.py). Type checkers see a frozen dataclass
through ``dataclass_transform``; at run time a subclass lists its fields by
annotation order and takes defaults from its class body.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar

    from typing_extensions import Self, dataclass_transform
else:

    def dataclass_transform(**_options):
        return lambda obj: obj


_MISSING = object()


@dataclass_transform(frozen_default=True)
class Record:
    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()
    _defaults: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls) -> None:
        fields = list(cls._fields)
        defaults = dict(cls._defaults)
        # Not inspect.get_annotations: importing inspect is what this module avoids.
        for name in cls.__dict__.get("__annotations__", {}):  # noqa: RUF063
            if name.startswith("_") or name in fields:
                continue
            fields.append(name)
            if name in cls.__dict__:
                defaults[name] = cls.__dict__[name]
        cls._fields = tuple(fields)
        cls._defaults = defaults

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if len(args) > len(self._fields):
            raise TypeError(f"{type(self).__name__} takes {len(self._fields)} fields")
        values = dict(zip(self._fields, args, strict=False))
        for name, value in kwargs.items():
            if name not in self._fields or name in values:
                raise TypeError(f"{type(self).__name__}: unexpected or repeated field {name!r}")
            values[name] = value
        for name in self._fields:
            value = values.get(name, self._defaults.get(name, _MISSING))
            if value is _MISSING:
                raise TypeError(f"{type(self).__name__}: missing field {name!r}")
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable; use _replace()")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in self._fields)

    def __hash__(self) -> int:
        return hash(tuple(_hashable(getattr(self, f)) for f in self._fields))

    def __repr__(self) -> str:
        body = ", ".join(f"{f}={getattr(self, f)!r}" for f in self._fields)
        return f"{type(self).__name__}({body})"

    def _replace(self, **changes: Any) -> Self:
        values = {f: getattr(self, f) for f in self._fields}
        values.update(changes)
        return type(self)(**values)

    def _asdict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self._fields}


def _hashable(value: object) -> object:
    try:
        hash(value)
    except TypeError:
        return id(value)
    return value
