"""The intervals of ``kodelyth_ecc.stats`` against published values: Wilson intervals
and Newcombe's differences from Newcombe (1998), Statistics in Medicine 17 (Tables I and
II, methods 3 and 10); t and Welch intervals from R's ``t.test`` on Student's sleep data."""

from __future__ import annotations

import pytest

from kodelyth_ecc.stats import mean_difference, mean_interval, rate_difference, t975, wilson

SLEEP_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
SLEEP_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


@pytest.mark.parametrize(
    ("successes", "trials", "low", "high"),
    [
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_matches_newcombe(successes: int, trials: int, low: float, high: float) -> None:
    got = wilson(successes, trials)
    assert got.estimate == pytest.approx(successes / trials)
    assert (round(got.low, 4), round(got.high, 4)) == (low, high)


@pytest.mark.parametrize(
    ("a", "b", "estimate", "low", "high"),
    [((48, 80), (56, 70), 0.2000, 0.0524, 0.3339), ((3, 10), (9, 10), 0.6000, 0.1705, 0.8090),
     ((0, 29), (5, 56), 0.0893, -0.0381, 0.1926)],
)  # fmt: skip
def test_rate_difference_matches_newcombe_method_10(
    a: tuple[int, int], b: tuple[int, int], estimate: float, low: float, high: float
) -> None:
    got = rate_difference(a, b)
    assert (round(got.estimate, 4), round(got.low, 4), round(got.high, 4)) == (
        estimate, low, high,
    )  # fmt: skip


def test_a_mean_interval_matches_r() -> None:
    got = mean_interval(SLEEP_1)  # t.test(sleep$extra[1:10]): -0.5297804 2.0297804
    assert got.estimate == pytest.approx(0.75)
    assert got.low == pytest.approx(-0.5297804, abs=1e-3)
    assert got.high == pytest.approx(2.0297804, abs=1e-3)
    single = mean_interval([3.0])
    assert (single.low, single.high) == (3.0, 3.0)


def test_welchs_difference_matches_r() -> None:
    # t.test(extra ~ group, data = sleep): df 17.776, -3.3654832 0.2054832 (group 1 - 2)
    got = mean_difference(SLEEP_2, SLEEP_1)
    assert got.estimate == pytest.approx(-1.58)
    assert got.low == pytest.approx(-3.3654832, abs=5e-3)
    assert got.high == pytest.approx(0.2054832, abs=5e-3)
    same = mean_difference([1.0, 1.0], [1.0, 1.0])
    assert (same.low, same.high) == (0.0, 0.0)


def test_t_quantiles_follow_the_table_and_tend_to_the_normal() -> None:
    assert t975(1) == 12.706 and t975(15) == 2.131 and t975(120) == 1.980
    assert 2.101 < t975(17.776) < 2.110  # R: qt(0.975, 17.776) = 2.1016
    assert t975(10_000) == pytest.approx(1.96, abs=1e-3)
    for bad in (lambda: t975(0), lambda: wilson(3, 2), lambda: mean_difference([1.0], [1.0, 2.0])):
        with pytest.raises(ValueError):
            bad()


def test_wilson_is_exact_at_the_ends() -> None:
    assert wilson(0, 3).low == 0.0 and wilson(3, 3).high == 1.0
    assert wilson(0, 7).low == 0.0 and wilson(7, 7).high == 1.0
