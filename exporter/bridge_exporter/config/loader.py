"""Inventory file -> validated Inventory, or every problem at once with file:line."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

from ..probes import KINDS, prober_class
from .errors import ConfigError, Problem
from .limits import MAX_DELEGATES, MAX_FILE_BYTES, MAX_ID_CHARS, MAX_TEXT_CHARS, shorten, shown
from .model import DEFAULT_AVAILABILITY_TARGET, Endpoint, Inventory, Module, Thresholds, Tier
from .sessions import parse_sessions
from .values import (
    LABEL_NAME,
    ValueProblem,
    build_settings,
    check_address,
    parse_duration,
    replace_settings,
    text_problem,
)
from .yamlnodes import LinedList, LinedMap, load_lined_yaml, too_big_message

MIN_TIERS, MAX_TIERS = 2, 6
# Ids go into label values, URLs (/probe?target=) and file names of reports: keep them plain.
# Module names follow the same rule (they are `probe` label values and /probe?module=).
ENDPOINT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\Z")
# Label names the exporter itself puts on series (or Prometheus reserves): a tier or a
# free label may not take them.
RESERVED_LABELS = frozenset(
    {
        "endpoint", "tier", "name", "parent", "address", "probe", "module", "reason",
        "grade", "session", "job", "instance", "le", "quantile", "version", "revision",
        "delegates", "latitude", "longitude", "code", "kind", "source",
    }
)  # fmt: skip
TOP_KEYS = {"interval", "concurrency", "thresholds", "tiers", "modules", "endpoints", "sessions"}
TIER_KEYS = {"name", "modules", "thresholds", "availability_target", "rtt_histogram"}
MODULE_KEYS = {"prober", "timeout", "required"}
ENDPOINT_KEYS = {
    "id", "name", "tier", "parent", "address", "modules", "overrides", "labels",
    "delegates", "latitude", "longitude",
}  # fmt: skip
THRESHOLD_KEYS = {
    "rtt_warning": "rtt_warning_seconds",
    "rtt_critical": "rtt_critical_seconds",
    "jitter_warning": "jitter_warning_seconds",
    "jitter_critical": "jitter_critical_seconds",
    "loss_warning": "loss_warning_ratio",
    "loss_critical": "loss_critical_ratio",
    "mos_warning": "mos_warning",
    "mos_critical": "mos_critical",
}
MOS_RANGE = (1.0, 4.5)
DEFAULT_MODULE_TIMEOUT = 10.0
_Default = TypeVar("_Default")


def _not_text(key: str, value: Any) -> str:
    if isinstance(value, list | dict):
        shape = "list" if isinstance(value, list) else "mapping"
        return f"`{key}` must be a single value, not a {shape}"
    if isinstance(value, bool) or value is None:
        read_as = "true or false" if isinstance(value, bool) else "null (nothing)"
        return f"`{key}` must be text, but YAML reads this value as {read_as}; put it in quotes"
    return f"`{key}` must be text; quote it: {key}: '{shorten(str(value))}'"


def _plain_id(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= MAX_ID_CHARS and bool(ENDPOINT_ID.match(value))


class Checker:
    """Walks the YAML data, collecting problems instead of stopping at the first.
    Scenario files (simulate/scenario.py) are checked by a subclass."""

    def __init__(self, path: str):
        self.path = path
        self.problems: list[Problem] = []
        # Modules defined with a problem of their own: using them is not a second problem.
        self.broken_modules: set[str] = set()

    def add(self, line: int, message: str) -> None:
        self.problems.append(Problem(self.path, line, message))

    def mapping(self, value: Any, line: int, what: str) -> LinedMap | None:
        if isinstance(value, LinedMap):
            return value
        self.add(line, f"{what} must be a mapping (key: value lines)")
        return None

    def unknown_keys(self, data: LinedMap, allowed: set[str], what: str) -> list[Any]:
        """Reports each key not in `allowed`; returns them."""
        unknown = [key for key in data if key not in allowed]
        for key in unknown:
            self.add(
                data.line_of(key),
                f"unknown key {shown(key)} in {what}; allowed: {', '.join(sorted(allowed))}",
            )
        return unknown

    def duration(self, data: LinedMap, key: str, default: _Default) -> float | _Default:
        """`data[key]` as seconds; `default` when it is absent or (reported) not a duration."""
        if key not in data:
            return default
        try:
            return parse_duration(data[key])
        except ValueProblem as exc:
            self.add(data.line_of(key), f"{key}: {exc}")
            return default


def read_config_text(path: str | Path) -> str:
    """A config file's text; a file that cannot be read, is larger than MAX_FILE_BYTES or
    is not UTF-8 raises ConfigError naming it (and the line of the first bad byte)."""
    path_text = str(path)
    try:
        with Path(path).open("rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)  # never more, whatever the file is
    except OSError as exc:
        raise ConfigError(
            [Problem(path_text, 0, f"cannot read the file: {exc.strerror}; check the path")]
        ) from exc
    if len(raw) > MAX_FILE_BYTES:
        line = raw.count(b"\n", 0, MAX_FILE_BYTES) + 1
        raise ConfigError([Problem(path_text, line, too_big_message())])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        message = (
            f"the file is not UTF-8 (byte 0x{raw[exc.start]:02x} on this line); save it as UTF-8"
        )
        raise ConfigError([Problem(path_text, line, message)]) from exc


def load_inventory(path: str | Path) -> Inventory:
    """Read and validate an inventory file. Raises ConfigError listing every problem."""
    return parse_inventory(read_config_text(path), str(path))


def parse_inventory(text: str, path: str = "<inventory>") -> Inventory:
    data, problems = load_lined_yaml(text, path)
    check = Checker(path)
    check.problems.extend(problems)
    if data is None and not problems:
        check.add(0, "file is empty; it needs tiers, modules and endpoints")
    if data is None:  # nothing to check further; duplicate keys alone do not stop here
        raise ConfigError(check.problems)
    root = check.mapping(data, 1, "the inventory")
    if root is None:
        raise ConfigError(check.problems)
    check.unknown_keys(root, TOP_KEYS, "the inventory")

    interval = check.duration(root, "interval", 30.0)
    if interval <= 0:
        check.add(root.line_of("interval"), "interval must be greater than 0")
        interval = 30.0
    concurrency = root.get("concurrency", 1024)
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        check.add(root.line_of("concurrency"), "concurrency must be a whole number >= 1")
        concurrency = 1024

    default_thresholds = _thresholds(check, root.get("thresholds"), root.line_of("thresholds"))
    modules = _modules(check, root)
    tiers = _tiers(check, root, modules, default_thresholds)
    endpoints = _endpoints(check, root, tiers, modules)
    sessions = parse_sessions(check, root, endpoints)
    if check.problems:
        raise ConfigError(sorted(check.problems, key=lambda p: p.line))
    return Inventory(
        source=path,
        tiers=tuple(tiers),
        modules=modules,
        endpoints=endpoints,
        interval=interval,
        concurrency=concurrency,
        sessions=sessions,
    )


def _thresholds(check: Checker, raw: Any, line: int, base: Thresholds | None = None) -> Thresholds:
    base = base or Thresholds()
    if raw is None:
        return base
    data = check.mapping(raw, line, "thresholds")
    if data is None:
        return base
    check.unknown_keys(data, set(THRESHOLD_KEYS), "thresholds")
    values = {}
    for key, field in THRESHOLD_KEYS.items():
        if key not in data:
            continue
        if key.startswith("loss"):
            value = data[key]
            if _number_within(value, 0, 1):
                values[field] = float(value)
            else:
                check.add(data.line_of(key), f"{key} must be a ratio from 0 to 1 (0.01 = 1 %)")
        elif key.startswith("mos"):
            value = data[key]
            if _number_within(value, *MOS_RANGE):
                values[field] = float(value)
            else:
                low, high = MOS_RANGE
                check.add(data.line_of(key), f"{key} must be a MOS from {low:g} to {high:g}")
        else:
            values[field] = check.duration(data, key, getattr(base, field))
    merged = {**base.__dict__, **values}
    result = Thresholds(**merged)
    # Only pairs this mapping touches: an inherited pair was checked where it was written.
    for kind, unit in (("rtt", "seconds"), ("jitter", "seconds"), ("loss", "ratio")):
        warning_key, critical_key = f"{kind}_warning", f"{kind}_critical"
        if warning_key not in data and critical_key not in data:
            continue
        warning = getattr(result, f"{warning_key}_{unit}")
        critical = getattr(result, f"{critical_key}_{unit}")
        if warning > critical:
            check.add(
                data.line_of(warning_key if warning_key in data else critical_key),
                f"{warning_key} ({warning:g}) must not be above {critical_key} ({critical:g}); "
                f"lower {warning_key} or raise {critical_key}",
            )
    if ("mos_warning" in data or "mos_critical" in data) and result.mos_warning < (
        result.mos_critical
    ):
        check.add(
            data.line_of("mos_warning" if "mos_warning" in data else "mos_critical"),
            f"mos_warning ({result.mos_warning:g}) must not be below mos_critical "
            f"({result.mos_critical:g}): a lower MOS is worse",
        )
    return result


def _number_within(value: Any, low: float, high: float) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high


def _modules(check: Checker, root: LinedMap) -> dict[str, Module]:
    modules: dict[str, Module] = {}
    raw = check.mapping(root.get("modules"), root.line_of("modules"), "modules")
    if raw is None:
        return modules
    for name, body in raw.items():
        line = raw.line_of(name)
        if not _plain_id(name):
            check.add(
                line,
                f"module name {shown(name)} may use only letters, digits, '-', '_' and '.', "
                f"starting with a letter or digit, at most {MAX_ID_CHARS} characters; rename it",
            )
            check.broken_modules.add(name)
            continue
        spec = check.mapping(body, line, f"module {shown(name)}")
        if spec is None:
            check.broken_modules.add(name)
            continue
        kind = spec.get("prober")
        if kind not in KINDS:
            check.add(
                spec.line_of("prober"),
                f"module {shown(name)}: prober must be one of {', '.join(KINDS)}, "
                f"not {shown(kind)}",
            )
            check.broken_modules.add(name)
            continue
        check.unknown_keys(spec, MODULE_KEYS | {kind}, f"module {shown(name)}")
        timeout = check.duration(spec, "timeout", DEFAULT_MODULE_TIMEOUT)
        if timeout <= 0:
            check.add(spec.line_of("timeout"), f"module {shown(name)}: timeout must be > 0")
            timeout = DEFAULT_MODULE_TIMEOUT
        required = spec.get("required", True)
        if not isinstance(required, bool):
            check.add(
                spec.line_of("required"), f"module {shown(name)}: required must be true/false"
            )
            required = True
        raw_settings = spec.get(kind)
        if raw_settings is not None and not isinstance(raw_settings, LinedMap):
            check.add(
                spec.line_of(kind), f"module {shown(name)}: {kind} settings must be a mapping"
            )
            raw_settings = None
        settings, problems = build_settings(prober_class(kind).Settings, raw_settings)
        for key, message in problems:
            where = raw_settings.line_of(key) if raw_settings and key else spec.line_of(kind)
            check.add(where, f"module {shown(name)}: {message}")
        modules[name] = Module(name, kind, timeout, required, settings)
    return modules


def _module_list(check: Checker, value: Any, line: int, modules: dict, what: str) -> tuple:
    if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
        check.add(line, f"{what}: modules must be a list of module names")
        return ()
    for index, name in enumerate(value):
        if name not in modules and name not in check.broken_modules:
            where = value.line_of(index) if isinstance(value, LinedList) else line
            known = ", ".join(modules) or "none defined"
            check.add(where, f"{what}: unknown module {shown(name)}; defined modules: {known}")
    return tuple(m for m in value if m in modules or m in check.broken_modules)


def _tiers(check: Checker, root: LinedMap, modules: dict, thresholds: Thresholds) -> list[Tier]:
    raw = root.get("tiers")
    line = root.line_of("tiers")
    if not isinstance(raw, LinedList):
        check.add(line, "tiers must be a list, from the top tier down (e.g. central, province)")
        return []
    if not MIN_TIERS <= len(raw) <= MAX_TIERS:
        check.add(line, f"there must be {MIN_TIERS} to {MAX_TIERS} tiers, not {len(raw)}")
    tiers: list[Tier] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(raw):
        item_line = raw.line_of(index)
        if isinstance(item, str):  # `tiers: [central, province]`: names only
            item = LinedMap(name=item)
            item.line, item.key_lines = item_line, {"name": item_line}
        spec = check.mapping(item, item_line, "a tier")
        if spec is None:
            continue
        check.unknown_keys(spec, TIER_KEYS, "a tier")
        name = spec.get("name")
        name_line = spec.line_of("name")
        # A bad name is still a tier: keeps the levels below it right and spares its
        # endpoints an "unknown tier" each. The inventory is rejected anyway.
        if (
            not isinstance(name, str)
            or not LABEL_NAME.match(name)
            or name.startswith("__")
            or len(name) > MAX_ID_CHARS
        ):
            check.add(
                name_line,
                f"tier name {shown(name)} is not a legal Prometheus label name; use letters, "
                f"digits and _ (not starting with a digit or __), at most {MAX_ID_CHARS} "
                "characters, e.g. district",
            )
            name = name if isinstance(name, str) and name not in seen else f"<tier {index + 1}>"
        elif name in RESERVED_LABELS:
            check.add(name_line, f"tier name {shown(name)} is reserved by the exporter; rename it")
        elif name in seen:
            check.add(
                name_line,
                f"tier {shown(name)} is listed twice (first at line {seen[name]}); remove or "
                "rename one",
            )
            continue
        seen[name] = name_line
        tier_modules = (
            _module_list(
                check, spec["modules"], spec.line_of("modules"), modules, f"tier {shorten(name)}"
            )
            if "modules" in spec
            else ()
        )
        tier_thresholds = _thresholds(
            check, spec.get("thresholds"), spec.line_of("thresholds"), thresholds
        )
        target = spec.get("availability_target", DEFAULT_AVAILABILITY_TARGET)
        if not _number_within(target, 0, 1):
            check.add(
                spec.line_of("availability_target"),
                f"tier {name}: availability_target must be a ratio from 0 to 1 (0.99 = 99 %)",
            )
            target = DEFAULT_AVAILABILITY_TARGET
        histogram = spec.get("rtt_histogram", True)
        if not isinstance(histogram, bool):
            check.add(
                spec.line_of("rtt_histogram"),
                f"tier {name}: rtt_histogram must be true or false (false drops the tier's "
                "RTT histogram series)",
            )
            histogram = True
        tiers.append(
            Tier(name, len(tiers), tier_modules, tier_thresholds, float(target), histogram)
        )
    return tiers


def _endpoints(
    check: Checker, root: LinedMap, tiers: list[Tier], modules: dict[str, Module]
) -> dict[str, Endpoint]:
    raw = root.get("endpoints")
    if not isinstance(raw, LinedList) or not raw:
        check.add(root.line_of("endpoints"), "endpoints must be a non-empty list")
        return {}
    tier_by_name = {t.name: t for t in tiers}
    specs: dict[str, tuple[LinedMap, Tier | None]] = {}
    for index, item in enumerate(raw):
        spec = check.mapping(item, raw.line_of(index), "an endpoint")
        if spec is None:
            continue
        check.unknown_keys(spec, ENDPOINT_KEYS, "an endpoint")
        endpoint_id = spec.get("id")
        if endpoint_id is not None and not isinstance(endpoint_id, str):
            check.add(
                spec.line_of("id"), f"endpoint {shown(endpoint_id)}: {_not_text('id', endpoint_id)}"
            )
            continue
        if not isinstance(endpoint_id, str) or not endpoint_id.strip():
            check.add(spec.line, "endpoint has no id; add `id:` (letters, digits, - _ .)")
            continue
        if not _plain_id(endpoint_id):
            check.add(
                spec.line_of("id"),
                f"endpoint id {shown(endpoint_id)} may use only letters, digits, '-', '_' and '.', "
                f"starting with a letter or digit, at most {MAX_ID_CHARS} characters; rename "
                "it (the name can say anything)",
            )
        if endpoint_id in specs:
            first = specs[endpoint_id][0].line_of("id")
            check.add(
                spec.line_of("id"),
                f"duplicate endpoint id {shown(endpoint_id)} (first at line {first}); ids must be "
                "unique",
            )
            continue
        for key in ("name", "tier", "address"):
            if spec.get(key) is None or spec.get(key) == "":
                check.add(spec.line, f"endpoint {shown(endpoint_id)}: `{key}` is missing or empty")
            elif not isinstance(spec[key], str):
                check.add(
                    spec.line_of(key), f"endpoint {shown(endpoint_id)}: {_not_text(key, spec[key])}"
                )
        name = spec.get("name")
        problem = text_problem(name, MAX_TEXT_CHARS) if isinstance(name, str) and name else None
        if problem:
            check.add(spec.line_of("name"), f"endpoint {shown(endpoint_id)}: name {problem}")
        tier_name = spec.get("tier")
        tier = tier_by_name.get(tier_name) if isinstance(tier_name, str) else None
        if isinstance(tier_name, str) and tier_name and tier is None:
            check.add(
                spec.line_of("tier"),
                f"endpoint {shown(endpoint_id)}: unknown tier {shown(tier_name)}; tiers: "
                f"{', '.join(tier_by_name)}",
            )
        if isinstance(spec.get("address"), str):
            try:
                check_address(spec["address"])
            except ValueProblem as exc:
                check.add(spec.line_of("address"), f"endpoint {shown(endpoint_id)}: {exc}")
        specs[endpoint_id] = (spec, tier)

    ancestors = _ancestry(check, specs)
    endpoints: dict[str, Endpoint] = {}
    for endpoint_id, (spec, tier) in specs.items():
        if tier is None or endpoint_id not in ancestors:
            continue
        endpoint = _endpoint(
            check, endpoint_id, spec, tier, ancestors[endpoint_id], modules, tier_by_name
        )
        if endpoint is not None:
            endpoints[endpoint_id] = endpoint
    return endpoints


def _ancestry(check: Checker, specs: dict) -> dict[str, tuple[str, ...]]:
    """Parent checks (unknown, missing, cycles, tier order) and each endpoint's ancestors."""
    parent_of: dict[str, str | None] = {}
    for endpoint_id, (spec, tier) in specs.items():
        parent = spec.get("parent")
        if tier is None:
            continue
        line = spec.line_of("parent") if "parent" in spec else spec.line
        if tier.level == 0:
            if parent is not None:
                check.add(
                    line,
                    f"endpoint {shown(endpoint_id)} is in the top tier {tier.name!r} and cannot "
                    "have a parent; remove `parent:` or change its tier",
                )
                continue
            parent_of[endpoint_id] = None
            continue
        if parent is None:
            check.add(
                line,
                f"endpoint {shown(endpoint_id)} has no parent; add `parent:` with the id of the "
                "endpoint above it",
            )
            continue
        if not isinstance(parent, str):
            check.add(line, f"endpoint {shown(endpoint_id)}: {_not_text('parent', parent)}")
            continue
        if parent not in specs:
            check.add(
                line,
                f"endpoint {shown(endpoint_id)}: parent {shown(parent)} is not an endpoint id "
                "in this file; fix the id or add that endpoint",
            )
            continue
        parent_tier = specs[parent][1]
        if parent_tier is not None and parent_tier.level >= tier.level:
            check.add(
                line,
                f"endpoint {shown(endpoint_id)} (tier {tier.name}) cannot sit below "
                f"{shown(parent)} (tier {parent_tier.name}): a parent must be in a higher tier",
            )
        parent_of[endpoint_id] = parent

    ancestors: dict[str, tuple[str, ...]] = {}
    reported_cycles: set[frozenset[str]] = set()
    for endpoint_id in parent_of:
        chain = [endpoint_id]
        current = parent_of[endpoint_id]
        complete = True
        while current is not None:
            if current not in parent_of:  # that parent's own problem is already reported
                complete = False
                break
            if current in chain:
                cycle = chain[chain.index(current) :]
                if frozenset(cycle) not in reported_cycles:
                    reported_cycles.add(frozenset(cycle))
                    loop_text = " -> ".join([*cycle, current])
                    check.add(
                        specs[current][0].line_of("parent"),
                        f"parent cycle: {loop_text}; every chain must end at a top-tier endpoint",
                    )
                complete = False
                break
            chain.append(current)
            current = parent_of[current]
        if complete:
            ancestors[endpoint_id] = tuple(reversed(chain[1:]))
    return ancestors


