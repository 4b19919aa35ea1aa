#!/usr/bin/env python3
"""Write the bridge network's Grafana dashboards (English and Vietnamese) as JSON.

    python grafana/generate.py                      # grafana/dashboards/{en,vi}/*.json
    python grafana/generate.py --inventory my-network.yml --output /tmp/dashboards
    python grafana/generate.py --check              # exit 1 if the committed JSON is stale

The tier variables and per-tier panels follow the inventory's `tiers:` (default: those of
examples/thai-binh.yml, which the committed JSON is generated from). Needs
grafana-foundation-sdk, pinned in pyproject.toml's test extra: pip install -e '.[test]'.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import yaml
from grafana_foundation_sdk.builders.dashboard import Dashboard
from grafana_foundation_sdk.cog.encoder import JSONEncoder

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bridge_dashboards import endpoint, health, overview, session
from bridge_dashboards.common import DEFAULT_TIERS, Context
from bridge_dashboards.strings import LANGUAGES, Text

HERE = Path(__file__).resolve().parent
BUILDERS: dict[str, Callable[[Context], Dashboard]] = {
    "overview": overview.build,
    "endpoint": endpoint.build,
    "session": session.build,
    "health": health.build,
}


def render(tiers: tuple[str, ...]) -> dict[str, str]:
    """Relative path (e.g. `en/overview.json`) -> the dashboard's JSON text."""
    files = {}
    for language in LANGUAGES:
        ctx = Context(Text(language), tiers)
        for name, build in BUILDERS.items():
            model = build(ctx).build()
            for panel_id, panel in enumerate(model.panels or [], start=1):
                panel.id_val = panel_id  # stable: the order the builder adds them
            text = json.dumps(model, cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False)
            files[f"{language}/{name}.json"] = text + "\n"
    return files


def tiers_of(inventory: Path) -> tuple[str, ...]:
    try:
        document = yaml.safe_load(inventory.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SystemExit(f"{inventory}: cannot read the inventory: {exc}") from None
    tiers = document.get("tiers") if isinstance(document, dict) else None
    if not isinstance(tiers, list) or not tiers:
        raise SystemExit(
            f"{inventory}: no `tiers:` list at the top level; "
            "check it with `bridge-exporter validate` first"
        )
    names = [tier.get("name") if isinstance(tier, dict) else tier for tier in tiers]
    if not all(isinstance(name, str) and name for name in names):
        raise SystemExit(f"{inventory}: every tier needs a name; run `bridge-exporter validate`")
    return tuple(names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inventory", type=Path, help="take the tiers from this inventory")
    parser.add_argument("--output", type=Path, default=HERE / "dashboards")
    parser.add_argument(
        "--check", action="store_true", help="compare with --output instead of writing"
    )
    args = parser.parse_args(argv)
    files = render(tiers_of(args.inventory) if args.inventory else DEFAULT_TIERS)
    if args.check:
        stale = [
            name
            for name, text in files.items()
            if not (args.output / name).exists()
            or (args.output / name).read_text(encoding="utf-8") != text
        ]
        for name in stale:
            print(f"{args.output / name}: stale; run python grafana/generate.py", file=sys.stderr)
        return 1 if stale else 0
    for name, text in files.items():
        path = args.output / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    print(f"wrote {len(files)} dashboards to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
