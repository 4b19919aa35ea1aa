"""`bridge-exporter simulate`: a simulated bridge network on loopback, with faults."""

from .faults import Fault
from .network import Simulator, serve
from .scenario import Scenario, Step, load_scenario, parse_scenario

__all__ = ["Fault", "Scenario", "Simulator", "Step", "load_scenario", "parse_scenario", "serve"]