def _endpoint(
    check: Checker,
    endpoint_id: str,
    spec: LinedMap,
    tier: Tier,
    ancestors: tuple[str, ...],
    modules: dict[str, Module],
    tier_by_name: dict[str, Tier],
) -> Endpoint | None:
    what = f"endpoint {shown(endpoint_id)}"
    module_names = (
        _module_list(check, spec["modules"], spec.line_of("modules"), modules, what)
        if "modules" in spec
        else tier.modules
    )
    if not module_names:
        check.add(
            spec.line,
            f"{what} has no probe modules; list `modules:` on it or on tier {tier.name!r}",
        )
    overrides = _overrides(check, spec, module_names, modules, what)
    labels: dict[str, str] = {}
    raw_labels = spec.get("labels")
    if raw_labels is not None:
        label_map = check.mapping(raw_labels, spec.line_of("labels"), f"{what} labels")
        for key, value in (label_map or {}).items():
            bad = not isinstance(key, str) or not LABEL_NAME.match(key) or key.startswith("__")
            if bad or len(key) > MAX_ID_CHARS:
                check.add(
                    label_map.line_of(key),
                    f"{what}: label {shown(key)} is not a legal label name; use letters, digits "
                    f"and _ (not starting with a digit or __), at most {MAX_ID_CHARS} characters",
                )
            elif key in RESERVED_LABELS or key in tier_by_name:
                owner = "a tier" if key in tier_by_name else "the exporter"
                check.add(
                    label_map.line_of(key),
                    f"{what}: label {shown(key)} collides with the {shown(key)} label that "
                    f"{owner} puts on every series; rename it",
                )
            elif isinstance(value, str):
                problem = text_problem(value, MAX_TEXT_CHARS) if value else None
                if problem:
                    check.add(label_map.line_of(key), f"{what}: label {shown(key)} {problem}")
                labels[key] = value
            else:
                check.add(label_map.line_of(key), f"{what}: label {_not_text(key, value)}")
    delegates = spec.get("delegates")
    if delegates is not None and (
        not isinstance(delegates, int)
        or isinstance(delegates, bool)
        or not 0 <= delegates <= MAX_DELEGATES
    ):
        check.add(
            spec.line_of("delegates"),
            f"{what}: delegates must be a whole number from 0 to {MAX_DELEGATES:,}",
        )
        delegates = None
    coords = {}
    for key, limit in (("latitude", 90), ("longitude", 180)):
        value = spec.get(key)
        if value is None:
            continue
        if (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and -limit <= value <= limit
        ):
            coords[key] = float(value)
        else:
            check.add(spec.line_of(key), f"{what}: {key} must be a number from -{limit} to {limit}")
    return Endpoint(
        id=endpoint_id,
        name=spec.get("name") or endpoint_id,
        tier=tier.name,
        parent=spec.get("parent"),
        address=spec.get("address") or "",
        modules=module_names,
        ancestors=ancestors,
        labels=labels,
        delegates=delegates,
        overrides=overrides,
        line=spec.line,
        **coords,
    )


def _overrides(
    check: Checker, spec: LinedMap, module_names: tuple, modules: dict, what: str
) -> dict[str, Module]:
    raw = spec.get("overrides")
    if raw is None:
        return {}
    data = check.mapping(raw, spec.line_of("overrides"), f"{what} overrides")
    result: dict[str, Module] = {}
    for name, body in (data or {}).items():
        line = data.line_of(name)
        if name not in module_names:
            check.add(
                line,
                f"{what}: override for {shown(name)}, which is not one of its modules; add it to "
                "`modules:` or remove the override",
            )
            continue
        settings_map = check.mapping(body, line, f"{what} override {shown(name)}")
        if settings_map is None:
            continue
        if name in check.broken_modules:
            continue
        module = modules[name]
        settings, problems = replace_settings(module.settings, settings_map)
        for key, message in problems:
            check.add(settings_map.line_of(key) if key else line, f"{what}: {name}: {message}")
        result[name] = Module(module.name, module.prober, module.timeout, module.required, settings)
    return result
