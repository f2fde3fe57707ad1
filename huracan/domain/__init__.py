"""The pure core: deterministic domain logic with no I/O, no clock and no randomness.

Modules: ``risk`` (global risk controller), ``costs`` (real-time cost model), ``clock``
(injected time), ``errors`` (the core's exception classes), ``universe`` (the coin universe).
Import from the modules themselves; this package re-exports nothing.
"""
