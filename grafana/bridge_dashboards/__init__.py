"""Grafana dashboards for the bridge network, generated with grafana-foundation-sdk.

`python grafana/generate.py` writes grafana/dashboards/<lang>/*.json; see its --help.
"""
