"""The statistics of a table over seeds: Student's t, its interval, the paired and Welch tests,
Holm's correction and how many seeds a comparison needs.

Pure Python (`math`, `statistics`): the t distribution comes from the regularised incomplete
beta function by its continued fraction (Numerical Recipes, 3rd ed., §6.4), so the tables
need no scipy. tests/results/test_stats.py checks each function against scipy's and the
textbooks' numbers.
"""

from __future__ import annotations

import dataclasses
import math
import statistics

ALPHA = 0.05  # two-sided: the 95 % interval and the significance mark
POWER = 0.8  # the usual planning power (Cohen 1988) for the seeds a comparison needs
MAX_SEEDS = 10_000  # beyond this, say "more than" instead of searching on


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300

    def guard(v: float) -> float:
        return v if abs(v) > tiny else tiny

    c, d = 1.0, 1.0 / guard(1.0 - (a + b) * x / (a + 1.0))
    h = d
    for m in range(1, 500):
        even = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        odd = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        for num in (even, odd):
            d, c = 1.0 / guard(1.0 + num * d), guard(1.0 + num / c)
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b), for a, b > 0 and x in [0, 1]."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    front = math.exp(log_front + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):  # where the fraction converges fast
        return front * _beta_fraction(a, b, x) / a
    return 1.0 - front * _beta_fraction(b, a, 1.0 - x) / b


def t_sf2(t: float, df: float) -> float:
    """Two-sided tail probability P(|T| >= |t|) of Student's t with `df` degrees of freedom."""
    if math.isinf(t):
        return 0.0
    return betainc(df / 2.0, 0.5, df / (df + t * t))


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` (> 0, not necessarily whole) degrees of freedom."""
    tail = t_sf2(t, df) / 2.0
    return 1.0 - tail if t > 0 else tail


def t_ppf(q: float, df: float) -> float:
    """The `q` quantile of Student's t (q in (0, 1)), by bisection on `t_cdf`."""
    if q < 0.5:
        return -t_ppf(1.0 - q, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < q:
        lo, hi = hi, 2.0 * hi
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if t_cdf(mid, df) < q:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * hi:
            break
    return (lo + hi) / 2.0


def t_interval(values: list[float], alpha: float = ALPHA) -> tuple[float, float] | None:
    """The (1 - alpha) t-interval of the mean of `values`; None for fewer than two (n = 1
    has no spread to build one from)."""
    n = len(values)
    if n < 2:
        return None
    mean = statistics.fmean(values)
    half = t_ppf(1.0 - alpha / 2.0, n - 1) * statistics.stdev(values) / math.sqrt(n)
    return mean - half, mean + half


@dataclasses.dataclass(frozen=True)
class Test:
    """A two-sided test of a difference of means: `diff` = mean(a) - mean(b), its t statistic,
    degrees of freedom and p-value; `test` is `paired t` or `Welch t`, `n` the pairs (paired)
    or the smaller side (Welch), `sd` the spread a power calculation uses (of the
    differences, or the two sides' root mean variance)."""

    test: str
    diff: float
    t: float
    df: float
    p: float
    n: int
    sd: float


def _p(diff: float, se: float, df: float) -> tuple[float, float]:
    if se == 0.0:  # no spread at all: equal means are no evidence, unequal ones certain
        return (0.0, 1.0) if diff == 0.0 else (math.copysign(math.inf, diff), 0.0)
    t = diff / se
    return t, t_sf2(t, df)


def paired_t(a: list[float], b: list[float]) -> Test:
    """Student's paired t-test of a against b (same order, same seeds; n >= 2 pairs)."""
    d = [x - y for x, y in zip(a, b, strict=True)]
    n = len(d)
    sd = statistics.stdev(d)
    diff = statistics.fmean(d)
    t, p = _p(diff, sd / math.sqrt(n), n - 1)
    return Test("paired t", diff, t, n - 1, p, n, sd)


def welch_t(a: list[float], b: list[float]) -> Test:
    """Welch's unequal-variance t-test of a against b (n >= 2 each), with the
    Welch-Satterthwaite degrees of freedom."""
    na, nb = len(a), len(b)
    va, vb = statistics.variance(a) / na, statistics.variance(b) / nb
    se2 = va + vb
    df = se2 * se2 / (va * va / (na - 1) + vb * vb / (nb - 1)) if se2 else float(na + nb - 2)
    diff = statistics.fmean(a) - statistics.fmean(b)
    t, p = _p(diff, math.sqrt(se2), df)
    sd = math.sqrt((statistics.variance(a) + statistics.variance(b)) / 2.0)
    return Test("Welch t", diff, t, df, p, min(na, nb), sd)


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm 1979), in the order given: the k-th smallest
    of m is multiplied by m - k + 1, kept monotone, capped at 1."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    out, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def seeds_needed(
    diff: float, sd: float, paired: bool, alpha: float = ALPHA, power: float = POWER
) -> int | None:
    """Seeds per row for a two-sided t-test at level `alpha` to detect a difference of `diff`
    with probability `power`, given the spread `sd` (of the paired differences, or of each
    side): the smallest n with n >= k ((t_{1-alpha/2} + t_{power}) sd / diff)^2, t at the
    test's degrees of freedom (n - 1 paired, 2n - 2 otherwise; k = 1 paired, 2 otherwise).
    None when the means are equal (no number of seeds separates them) or past MAX_SEEDS."""
    if diff == 0.0:
        return None
    k = 1 if paired else 2
    z = statistics.NormalDist()
    # the normal approximation is a lower bound: start there and step up
    n = max(2, math.ceil(k * ((z.inv_cdf(1 - alpha / 2) + z.inv_cdf(power)) * sd / diff) ** 2))
    while n <= MAX_SEEDS:
        df = n - 1 if paired else 2 * n - 2
        if n >= k * ((t_ppf(1 - alpha / 2, df) + t_ppf(power, df)) * sd / diff) ** 2:
            return n
        n += 1
    return None
