"""Prometheus exporter for videoconference bridge networks."""

__version__ = "0.1.0"
