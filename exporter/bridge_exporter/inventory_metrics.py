"""Series that follow from the inventory alone: the tree's shape, modules, tier targets and
limits, and the session calendar. Rendered once per inventory and reused at every scrape,
except whether each session is active, which follows the clock.
"""

from __future__ import annotations

from collections.abc import Iterator

from .config.model import Inventory
from .exposition import Family, join_labels, label_text, render


def _gauge(name: str, help_text: str) -> Family:
    return Family(name, "gauge", help_text)


class InventorySeries:
    def __init__(self) -> None:
        self._inventory: Inventory | None = None
        self._static = b""

    def render(self, inventory: Inventory, endpoint_labels: dict[str, str], now: float) -> str:
        """`endpoint_labels` is each endpoint's escaped label text (endpoint, tier, and
        the ancestor tier labels), as on every per-endpoint series."""
        return b"".join(self.render_parts(inventory, endpoint_labels, now)).decode()

    def render_parts(
        self, inventory: Inventory, endpoint_labels: dict[str, str], now: float
    ) -> tuple[bytes, bytes]:
        """As render(), in UTF-8: the part kept for the inventory (megabytes at national
        scale, not copied per scrape), then the part that follows the clock."""
        if inventory is not self._inventory:
            self._static = render(_static_families(inventory, endpoint_labels)).encode()
            self._inventory = inventory
        return self._static, render([_session_active(inventory, now)]).encode()


def _static_families(inventory: Inventory, endpoint_labels: dict[str, str]) -> Iterator[Family]:
    yield from _tree_families(inventory, endpoint_labels)
    yield _module_info(inventory)
    yield from _tier_families(inventory)
    yield from _session_families(inventory, endpoint_labels)


def _tree_families(inventory: Inventory, endpoint_labels: dict[str, str]) -> Iterator[Family]:
    below = _gauge(
        "bridge_endpoint_descendants",
        "Points below the endpoint in the tree (cut off when it is down); 0 for a leaf.",
    )
    below_delegates = _gauge(
        "bridge_endpoint_descendant_delegates", "Delegates at the points below the endpoint."
    )
    # A shard (sharding.py) exports part of the tree; the points below the central hall
    # are the whole file's, so count over the whole file where the shard keeps it.
    tree = getattr(inventory, "tree", None) or inventory
    counts = dict.fromkeys(tree.endpoints, 0)
    delegates = dict.fromkeys(tree.endpoints, 0)
    for endpoint in tree.endpoints.values():
        for ancestor in endpoint.ancestors:
            counts[ancestor] += 1
            delegates[ancestor] += endpoint.delegates or 0
    for endpoint_id, labels in endpoint_labels.items():
        below.add(labels, counts[endpoint_id])
        below_delegates.add(labels, delegates[endpoint_id])
    yield from (below, below_delegates)


def _module_info(inventory: Inventory) -> Family:
    family = _gauge(
        "bridge_module_info",
        "Each probe module (the `probe` label of per-probe series) with its prober kind; 1.",
    )
    for module in inventory.modules.values():
        labels = {
            "probe": module.name,
            "prober": module.prober,
            "required": "true" if module.required else "false",
        }
        family.add(label_text(labels), 1)
    return family


def _tier_families(inventory: Inventory) -> Iterator[Family]:
    target = _gauge(
        "bridge_tier_availability_target_ratio",
        "Share of the tier's points that should be up; alerts fire below it.",
    )
    mos = _gauge(
        "bridge_tier_mos_threshold", "The tier's MOS limit below which quality is `level`."
    )
    for tier in inventory.tiers:
        target.add(label_text({"tier": tier.name}), tier.availability_target)
        for level in ("warning", "critical"):
            value = getattr(tier.thresholds, f"mos_{level}")
            mos.add(label_text({"tier": tier.name, "level": level}), value)
    yield from (target, mos)


def _session_families(inventory: Inventory, endpoint_labels: dict[str, str]) -> Iterator[Family]:
    info = _gauge("bridge_session_info", "A session of the inventory, with its title; 1.")
    start = _gauge("bridge_session_start_timestamp_seconds", "When the session starts.")
    end = _gauge("bridge_session_end_timestamp_seconds", "When the session ends.")
    prepare = _gauge(
        "bridge_session_prepare_seconds",
        "How long before the start the session's readiness window opens.",
    )
    needed = _gauge(
        "bridge_endpoint_in_session",
        "1 for each point the session needs (ancestors of listed points included).",
    )
    for session in inventory.sessions:
        labels = label_text({"session": session.name})
        info.add(join_labels(labels, label_text({"title": session.title})), 1)
        start.add(labels, session.start)
        end.add(labels, session.end)
        prepare.add(labels, session.prepare_seconds)
        for endpoint_id, endpoint_text in endpoint_labels.items():
            if endpoint_id in session.endpoints:
                needed.add(join_labels(endpoint_text, labels), 1)
    yield from (info, start, end, prepare, needed)


def _session_active(inventory: Inventory, now: float) -> Family:
    active = _gauge(
        "bridge_session_active",
        "1 from the opening of the session's readiness window (start - prepare) to its end.",
    )
    for session in inventory.sessions:
        active.add(label_text({"session": session.name}), 1 if session.active(now) else 0)
    return active
