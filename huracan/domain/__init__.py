"""The pure core: deterministic domain logic with no I/O, no clock and no randomness.

Modules: ``risk`` (global risk controller), ``costs`` (real-time cost model), ``features``
(rolling features per coin), ``signals`` (the baseline model and the model protocol),
``execution`` (paper exchange and exit rules), ``sequencer`` (the risk sequencer), ``ordering``
(event-time order of trade requests), ``dedupe`` (de-duplication windows), ``engine`` (the whole
decision path in one process), ``universe`` (the coin universe), ``clock`` (injected time),
``errors`` (the core's exception classes). Import from the modules themselves; this package
re-exports nothing.
"""
