"""Faust agents: the only package (with huracan.application) that imports faust."""
