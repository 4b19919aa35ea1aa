"""`--shard I/N`: one inventory split over N exporters, whole subtrees together.

The design, in the order the constraints force it:

- The unit of assignment is a subtree: each endpoint at the *split tier* (by default the
  tier just below the root, e.g. a province of the national network) goes, with every
  point below it, to shard `1 + hash(its id) mod N`. The hash is blake2b of the id, so every
  shard (and every restart, machine and Python version) computes the same split from the
  same file, with no coordination, and editing one province moves no other province.
  Keeping subtrees whole keeps a district and its communes in one exporter: their
  `bridge_upstream_up`, a district's `bridge_endpoint_descendants` and its
  BridgeSubtreeLost alert are computed from one consistent state, as without shards.
- The *spine* is what lies above the split tier (the central hall; with `--shard.tier
  district`, the provinces too): a handful of points that every subtree hangs from. Every
  shard probes the spine as context, so that `bridge_upstream_up` of its own points knows
  whether the central hall is down (one extra endpoint per shard for the national
  network), but only shard 1 exports it: every endpoint is exported exactly once.
- Each shard renders only the endpoints it exports, so `bridge_tier_endpoints`,
  `bridge_tier_endpoints_up` and `bridge_tier_delegates` are that shard's share and
  `sum without(instance) (...)` over the shards gives the inventory's totals. Series that
  do not depend on endpoints (module info, tier thresholds, sessions) come from every
  shard alike; the shipped rules already aggregate them with max by (...).
- Every series keeps its ancestor labels (central, province, ...) whichever shard the
  ancestor is exported by, so Alertmanager's `equal:` inhibition works across shards.

- The exported inventory carries the whole file as `tree`, so that the renderer counts a
  spine point's `bridge_endpoint_descendants` (and their delegates) over every shard's
  points, not only shard 1's.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import GaugeMetricFamily

from .config.model import Endpoint, Inventory

MAX_SHARDS = 1000


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based, as written on the command line
    count: int
    tier: str | None = None  # the split tier; None: the tier below the root

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """argparse type for `--shard I/N`."""
    index, sep, count = text.partition("/")
    if not sep or not index.strip().isdigit() or not count.strip().isdigit():
        raise argparse.ArgumentTypeError(
            f"{text!r}: write I/N, this exporter's number and the number of shards, e.g. 1/4"
        )
    shard = Shard(int(index), int(count))
    if not 1 <= shard.count <= MAX_SHARDS:
        raise argparse.ArgumentTypeError(
            f"{text!r}: the number of shards must be 1 to {MAX_SHARDS}"
        )
    if not 1 <= shard.index <= shard.count:
        raise argparse.ArgumentTypeError(
            f"{text!r}: shards are numbered 1 to {shard.count}; write 1/{shard.count} .. "
            f"{shard.count}/{shard.count}"
        )
    return shard


class ShardError(ValueError):
    """The inventory cannot be split as asked (e.g. an unknown --shard.tier)."""


def shard_of_unit(unit_id: str, count: int) -> int:
    """The shard (1-based) of a subtree, from its top endpoint's id."""
    digest = hashlib.blake2b(unit_id.encode(), digest_size=8).digest()
    return 1 + int.from_bytes(digest, "big") % count


def split_level(inventory: Inventory, tier: str | None) -> int:
    if tier is None:
        return min(1, len(inventory.tiers) - 1)
    for candidate in inventory.tiers:
        if candidate.name == tier:
            return candidate.level
    raise ShardError(
        f"{inventory.source}: --shard.tier {tier!r} is not a tier of this inventory; "
        f"write one of: {', '.join(inventory.tier_names)}"
    )


def owner(inventory: Inventory, endpoint: Endpoint, level: int, count: int) -> int:
    """The shard that exports the endpoint: its subtree's, or 1 for the spine."""
    for node_id in (*endpoint.ancestors, endpoint.id):
        node = inventory.endpoints[node_id]
        # Tiers may be skipped on the way down (a commune straight under a province), so
        # the subtree's top is the first node at or below the split tier.
        if inventory.tier(node.tier).level >= level:
            return shard_of_unit(node.id, count)
    return 1


def assignment(inventory: Inventory, shard: Shard) -> dict[str, int]:
    """Every endpoint id -> the shard that exports it."""
    level = split_level(inventory, shard.tier)
    return {e.id: owner(inventory, e, level, shard.count) for e in inventory.endpoints.values()}


