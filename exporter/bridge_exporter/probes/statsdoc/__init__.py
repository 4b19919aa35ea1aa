"""What the `stats` prober reads from a device, one concern per module: the metric names
and the vendors' presets (presets), the value-expression language (expressions), the
paths into a JSON value or an XML tree (paths), and the safe parsing of a fetched body
(documents). The prober itself (fetching, planning, evaluating) is probes/stats.py."""
