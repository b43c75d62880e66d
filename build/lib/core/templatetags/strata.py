"""Template filters for numbers people read: prices, token counts, shares of an allowance."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def money(cents: int | None) -> str:
    """4900 -> "$49", 4950 -> "$49.50", 0 -> "Free"."""
    if not cents:
        return "Free"
    dollars, rest = divmod(int(cents), 100)
    return f"${dollars:,}" if not rest else f"${dollars:,}.{rest:02d}"


@register.filter
def number(value: int | None) -> str:
    """5000000 -> "5,000,000"."""
    return f"{int(value or 0):,}"


@register.filter
def compact(value: int | None) -> str:
    """5000000 -> "5M", 200000 -> "200k", 1500 -> "1.5k"."""
    value = int(value or 0)
    for size, suffix in ((1_000_000_000, "B"), (1_000_000, "M"), (1_000, "k")):
        if value >= size:
            return f"{value / size:.1f}".rstrip("0").rstrip(".") + suffix
    return str(value)


@register.filter
def share(used: int | None, total: int | None) -> int:
    """Whole percent of ``total`` that ``used`` is, capped at 100 (for meters and bars)."""
    if not total:
        return 100 if used else 0
    return min(100, round(100 * int(used or 0) / int(total)))


@register.filter
def label(value: str | None) -> str:
    """A machine word as a label: "past_due" -> "Past due"."""
    text = str(value or "").replace("_", " ")
    return text[:1].upper() + text[1:]
