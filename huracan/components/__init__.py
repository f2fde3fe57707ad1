"""The spec's components as thin shells over the pure core (``huracan.domain``).

A shell adds what the core may not have: the wall clock (injectable), asyncio loops and hooks.
The decisions themselves stay in the core, so replays and backtests decide the same way.
"""
