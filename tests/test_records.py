"""``Record``: the immutable value classes plans are made of."""

from __future__ import annotations

import pytest

from kodelyth_ecc.plan import PlanConfig, WorkerSpec
from kodelyth_ecc.records import Record


class Point(Record):
    x: int
    y: int = 0
    tags: tuple[str, ...] = ()


def test_fields_follow_annotation_order_with_defaults() -> None:
    assert Point._fields == ("x", "y", "tags")
    assert Point(1) == Point(x=1, y=0, tags=())
    assert Point(1, 2, ("a",)).tags == ("a",)


def test_missing_unknown_and_repeated_fields_are_errors() -> None:
    with pytest.raises(TypeError, match="missing field 'x'"):
        Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected or repeated field 'z'"):
        Point(1, z=3)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected or repeated field 'x'"):
        Point(1, x=2)  # type: ignore[misc]
    with pytest.raises(TypeError, match="takes 3 fields"):
        Point(1, 2, (), 4)  # type: ignore[call-arg]


def test_records_are_immutable_and_replace_makes_a_copy() -> None:
    point = Point(1, 2)
    with pytest.raises(AttributeError, match="immutable"):
        point.x = 5  # type: ignore[misc]
    with pytest.raises(AttributeError, match="immutable"):
        del point.x
    moved = point._replace(y=7)
    assert (point.y, moved.y, moved.x) == (2, 7, 1)
    assert moved._asdict() == {"x": 1, "y": 7, "tags": ()}


def test_equality_hash_and_repr() -> None:
    assert Point(1, 2) == Point(1, 2)
    assert Point(1, 2) != Point(2, 1)
    assert hash(Point(1, 2)) == hash(Point(1, 2))
    assert len({Point(1, 2), Point(1, 2), Point(3)}) == 2
    assert repr(Point(1)) == "Point(x=1, y=0, tags=())"


def test_subclass_of_a_record_extends_its_fields() -> None:
    class Point3(Point):
        z: int = 0

    assert Point3._fields == ("x", "y", "tags", "z")
    assert Point3(1, z=3).z == 3
    assert Point3(1) != Point(1)


def test_plan_classes_are_records() -> None:
    spec = WorkerSpec("a", "task a")
    config = PlanConfig(session_name="s", repo_root="/r", workers=(spec,))
    assert config.base_ref == "HEAD"
    assert dict(config.extra_meta) == {}
    assert config._replace(base_ref="main").base_ref == "main"
    assert config.base_ref == "HEAD"
