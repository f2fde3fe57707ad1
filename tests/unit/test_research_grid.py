"""Sweep grids: parsing, expansion and the influence ranking (no services)."""

from __future__ import annotations

import pytest

from huracan.research.errors import InvalidGrid
from huracan.research.grid import (
    DEFAULT_GRID,
    expand_grid,
    influence_ranking,
    parse_axis,
    parse_grid,
    pivot,
)


def test_parse_axis_when_values_listed_then_parsed_as_yaml_scalars() -> None:
    key, values = parse_axis("risk.max_active_trades = 10, 20.5, true, net")

    assert key == "risk.max_active_trades"
    assert values == (10, 20.5, True, "net")


@pytest.mark.parametrize("text", ["no_equals", "=1,2", "risk.x=", "risk.x= , ,", "risk.x=1,1"])
def test_parse_axis_when_malformed_then_invalid_grid(text: str) -> None:
    with pytest.raises(InvalidGrid):
        parse_axis(text)


def test_parse_grid_when_key_repeats_then_invalid_grid_names_it() -> None:
    with pytest.raises(InvalidGrid, match=r"risk\.a"):
        parse_grid(["risk.a=1,2", "risk.a=3"])


def test_expand_grid_when_three_axes_then_full_factorial_last_axis_fastest() -> None:
    points = expand_grid({"a": [1, 2], "b": ["x", "y", "z"], "c": [0.5]})

    assert len(points) == 6
    assert [p.point_id for p in points] == ["p000", "p001", "p002", "p003", "p004", "p005"]
    assert [tuple(p.values.values()) for p in points] == [
        (1, "x", 0.5), (1, "y", 0.5), (1, "z", 0.5),
        (2, "x", 0.5), (2, "y", 0.5), (2, "z", 0.5),
    ]  # fmt: skip
    assert len({tuple(p.values.items()) for p in points}) == 6


def test_expand_grid_when_more_than_a_thousand_points_then_ids_stay_sortable() -> None:
    points = expand_grid({"a": list(range(40)), "b": list(range(30))})

    ids = [p.point_id for p in points]
    assert ids == sorted(ids)
    assert ids[0] == "p0000"
    assert ids[-1] == "p1199"


@pytest.mark.parametrize("grid", [{}, {"a": []}])
def test_expand_grid_when_empty_then_invalid_grid(grid: dict[str, list[int]]) -> None:
    with pytest.raises(InvalidGrid):
        expand_grid(grid)


def test_default_grid_when_expanded_then_covers_risk_cost_and_exit_keys() -> None:
    keys = list(DEFAULT_GRID)

    assert len(expand_grid(DEFAULT_GRID)) == 27
    assert {k.split(".")[0] for k in keys} == {"risk", "costs", "exits"}


def test_influence_ranking_when_metric_depends_on_one_axis_then_it_explains_all() -> None:
    points = [p.values for p in expand_grid({"noise": [1, 2, 3], "driver": [10, 20]})]
    metric = [float(p["driver"]) * 3 for p in points]

    ranking = influence_ranking(points, metric, ["noise", "driver"])

    assert ranking[0] == ("driver", pytest.approx(1.0))
    assert ranking[1] == ("noise", pytest.approx(0.0))


def test_influence_ranking_when_additive_effects_then_shares_match_variance_split() -> None:
    # metric = 10·a + b over a 2×2 grid: var from a is 100·(0.25), from b 0.25 → 100/101, 1/101
    points = [p.values for p in expand_grid({"b": [0, 1], "a": [0, 1]})]
    metric = [10.0 * p["a"] + p["b"] for p in points]

    ranking = influence_ranking(points, metric, ["b", "a"])

    assert [k for k, _ in ranking] == ["a", "b"]
    assert ranking[0][1] == pytest.approx(100 / 101)
    assert ranking[1][1] == pytest.approx(1 / 101)
    assert sum(s for _, s in ranking) == pytest.approx(1.0)


def test_influence_ranking_when_metric_constant_or_missing_then_zero_in_key_order() -> None:
    points = [p.values for p in expand_grid({"a": [1, 2], "b": [3, 4]})]

    assert influence_ranking(points, [5.0] * 4, ["a", "b"]) == [("a", 0.0), ("b", 0.0)]
    assert influence_ranking(points, [None] * 4, ["a", "b"]) == [("a", 0.0), ("b", 0.0)]


def test_influence_ranking_when_some_metrics_missing_then_left_out() -> None:
    points = [{"a": 1}, {"a": 2}, {"a": 2}]

    ranking = influence_ranking(points, [1.0, 3.0, None], ["a"])

    assert ranking == [("a", pytest.approx(1.0))]


def test_pivot_when_two_axes_then_means_over_the_third() -> None:
    points = [p.values for p in expand_grid({"a": [1, 2], "b": [3, 4], "c": [0, 1]})]
    metric = [p["a"] * 100 + p["b"] * 10 + p["c"] for p in points]

    rows, cols, cells = pivot(points, metric, "a", "b")

    assert rows == [1, 2]
    assert cols == [3, 4]
    assert cells == [[130.5, 140.5], [230.5, 240.5]]


def test_serial_executor_when_task_raises_then_task_failed_names_the_key() -> None:
    from huracan.research.errors import TaskFailed
    from huracan.research.executor import SerialExecutor

    def task(spec: dict[str, int]) -> dict[str, int]:
        if spec["x"] == 2:
            raise ValueError("two")
        return {"y": spec["x"] * 10}

    seen: list[tuple[str, int, int]] = []
    with SerialExecutor() as ex:
        ok = ex.run(
            task, {"a": {"x": 1}, "c": {"x": 3}}, on_done=lambda k, _r, n, t: seen.append((k, n, t))
        )
        with pytest.raises(TaskFailed, match="task b failed: ValueError: two") as info:
            ex.run(task, {"a": {"x": 1}, "b": {"x": 2}})

    assert ok == {"a": {"y": 10}, "c": {"y": 30}}
    assert seen == [("a", 1, 2), ("c", 2, 2)]
    assert info.value.key == "b"


def test_keyed_when_key_repeats_then_executor_error() -> None:
    from huracan.research.errors import ExecutorError
    from huracan.research.executor import keyed

    with pytest.raises(ExecutorError, match="'p1'"):
        keyed([("p1", {}), ("p1", {})])
