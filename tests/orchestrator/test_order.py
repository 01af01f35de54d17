"""The order a launch starts its units in (`orchestrator/planning/order.py`): the longest
first by the cost model, corrected by the finished cells' measured wall time, and under a
halving the rows kept together. No Ray and no timing: the costs are given or counted."""

from __future__ import annotations

from orchestrator.execution import launch
from orchestrator.planning import order
from orchestrator.spec.expand import Cell, expand
from results.store import open_store
from results.store.schema import trial_row


def cell(key: str, cost: float = 0.0, **params) -> Cell:
    """A cell whose config carries the stand-in model's seconds per epoch."""
    return Cell(grid="g", key=key, params=params, config={"per_epoch": cost})


def keys(units) -> list[list[str]]:
    return [[c.key for c in u] for u in units]


def test_the_longest_unit_starts_first_and_ties_keep_the_grid_order():
    units = [[cell("a")], [cell("b")], [cell("c")], [cell("d")]]
    costs = {"a": 1.0, "b": 6.0, "c": 1.0, "d": 3.0}
    assert keys(order.longest_first(units, costs)) == [["b"], ["d"], ["a"], ["c"]]


def test_a_pack_costs_its_cells_together():
    units = [[cell("a"), cell("b")], [cell("c")]]
    costs = {"a": 2.0, "b": 2.0, "c": 3.0}
    assert keys(order.longest_first(units, costs)) == [["a", "b"], ["c"]]


def test_under_a_halving_rows_start_longest_first_each_in_the_grid_order():
    units = [[cell(k)] for k in "abcdef"]
    groups = {"a": "x", "b": "y", "c": "x", "d": "z", "e": "y", "f": "z"}
    costs = {"a": 1.0, "b": 5.0, "c": 9.0, "d": 2.0, "e": 4.0, "f": 2.0}
    # rows: x 10, y 9, z 4; inside x, a before c although c is the longer cell
    got = keys(order.longest_first(units, costs, groups))
    assert got == [["a"], ["c"], ["b"], ["e"], ["d"], ["f"]]


def test_corrections_are_medians_per_kind_and_over_all():
    measured = [("k1", 4.0, 2.0), ("k1", 6.0, 2.0), ("k1", 20.0, 2.0), ("k2", 1.0, 1.0)]
    factors, default = order.corrections(measured)
    assert factors == {"k1": 3.0, "k2": 1.0}
    assert default == 2.5  # median of 2, 3, 10, 1
    assert order.corrections([]) == ({}, 1.0)
    assert order.corrections([("k", None, 1.0), ("k", 0.0, 1.0)]) == ({}, 1.0)


def test_a_kind_measured_slower_than_predicted_moves_ahead():
    small, large = cell("s", 1.0, arch="small"), cell("l", 2.0, arch="large")

    def seconds(config, epochs):  # the stand-in model: a large cell is twice a small one
        return config["per_epoch"] * epochs

    def kind(c):
        return c.params["arch"]

    epochs = {"s": 10.0, "l": 10.0}
    plain = order.predicted_costs([small, large], epochs, {}, seconds, kind)
    assert plain == {"s": 10.0, "l": 20.0}
    # a finished small cell took 30 s for 10 epochs the model put at 10 s: small x3, and
    # the large kind, never measured, takes the median over all (also 3)
    done_small = (cell("d", 1.0, arch="small"), 30.0, 10)
    slow = order.predicted_costs([small, large], epochs, {"d": done_small}, seconds, kind)
    assert slow == {"s": 30.0, "l": 60.0}
    # a large cell measured at the model's cost: the small one is now the longer
    done_large = (cell("x", 2.0, arch="large"), 20.0, 10)
    finished = {"d": done_small, "x": done_large}
    mixed = order.predicted_costs([small, large], epochs, finished, seconds, kind)
    assert mixed == {"s": 30.0, "l": 20.0}
    assert keys(order.longest_first([[small], [large]], mixed)) == [["s"], ["l"]]
    # a cell that trained no epoch measured nothing
    idle = (cell("z", 2.0, arch="large"), 99.0, 0)
    assert order.predicted_costs([large], epochs, {"z": idle}, seconds, kind) == {"l": 20.0}


def test_start_order_of_a_launch_counts_flops_then_the_store(tiny_spec, tmp_path):
    spec = tiny_spec("widths", [0.05], grid={"model.width": [0.25, 1.0, 0.5]})
    cells = expand(spec)
    store = open_store(str(tmp_path / "runs"))
    widths = [
        [c.params["model.width"] for c in u] for u in launch.start_order(spec, store, cells, cells)
    ]
    assert widths == [[1.0], [0.5], [0.25]]
    # the finished width-1.0 cell measured its kind at 1/1000 of the model's seconds: the
    # other kinds, never measured, take the same factor, so the order stands; once the
    # 0.5 cell measured far slower, it starts before the wider one
    summary = {"status": "completed", "epochs": 1, "wall_s": 1e-6, "history": []}
    wide = next(c for c in cells if c.params["model.width"] == 1.0)
    store.write_trial(spec.name, wide.key, trial_row(wide, summary, {}), [])
    store.forget()
    rest = [c for c in cells if c.key != wide.key]
    assert [u[0].params["model.width"] for u in launch.start_order(spec, store, rest, cells)] == [
        0.5,
        0.25,
    ]
    half = next(c for c in cells if c.params["model.width"] == 0.5)
    slow = {**summary, "wall_s": 1e6}
    store.write_trial(spec.name, half.key, trial_row(half, slow, {}), [])
    store.forget()
    units = launch.start_order(spec, store, cells, cells)  # --force: every cell runs again
    # the 0.25 kind, never measured, takes the median factor of the two: far above 1.0's
    assert [u[0].params["model.width"] for u in units] == [0.5, 0.25, 1.0]


def test_the_simulation_starts_each_cell_on_the_first_free_slot():
    """benchmarks/share_sim.py's scheduler, on Graham's example of LPT at 7/6 of the
    optimum: 3, 3, 2, 2, 2 on two slots ends at 7, the bound (and the best order) at 6."""
    from benchmarks import share_sim

    end, spans = share_sim.end_time([3.0, 3.0, 2.0, 2.0, 2.0], 2)
    assert end == 7.0 and spans == [(0, 3), (0, 3), (3, 5), (3, 5), (5, 7)]
    assert share_sim.lower_bound([3.0, 3.0, 2.0, 2.0, 2.0], 2) == 6.0
    assert share_sim.lower_bound([9.0, 1.0], 4) == 9.0  # the longest cell bounds it
