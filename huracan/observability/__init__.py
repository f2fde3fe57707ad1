"""Health checks and (later) Prometheus metrics; no connections are opened at import time."""
