"""Inventory configuration: load, validate, model."""

from .errors import ConfigError, Problem
from .loader import load_inventory, parse_inventory
from .model import Endpoint, Inventory, Module, Session, Thresholds, Tier

__all__ = [
    "ConfigError",
    "Endpoint",
    "Inventory",
    "Module",
    "Problem",
    "Session",
    "Thresholds",
    "Tier",
    "load_inventory",
    "parse_inventory",
]
