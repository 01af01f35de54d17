"""The fair share of a cluster's slots among its grids (`orchestrator/planning/share.py`): a
pure function, tested here on the issue's examples and the cases a lab's cluster meets."""

from __future__ import annotations

import itertools

import pytest

from orchestrator.planning.share import Claim, allocate


def shares(capacity: float, *claims: Claim, pool: str = "CPU") -> dict[str, int]:
    return allocate(claims, {pool: capacity})


def test_weights_split_the_slots_when_both_want_more_than_there_are():
    # the target: 4 one-CPU slots, A weight 1, B weight 3
    got = shares(4, Claim("a", demand=10, weight=1), Claim("b", demand=10, weight=3))
    assert got == {"a": 1, "b": 3}


def test_equal_weights_share_equally_whatever_the_demands():
    # not Determined's 2 and 6 (share by weight x demand): the big grid would starve the
    # small one, which is what the issue is about (module docstring)
    got = shares(8, Claim("a", demand=10), Claim("b", demand=30))
    assert got == {"a": 4, "b": 4}
    got = shares(8, Claim("a", demand=10, weight=3), Claim("b", demand=30))
    assert got == {"a": 6, "b": 2}
    got = shares(8, Claim("small", demand=10), Claim("big", demand=2000))
    assert got == {"small": 4, "big": 4}


def test_a_grid_under_its_share_leaves_the_rest_to_the_others():
    got = shares(8, Claim("a", demand=1, weight=5), Claim("b", demand=30), Claim("c", demand=2))
    assert got == {"a": 1, "b": 5, "c": 2}
    assert sum(got.values()) == 8  # no slot idles while a grid has work


def test_a_grid_with_no_work_waiting_takes_no_share():
    got = shares(4, Claim("idle", demand=0, weight=100), Claim("b", demand=9))
    assert got == {"idle": 0, "b": 4}


def test_priority_comes_before_any_weight():
    got = shares(
        4,
        Claim("a", demand=10, weight=1),
        Claim("b", demand=10, weight=3),
        Claim("urgent", demand=3, priority=1),
    )
    assert got == {"urgent": 3, "a": 0, "b": 1}
    got = shares(4, Claim("a", demand=10, weight=9), Claim("urgent", demand=10, priority=1))
    assert got == {"a": 0, "urgent": 4}
    # the lower priority takes what the higher one cannot use
    got = shares(4, Claim("a", demand=10), Claim("lower", demand=10, priority=-1))
    assert got == {"a": 4, "lower": 0}


def test_ties_go_to_the_larger_weight_then_to_the_earlier_grid():
    got = shares(3, Claim("a", demand=9, since=2.0), Claim("b", demand=9, since=1.0))
    assert got == {"a": 1, "b": 2}
    got = shares(1, Claim("a", demand=9, weight=2, since=2.0), Claim("b", demand=9, since=1.0))
    assert got == {"a": 1, "b": 0}


def test_a_trial_of_two_cpus_takes_two_of_the_pool():
    got = shares(8, Claim("wide", demand=10, size=2.0), Claim("narrow", demand=10, size=1.0))
    # equal weights: equal CPUs, 4 each: 2 trials of 2 CPUs, 4 of 1
    assert got == {"wide": 2, "narrow": 4}
    # a slot too small for the wide grid's next trial goes to one that fits
    got = shares(5, Claim("wide", demand=10, size=2.0), Claim("narrow", demand=1, size=1.0))
    assert got == {"wide": 2, "narrow": 1}


def test_pools_do_not_compete_and_fractions_fit():
    claims = [
        Claim("gpu", demand=4, pool="GPU", size=0.5),
        Claim("cpu", demand=4, pool="CPU"),
        Claim("nowhere", demand=4, pool="TPU"),
    ]
    got = allocate(claims, {"CPU": 2.0, "GPU": 1.0})
    assert got == {"gpu": 2, "cpu": 2, "nowhere": 0}
    assert allocate([Claim("a", 3, size=0.1)], {"CPU": 0.3}) == {"a": 3}
    assert allocate([], {"CPU": 4}) == {}


@pytest.mark.parametrize("capacity", [1, 2, 3, 5, 8, 16])
def test_every_allocation_is_within_demand_and_capacity_and_idles_nothing(capacity):
    for demands in itertools.product([0, 1, 2, 5, 20], repeat=3):
        for weights in ((1, 1, 1), (1, 2, 3), (5, 1, 1)):
            claims = [
                Claim(g, demand=d, weight=w, since=i)
                for i, (g, d, w) in enumerate(zip("abc", demands, weights, strict=True))
            ]
            got = shares(capacity, *claims)
            assert all(got[c.grid] <= c.demand for c in claims)
            assert sum(got.values()) == min(capacity, sum(demands))
            # water-filling: a grid short of its demand would, with one more slot, hold at
            # least as much per weight as any other grid holds
            for c, d in itertools.permutations(claims, 2):
                if got[c.grid] < c.demand:
                    assert got[d.grid] / d.weight <= (got[c.grid] + 1) / c.weight + 1e-9
