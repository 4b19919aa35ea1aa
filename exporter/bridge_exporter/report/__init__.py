"""`bridge-exporter report`: a session's reliability from Prometheus history.

query.py talks to Prometheus (HTTP API), compute.py turns series into availability,
outages, MTTR and quality, render_*.py write one format each, charts.py draws inline SVG.
"""
