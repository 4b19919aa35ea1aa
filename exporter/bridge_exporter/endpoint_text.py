"""One endpoint's series as text, one bytes part per metric family, formatted in one call.

At 10,000 endpoints a round ends 667 times a second, and each one renders its endpoint's
~43 series. Building them one by one (a method call, a float repr and an f-string per
series, then a join and an encode per family) was the largest single cost of a round. Here
the round only lists its label texts, which series it has (its *shape*: a tuple of ints)
and their values. The shape seldom changes (a probe starts failing, a prober reports a new
figure), so the layout of each shape is made once: a bytes %-template with the families
separated by NUL, and the order in which it takes the labels and values. A round's text is
then one itemgetter, one % and one split, all in C. Label texts are arguments (UTF-8), not
part of a template, so endpoints of the same shape share one.

Values are written as prometheus_client writes them (`1.0`, `1.7e-05`, `+Inf`, `NaN`),
histogram bucket counts as integers, as exposition.Family does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import itemgetter

from .exposition import Family, format_value

# A series code: its family's index, whether it is a histogram, its label text's slot (an
# endpoint's base and info labels, one per module, one per failing module).
_SLOT_BITS = 32
_SLOT_MASK = (1 << _SLOT_BITS) - 1
_HISTOGRAM = 1 << _SLOT_BITS
_FAMILY_SHIFT = _SLOT_BITS + 1
# Shapes kept; a network meets a handful per kind of endpoint.
_MAX_LAYOUTS = 4096


def series_code(family_index: int, histogram: bool = False) -> int:
    """The code of a family's series with label slot 0: add the slot for another."""
    return family_index << _FAMILY_SHIFT | (_HISTOGRAM if histogram else 0)


class _Form:
    """A %-template and the getter that orders the arguments for it."""

    __slots__ = ("order", "pick", "template")

    def __init__(self, template: bytes, order: list[int]):
        self.template = template
        self.order = order
        self.pick: Callable[[tuple], tuple] = _picker(order)


def _picker(order: list[int]) -> Callable[[tuple], tuple]:
    if len(order) == 1:  # itemgetter of one index gives the item, not a 1-tuple
        (index,) = order
        return lambda arguments: (arguments[index],)
    if not order:
        return lambda arguments: ()
    return itemgetter(*order)


class _Layout:
    """One shape's text: each family's lines as (template piece, argument indices). Its
    forms are made when first needed: whole (families separated by NUL) or one per
    family (for label texts that hold a NUL themselves), for finite values (%r) or for
    values passed as text (%s: an infinity or NaN among them)."""

    __slots__ = ("_by_family", "_forms")

    def __init__(self, by_family: list[list[tuple[str, list[int]]]]):
        self._by_family = by_family
        self._forms: dict[tuple[bool, bool], list[_Form]] = {}

    def forms(self, finite: bool, whole: bool) -> list[_Form]:
        forms = self._forms.get((finite, whole))
        if forms is None:
            forms = self._forms[finite, whole] = self._make(finite, whole)
        return forms

    def _make(self, finite: bool, whole: bool) -> list[_Form]:
        float_spec = "%r" if finite else "%s"
        forms = []
        for family in self._by_family:
            texts = [piece.replace("%r", float_spec) for piece, _ in family]
            order = [index for _, indices in family for index in indices]
            forms.append(_Form("".join(texts).encode(), order))
        if not whole:
            return forms
        template = b"\x00".join(form.template for form in forms)
        return [_Form(template, [index for form in forms for index in form.order])]


class EndpointText:
    """Formats one endpoint's series into one bytes part per family of `families`.

    A round hands over:
    - `labels`: label texts (exposition.label_text, never empty) as UTF-8, by slot;
    - `shape`: one code per series (series_code(family) + its label slot): a family's
      series come out in the order they are listed;
    - `floats`: each plain series' value, in shape order, then each histogram's sum and
      count;
    - `ints`: each histogram's cumulative bucket counts (`bucket_texts` order), then its
      +Inf count.

    `families` may grow (a prober's new figure); call `families_changed()` then."""

    def __init__(self, families: Sequence[Family], bucket_texts: Sequence[str]):
        self._families = families
        self._bucket_texts = tuple(bucket_texts)
        self._layouts: dict[tuple[int, ...], _Layout] = {}

    def families_changed(self) -> None:
        self._layouts.clear()

    def parts(
        self, labels: list[bytes], shape: tuple[int, ...], floats: list[float], ints: list[int]
    ) -> list[bytes]:
        layout = self._layouts.get(shape)
        if layout is None:
            layout = self._layout(shape, len(labels), len(floats))
        values: list = list(map(float, floats))
        total = sum(values)
        finite = total - total == 0
        if not finite:  # an infinity or NaN among them (or a sum that overflowed)
            values = [format_value(value).encode() for value in values]
        arguments = (*labels, *values, *ints)
        (whole,) = layout.forms(finite, whole=True)
        parts = (whole.template % whole.pick(arguments)).split(b"\x00")
        if len(parts) != len(self._families):  # a label text holds a NUL
            parts = [form.template % form.pick(arguments) for form in layout.forms(finite, False)]
        return parts

    def _layout(self, shape: tuple[int, ...], label_count: int, float_count: int) -> _Layout:
        lines: list[list[tuple[str, list[int]]]] = [[] for _ in self._families]
        next_float, next_int = label_count, label_count + float_count
        histograms = []
        for code in shape:
            family, slot = code >> _FAMILY_SHIFT, code & _SLOT_MASK
            name = self._families[family].name
            if code & _HISTOGRAM:
                histograms.append((family, name, slot))
                continue
            lines[family].append((f"{name}{{%s}} %r\n", [slot, next_float]))
            next_float += 1
        for family, name, slot in histograms:
            for bound in (*self._bucket_texts, "+Inf"):
                lines[family].append((f'{name}_bucket{{%s,le="{bound}"}} %d\n', [slot, next_int]))
                next_int += 1
            for suffix in ("_sum", "_count"):
                lines[family].append((f"{name}{suffix}{{%s}} %r\n", [slot, next_float]))
                next_float += 1
        if len(self._layouts) >= _MAX_LAYOUTS:
            self._layouts.clear()
        layout = self._layouts[shape] = _Layout(lines)
        return layout
