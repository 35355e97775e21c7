"""``Record``: the base of the project's frozen value types, which are dataclasses declared
``@dataclass(frozen=True, eq=False, repr=False)`` on a subclass of ``Record``.

They compare, hash and print exactly as ``@dataclass(frozen=True)`` makes them do on Python 3.11
and 3.12 (3.13 also takes a field shared by both objects as equal to itself): equal when of
the same class with equal fields (``compare=True``), hashed on the fields a frozen dataclass
hashes (``hash=True``, or ``hash=None`` and ``compare=True``), shown as ``Name(field=value,
...)`` with the ``repr=True`` fields; but those three methods are shared here instead of being
generated for every class.

Why: Python 3.11's ``dataclasses`` compiles every generated method from source text when the
class is defined, about 0.05 ms each; a frozen dataclass with ``eq`` and ``repr`` gets six
(``__init__``, ``__repr__``, ``__eq__``, ``__hash__``, ``__setattr__``, ``__delattr__``). Every
command defines some forty of these classes at import, a no-op apply included, and three methods
fewer each is about a third of that time (``bench/startup_bench.py``). ``__init__`` and the
frozen ``__setattr__``/``__delattr__`` stay dataclasses' own.

``tests/core/test_record.py`` holds every subclass to the dataclass behaviour it replaces.
"""

from __future__ import annotations

import dataclasses
import reprlib
from collections.abc import Callable
from operator import attrgetter
from typing import Any

_Getter = Callable[[Any], tuple[Any, ...]]


class Record:
    """A frozen value type (see the module). Raises nothing of its own."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        compared = _shape(self.__class__)[0]
        return compared(self) == compared(other)

    def __hash__(self) -> int:
        return hash(_shape(self.__class__)[1](self))

    @reprlib.recursive_repr()
    def __repr__(self) -> str:
        shown = _shape(self.__class__)[2]
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in shown)
        return f"{self.__class__.__qualname__}({inner})"


# class -> (the compared fields' values, the hashed fields' values, the shown fields' names)
_SHAPES: dict[type, tuple[_Getter, _Getter, tuple[str, ...]]] = {}


def _shape(cls: type) -> tuple[_Getter, _Getter, tuple[str, ...]]:
    found = _SHAPES.get(cls)
    if found is None:
        fields = dataclasses.fields(cls)
        compared = tuple(f.name for f in fields if f.compare)
        hashed = tuple(f.name for f in fields if f.hash or (f.hash is None and f.compare))
        found = _SHAPES[cls] = (_getter(compared), _getter(hashed),
                                tuple(f.name for f in fields if f.repr))
    return found


def _getter(names: tuple[str, ...]) -> _Getter:
    """The values of ``names`` of an object, as a tuple (as a frozen dataclass compares and
    hashes them)."""
    if len(names) > 1:
        return attrgetter(*names)
    if names:
        one = attrgetter(names[0])
        return lambda obj: (one(obj),)
    return lambda obj: ()
