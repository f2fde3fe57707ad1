"""Retrain's pure parts: walk-forward windows, pooling folds, the promotion rule (no services)."""

from __future__ import annotations

import itertools

import pytest

from huracan.research.errors import InvalidPeriod
from huracan.research.retrain import pool_folds, promotion_decision, walk_forward_windows


def test_walk_forward_windows_when_three_folds_then_rolling_blocks_test_after_train() -> None:
    windows = walk_forward_windows(0, 400, 3)

    assert [(w.train_start, w.train_end, w.test_start, w.test_end) for w in windows] == [
        (0, 100, 100, 200),
        (100, 200, 200, 300),
        (200, 300, 300, 400),
    ]


def test_walk_forward_windows_when_period_not_divisible_then_last_test_takes_remainder() -> None:
    windows = walk_forward_windows(10, 113, 2)

    assert windows[-1].test_end == 113
    for w in windows:
        assert w.train_end == w.test_start
        assert w.train_start < w.train_end < w.test_end
    tests = [(w.test_start, w.test_end) for w in windows]
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(tests))


@pytest.mark.parametrize(("start", "end", "folds"), [(0, 100, 0), (5, 5, 1), (9, 3, 1), (0, 2, 3)])
def test_walk_forward_windows_when_unusable_then_invalid_period(
    start: int, end: int, folds: int
) -> None:
    with pytest.raises(InvalidPeriod):
        walk_forward_windows(start, end, folds)


def test_pool_folds_when_folds_differ_then_sums_worst_drawdown_and_mean_sharpe() -> None:
    folds = [
        {"pnl_net_usd": 10.0, "fees_usd": 1.0, "trades_closed": 4, "trades_won": 3,
         "max_drawdown_pct": 0.2, "sharpe": 2.0, "decisions": 5, "ticks": 100},
        {"pnl_net_usd": -4.0, "fees_usd": 2.0, "trades_closed": 0, "trades_won": 0,
         "max_drawdown_pct": 0.5, "sharpe": None, "decisions": 0, "ticks": 50},
    ]  # fmt: skip

    pooled = pool_folds(folds)

    assert pooled["pnl_net_usd"] == 6.0
    assert pooled["trades_closed"] == 4
    assert pooled["win_rate"] == 0.75
    assert pooled["max_drawdown_pct"] == 0.5
    assert pooled["sharpe"] == 1.0  # the fold without a Sharpe counts as 0
    assert pooled["ticks"] == 150


def test_pool_folds_when_no_fold_has_sharpe_then_none() -> None:
    pooled = pool_folds([{"sharpe": None, "trades_closed": 0}])

    assert pooled["sharpe"] is None
    assert pooled["win_rate"] is None


def _oos(sharpe: float | None, trades: int = 10) -> dict[str, object]:
    return {"sharpe": sharpe, "trades_closed": trades}


def test_promotion_when_lead_above_margin_then_promoted() -> None:
    decision = promotion_decision(_oos(2.0), _oos(1.0), margin=0.5, min_trades=5)

    assert decision.promote


@pytest.mark.parametrize("candidate", [1.5, 1.2, 0.9])
def test_promotion_when_lead_at_or_under_margin_then_kept(candidate: float) -> None:
    decision = promotion_decision(_oos(candidate), _oos(1.0), margin=0.5, min_trades=5)

    assert not decision.promote


def test_promotion_when_incumbent_has_no_sharpe_then_it_counts_as_zero() -> None:
    assert promotion_decision(_oos(0.6), _oos(None), margin=0.5, min_trades=0).promote
    assert not promotion_decision(_oos(0.4), _oos(None), margin=0.5, min_trades=0).promote


def test_promotion_when_candidate_has_no_sharpe_or_too_few_trades_then_kept() -> None:
    assert not promotion_decision(_oos(None), _oos(-5.0), margin=0.0, min_trades=0).promote
    decision = promotion_decision(_oos(9.0, trades=3), _oos(0.0), margin=0.0, min_trades=5)
    assert not decision.promote
    assert "3 trades" in decision.reason


def test_promotion_when_margin_zero_then_any_strict_lead_promotes() -> None:
    assert promotion_decision(_oos(1.01), _oos(1.0), margin=0.0, min_trades=0).promote
    assert not promotion_decision(_oos(1.0), _oos(1.0), margin=0.0, min_trades=0).promote
