"""Peers of the Faust worker for :mod:`benchmarks.bench_peers`: one process each, same work.

Every peer runs as a child process of the benchmark, ``python -m benchmarks.peers.<module>``
with the arguments of :class:`benchmarks.peers.common.PeerSpec`, and writes its result as
JSON to the path it is given. The raw confluent-kafka and aiokafka peers run in the project's
virtual environment; the Quix Streams peer runs in its own (:mod:`benchmarks.peers.env`),
because Quix Streams pins an older confluent-kafka than the project's. Modules here import
only the standard library, ``huracan`` and their own client, so each runs in either venv.
"""
