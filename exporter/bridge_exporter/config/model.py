"""The validated inventory: tiers, modules, the endpoint tree. Immutable once loaded."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any


@dataclass(frozen=True)
class Thresholds:
    """Quality grade limits. Above a warning limit an endpoint is `degraded`, above a
    critical limit `poor` (ITU-T G.114 for delay; common vendor figures for jitter/loss)."""

    rtt_warning_seconds: float = 0.300
    rtt_critical_seconds: float = 0.800
    jitter_warning_seconds: float = 0.030
    jitter_critical_seconds: float = 0.050
    loss_warning_ratio: float = 0.01
    loss_critical_ratio: float = 0.05
    # MOS below which quality is degraded / poor (alerts compare against these; the grade
    # itself comes from the network figures above).
    mos_warning: float = 3.6
    mos_critical: float = 3.1


DEFAULT_AVAILABILITY_TARGET = 0.99


@dataclass(frozen=True)
class Tier:
    name: str
    level: int  # 0 is the root tier
    modules: tuple[str, ...]  # default probe modules for endpoints of this tier
    thresholds: Thresholds
    # Share of the tier's points that should be up (alerts fire below it).
    availability_target: float = DEFAULT_AVAILABILITY_TARGET
    # Whether the tier's endpoints export the bridge_<prober>_rtt_seconds histograms.
    rtt_histogram: bool = True


@dataclass(frozen=True)
class Module:
    name: str
    prober: str  # a key of probes.KINDS
    timeout: float  # seconds; the whole probe must finish within it
    required: bool  # counts towards bridge_up
    settings: Any  # an instance of the prober's Settings dataclass


@dataclass(frozen=True)
class Endpoint:
    id: str
    name: str
    tier: str
    parent: str | None
    address: str
    modules: tuple[str, ...]
    ancestors: tuple[str, ...]  # ids from the root down to the parent
    labels: dict[str, str] = field(default_factory=dict)  # free labels, stringified
    delegates: int | None = None
    latitude: float | None = None
    longitude: float | None = None
    # Per-endpoint copies of modules whose settings this endpoint overrides.
    overrides: dict[str, Module] = field(default_factory=dict)
    line: int = field(default=0, compare=False)  # line in the file, for messages only


@dataclass(frozen=True)
class Session:
    """A conference: when it runs (Unix times) and which points it needs."""

    name: str
    title: str
    start: float
    end: float
    prepare_seconds: float  # the readiness window opens this long before the start
    timezone: str  # IANA name, for showing times
    endpoints: frozenset[str]  # ids, ancestors of listed points included
    line: int = field(default=0, compare=False)

    @property
    def window_start(self) -> float:
        return self.start - self.prepare_seconds

    def active(self, now: float) -> bool:
        """From the opening of the readiness window to the end."""
        return self.window_start <= now < self.end


@dataclass(frozen=True)
class Inventory:
    source: str
    tiers: tuple[Tier, ...]
    modules: dict[str, Module]
    endpoints: dict[str, Endpoint]  # in file order
    interval: float = 30.0  # seconds between an endpoint's rounds
    concurrency: int = 1024  # probes in flight at most
    sessions: tuple[Session, ...] = ()

    def tier(self, name: str) -> Tier:
        return self._tiers_by_name[name]

    @cached_property
    def _tiers_by_name(self) -> dict[str, Tier]:
        return {t.name: t for t in self.tiers}

    @property
    def tier_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tiers)

    def tier_labels(self, endpoint: Endpoint) -> dict[str, str]:
        """One label per tier: each ancestor's id under its tier's name, the endpoint's
        own id under its own tier, empty (absent in Prometheus) for tiers below it."""
        labels = dict.fromkeys(self.tier_names, "")
        for ancestor_id in endpoint.ancestors:
            ancestor = self.endpoints[ancestor_id]
            labels[ancestor.tier] = ancestor.id
        labels[endpoint.tier] = endpoint.id
        return labels

    def modules_of(self, endpoint: Endpoint, names: Iterable[str] = ()) -> list[Module]:
        """The endpoint's modules (or the named inventory modules), with the endpoint's
        own overrides applied."""
        return [endpoint.overrides.get(n) or self.modules[n] for n in names or endpoint.modules]

    def children(self, endpoint_id: str) -> list[Endpoint]:
        return [e for e in self.endpoints.values() if e.parent == endpoint_id]

    def subtree(self, endpoint_id: str) -> list[Endpoint]:
        """The endpoint and everything below it."""
        return [
            e for e in self.endpoints.values() if e.id == endpoint_id or endpoint_id in e.ancestors
        ]
