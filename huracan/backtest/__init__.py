"""Backtests: replay recorded market data through the domain core and report on the result.

* :mod:`huracan.backtest.report` — :func:`build_report` folds recorded risk decisions and
  executions into a :class:`BacktestReport` (PnL, fees, funding, Sharpe, drawdown, win rate,
  decisions by outcome and reason, equity and exposure curves), :func:`render_report` prints it
  and :func:`write_equity_png` draws the equity curve;
* :mod:`huracan.backtest.whatif` — :func:`compare_runs` puts two runs over the same data side by
  side (e.g. the configured limits against changed ones) and lists the decisions that changed;
* :mod:`huracan.backtest.errors` — the errors these raise, all :class:`BacktestError`.
"""
