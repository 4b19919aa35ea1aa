"""Probers, one file each. The registry maps a module's `prober:` kind to its class.

Imports are lazy so that a prober's optional needs never slow or break the others.
"""

from __future__ import annotations

import importlib

from .base import Prober, ProbeResult, Seconds, Target

__all__ = ["KINDS", "ProbeResult", "Prober", "Seconds", "Target", "prober_class"]

KINDS: dict[str, str] = {
    "icmp": "icmp:IcmpProber",
    "tcp": "tcp:TcpProber",
    "h323": "h323:H323Prober",
    "http": "http:HttpProber",
    "sip": "sip:SipProber",
    "stamp": "stamp:StampProber",
    "stats": "stats:StatsProber",
}


def prober_class(kind: str) -> type[Prober]:
    module_name, class_name = KINDS[kind].split(":")
    module = importlib.import_module(f"{__name__}.{module_name}")
    return getattr(module, class_name)
