"""``core.record.Record``: every frozen value type of the package compares, hashes and prints
exactly as the ``@dataclass(frozen=True)`` it replaces would (``core.record`` says why it exists:
start-up time). Each class is checked against a twin made by ``dataclasses`` itself from the same
fields, on instances that differ in one field at a time."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from typing import Any

import pytest

import reconciler
from reconciler.core.model.common import Mark
from reconciler.core.model.vm import CloudInit
from reconciler.core.record import Record


def _all_records() -> list[type[Record]]:
    for module in pkgutil.walk_packages(reconciler.__path__, "reconciler."):
        importlib.import_module(module.name)
    out: list[type[Record]] = []
    todo = list(Record.__subclasses__())
    while todo:
        cls = todo.pop()
        out.append(cls)
        todo.extend(cls.__subclasses__())
    return sorted(out, key=lambda c: f"{c.__module__}.{c.__qualname__}")


RECORDS = _all_records()


def _made(cls: type, values: dict[str, Any]) -> Any:
    """An instance of ``cls`` holding ``values``, made without its ``__init__`` (whose checks
    and types do not matter here)."""
    obj = object.__new__(cls)
    for name, value in values.items():
        object.__setattr__(obj, name, value)
    return obj


def _twin(cls: type) -> type:
    """A ``@dataclass(frozen=True)`` with ``cls``'s fields and their compare, hash and repr."""
    fields = [(f.name, Any, dataclasses.field(default=None, compare=f.compare, hash=f.hash,
                                              repr=f.repr))
              for f in dataclasses.fields(cls)]
    return dataclasses.make_dataclass(cls.__name__, fields, frozen=True)


def test_the_package_has_its_value_types_as_records() -> None:
    assert len(RECORDS) > 60
    names = {c.__name__ for c in RECORDS}
    assert {"LiveVM", "VMSpec", "Plan", "Action", "Step", "LiveState", "Config"} <= names


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: f"{c.__module__}.{c.__qualname__}")
def test_a_record_is_a_frozen_dataclass_with_the_shared_methods(cls: type) -> None:
    assert dataclasses.is_dataclass(cls)
    params = cls.__dataclass_params__  # type: ignore[attr-defined]
    assert params.frozen, "a Record is @dataclass(frozen=True, eq=False, repr=False)"
    # eq=False, repr=False: the methods are Record's, not generated (or the time is not saved)
    assert (cls.__eq__, cls.__hash__, cls.__repr__) == (
        Record.__eq__, Record.__hash__, Record.__repr__)


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: f"{c.__module__}.{c.__qualname__}")
def test_a_record_compares_hashes_and_prints_as_its_dataclass_twin(cls: type) -> None:
    twin = _twin(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    base = {name: i for i, name in enumerate(names)}
    a, ta = _made(cls, base), _made(twin, base)
    assert repr(a) == repr(ta).replace(twin.__qualname__, cls.__qualname__, 1)
    assert hash(a) == hash(ta)
    assert a == _made(cls, base)
    assert (a != _made(cls, base)) is False  # __ne__ follows __eq__
    for name in names:
        changed = {**base, name: "other"}
        b, tb = _made(cls, changed), _made(twin, changed)
        assert (a == b) is (ta == tb), name
        assert (hash(a) == hash(b)) is (hash(ta) == hash(tb)), name
        assert repr(b) == repr(tb).replace(twin.__qualname__, cls.__qualname__, 1)
    assert a != ta  # another class is never equal, as between two dataclasses
    assert a.__eq__(base) is NotImplemented


def test_fields_left_out_of_compare_hash_and_repr_stay_out() -> None:
    """The cases the twins cover, on real values: a mark's applied values do not make two marks
    differ; cloud-init user data never shows in a repr (a log, a traceback)."""
    one = Mark("web.yaml", "abc", None, {"disks": []})
    two = Mark("web.yaml", "abc", None, {"disks": [{"name": "root"}]})
    assert one == two and hash(one) == hash(two)
    assert {one, two} == {one}
    seed = CloudInit("d1", user_data="#cloud-config\npassword: hunter2\n")
    assert "hunter2" not in repr(seed) and repr(seed) == "CloudInit(digest='d1', pool='default')"
    assert seed == CloudInit("d1", user_data="other") != CloudInit("d2")
    with pytest.raises(dataclasses.FrozenInstanceError):
        seed.pool = "other"  # type: ignore[misc]


def test_a_record_holding_itself_prints_as_a_dataclass_does() -> None:
    """``reprlib.recursive_repr``, as dataclasses have it: ``...``, not a RecursionError."""
    mark = Mark("web.yaml", "abc", None, {})
    object.__setattr__(mark, "commit", mark)
    assert repr(mark).startswith("Mark(manifest='web.yaml', spec_hash='abc', commit=..., ")
