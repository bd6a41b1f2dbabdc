"""The Content-Security-Policy: no inline scripts or styles anywhere; a page that needs another
origin (a payment provider's) names it for itself, on top of the same base."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

BASE: dict[str, tuple[str, ...]] = {
    "default-src": ("'self'",),
    "img-src": ("'self'", "data:"),
    "style-src": ("'self'",),
    "script-src": ("'self'",),
    "frame-ancestors": ("'none'",),
    "base-uri": ("'none'",),
    "form-action": ("'self'",),
}


def policy(extra: Mapping[str, Sequence[str]] | None = None) -> str:
    """The base policy, with `extra` origins added to their directives (a directive the base
    does not name starts from default-src, as browsers would fall back to it)."""
    directives = {name: list(sources) for name, sources in BASE.items()}
    for name, origins in (extra or {}).items():
        sources = directives.setdefault(name, list(BASE["default-src"]))
        sources += [origin for origin in origins if origin not in sources]
    return "; ".join(f"{name} {' '.join(sources)}" for name, sources in directives.items())


CSP = policy()
