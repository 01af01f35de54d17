"""results.tables.stats against numbers computed elsewhere: t tables, R's and scipy's tests on
Student's sleep data, Holm's correction by hand, and exact (noncentral t) sample sizes.

Every expected number is hard-coded here, so the tests need no scipy."""

from __future__ import annotations

import math

import pytest

from results.tables import stats

# Cushny & Peebles' sleep data (Student 1908), R's `sleep`: extra hours of sleep of ten
# patients under two drugs. R: t.test(extra ~ group, data = sleep, paired = TRUE) gives
# t = -4.0621, df = 9, p-value = 0.002833; without `paired`, Welch: t = -1.8608,
# df = 17.776, p-value = 0.07939.
DRUG_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
DRUG_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


@pytest.mark.parametrize(
    "df,quantile",
    [  # two-sided 95 % critical values of any t table (scipy.stats.t.ppf(0.975, df))
        (1, 12.706204736174694),
        (2, 4.302652729749462),
        (3, 3.1824463052837078),
        (9, 2.262157162798205),
        (30, 2.0422724563012373),
        (17.776, 2.102821310380221),  # a Welch df, not a whole number
    ],
)
def test_t_quantile_matches_the_tables(df, quantile):
    assert stats.t_ppf(0.975, df) == pytest.approx(quantile, rel=1e-9)
    assert stats.t_ppf(0.025, df) == pytest.approx(-quantile, rel=1e-9)
    assert stats.t_cdf(quantile, df) == pytest.approx(0.975, abs=1e-12)


def test_t_quantile_textbook_rounding():
    assert round(stats.t_ppf(0.975, 2), 3) == 4.303
    assert round(stats.t_ppf(0.975, 4), 3) == 2.776
    assert round(stats.t_ppf(0.8, 10), 3) == 0.879  # a power quantile


@pytest.mark.parametrize(
    "t,df,p",  # scipy: 2 * scipy.stats.t.sf(t, df)
    [(2.1, 1, 0.282926056243018), (2.1, 9, 0.06511828241215196), (2.1, 100, 0.03824525582128093)],
)
def test_two_sided_tail(t, df, p):
    assert stats.t_sf2(t, df) == pytest.approx(p, rel=1e-9)
    assert stats.t_sf2(-t, df) == pytest.approx(p, rel=1e-9)
    assert stats.t_sf2(math.inf, df) == 0.0


def test_betainc_edges_and_symmetry():
    assert stats.betainc(2.0, 3.0, 0.0) == 0.0 and stats.betainc(2.0, 3.0, 1.0) == 1.0
    # I_x(a, b) = 1 - I_{1-x}(b, a); I_0.5(a, a) = 0.5
    assert stats.betainc(2.5, 0.5, 0.3) == pytest.approx(1 - stats.betainc(0.5, 2.5, 0.7))
    assert stats.betainc(4.0, 4.0, 0.5) == pytest.approx(0.5, abs=1e-14)
    assert stats.betainc(1.0, 1.0, 0.37) == pytest.approx(0.37, abs=1e-14)  # uniform


def test_t_interval():
    # [1, 2, 4]: mean 7/3, std 1.5275, t(0.975, 2) = 4.3027; scipy.stats.t.interval
    low, high = stats.t_interval([1.0, 2.0, 4.0])
    assert low == pytest.approx(-1.461249700263426, rel=1e-9)
    assert high == pytest.approx(6.1279163669300925, rel=1e-9)
    assert stats.t_interval([3.0]) is None and stats.t_interval([]) is None
    assert stats.t_interval([5.0, 5.0]) == (5.0, 5.0)  # no spread: a point, not a made-up one


def test_paired_t_on_the_sleep_data():
    test = stats.paired_t(DRUG_1, DRUG_2)
    assert test.test == "paired t" and test.n == 10 and test.df == 9
    assert test.diff == pytest.approx(-1.58)
    assert test.t == pytest.approx(-4.062127683382037, rel=1e-9)
    assert test.p == pytest.approx(0.002832890197384273, rel=1e-8)
    assert round(test.p, 6) == 0.002833  # R's printout
    assert test.sd == pytest.approx(1.2299954832798732)


def test_welch_t_on_the_sleep_data():
    test = stats.welch_t(DRUG_1, DRUG_2)
    assert test.test == "Welch t" and test.n == 10
    assert test.t == pytest.approx(-1.8608134674868526, rel=1e-9)
    assert test.df == pytest.approx(17.776473516178488, rel=1e-9)
    assert test.p == pytest.approx(0.0793941401873583, rel=1e-8)


def test_tests_without_spread():
    same = stats.paired_t([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert same.p == 1.0 and same.diff == 0.0
    shifted = stats.paired_t([2.0, 3.0, 4.0], [1.0, 2.0, 3.0])
    assert shifted.p == 0.0 and shifted.t == math.inf


def test_holm_by_hand():
    # sorted 0.005 0.01 0.03 0.04 times 4 3 2 1: 0.02 0.03 0.06 0.04 -> monotone 0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.2, 0.9]) == pytest.approx([0.4, 0.9])
    assert stats.holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert stats.holm([0.03]) == [0.03] and stats.holm([]) == []


@pytest.mark.parametrize(
    "diff,sd,paired,n",
    [  # R: power.t.test(delta, sd, sig.level = 0.05, power = 0.8, type): 9.94, 16.71, 63.77
        (1.0, 1.0, True, 10),
        (1.0, 1.0, False, 17),
        (0.5, 1.0, False, 64),
        (-0.5, 1.0, False, 64),  # the sign does not matter
    ],
)
def test_seeds_needed_matches_power_t_test(diff, sd, paired, n):
    assert stats.seeds_needed(diff, sd, paired) == n


def test_seeds_needed_edges():
    assert stats.seeds_needed(0.0, 1.0, True) is None  # equal means: no n separates them
    assert stats.seeds_needed(1e-4, 1.0, False) is None  # past MAX_SEEDS
    assert stats.seeds_needed(1.0, 1.0, True, alpha=0.05 / 3) > 10  # stricter level, more seeds