def exported_ids(inventory: Inventory, shard: Shard) -> list[str]:
    return [e for e, s in assignment(inventory, shard).items() if s == shard.index]


def _fields(inventory: Inventory) -> dict[str, Any]:
    return {f.name: getattr(inventory, f.name) for f in dataclasses.fields(Inventory)}


@dataclass(frozen=True)
class ProbedInventory(Inventory):
    """What a shard probes: its subtrees and every ancestor of them (the spine)."""

    tree: Inventory | None = None  # the whole file: for counts that span the shards


def probed_inventory(inventory: Inventory, shard: Shard) -> ProbedInventory:
    keep: set[str] = set()
    for endpoint_id in exported_ids(inventory, shard):
        keep.add(endpoint_id)
        keep.update(inventory.endpoints[endpoint_id].ancestors)
    endpoints = {i: e for i, e in inventory.endpoints.items() if i in keep}
    return ProbedInventory(**{**_fields(inventory), "endpoints": endpoints}, tree=inventory)


@dataclass(frozen=True)
class ExportedInventory(Inventory):
    """The probed inventory as /metrics sees it: only the exported endpoints, their
    ancestor lists cut to exported ones (the renderer counts descendants over them), and
    tier labels still naming every ancestor (from `probed`). `tree` is the whole file, for
    a renderer that counts a spine point's descendants over every shard."""

    probed: Inventory | None = None
    tree: Inventory | None = None

    def tier_labels(self, endpoint: Endpoint) -> dict[str, str]:
        assert self.probed is not None
        return self.probed.tier_labels(self.probed.endpoints[endpoint.id])


def exported_inventory(probed: Inventory, shard: Shard) -> ExportedInventory:
    exported = set(exported_ids(probed, shard))
    endpoints = {
        i: dataclasses.replace(e, ancestors=tuple(a for a in e.ancestors if a in exported))
        for i, e in probed.endpoints.items()
        if i in exported
    }
    tree = getattr(probed, "tree", None) or probed
    return ExportedInventory(
        **{**_fields(probed), "endpoints": endpoints}, probed=probed, tree=tree
    )


class ShardView:
    """The State as the shard's /metrics reads it: the exported endpoints only, while
    upstream state comes from everything the shard probes (the spine included)."""

    def __init__(self, state: Any, shard: Shard):
        self._state = state
        self._shard = shard
        self._probed: Inventory | None = None
        self._exported: ExportedInventory | None = None

    @property
    def inventory(self) -> ExportedInventory:
        probed = self._state.inventory
        if probed is not self._probed or self._exported is None:  # a reload swapped it
            self._exported = exported_inventory(probed, self._shard)
            self._probed = probed
        return self._exported

    @property
    def endpoints(self) -> dict:
        return self._state.endpoints

    def upstream_up(self, endpoint: Endpoint) -> bool:
        return self._state.upstream_up(self._state.inventory.endpoints[endpoint.id])

    def first_down_ancestor(self, endpoint: Endpoint) -> str | None:
        return self._state.first_down_ancestor(self._state.inventory.endpoints[endpoint.id])

    def quality(self, endpoint: Endpoint) -> Any:
        return self._state.quality(endpoint)

    def __getattr__(self, name: str) -> Any:
        # Anything else the renderer reads (listeners, versions) is the State's own.
        return getattr(self._state, name)


class ShardInfoCollector:
    """`bridge_exporter_shard_info{shard, shards, tier}` = 1."""

    def __init__(self, shard: Shard, inventory_ref: Any):
        self._shard = shard
        self._inventory_ref = inventory_ref

    def collect(self) -> Iterator[GaugeMetricFamily]:
        inventory = self._inventory_ref()
        tier = inventory.tiers[split_level(inventory, self._shard.tier)].name
        family = GaugeMetricFamily(
            "bridge_exporter_shard_info",
            "This exporter's share of a sharded inventory (--shard I/N): subtrees below "
            "`tier` by a stable hash of their top point's id; shard 1 also exports the "
            "points above `tier`. Sum bridge_tier_* over the shards for the totals.",
            labels=["shard", "shards", "tier"],
        )
        family.add_metric([str(self._shard.index), str(self._shard.count), tier], 1)
        yield family
