"""Health checks and Prometheus metrics; no connections are opened at import time."""
