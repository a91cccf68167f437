"""Make invisible characters in user strings visible before they are displayed.

Bidi overrides and isolates (U+202A-U+202E, U+2066-U+2069), zero-width characters and control codes
change what an auditor reads without showing themselves: a feature named ``"\\u202egnp.exe"`` displays
as "exe.png". Every view (the dashboard, HTML reports and fragments, PNG labels) passes user strings
through :func:`visible`, which replaces each such character with a visible ``⟨U+202E⟩`` marker.
Tabs and newlines are kept.
"""
from __future__ import annotations

import re

__all__ = ["visible", "has_hidden", "visible_spans", "visible_tree"]

_HIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e"
                     "\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb]")


def _marker(ch: str) -> str:
    return f"⟨U+{ord(ch):04X}⟩"


def has_hidden(text: str) -> bool:
    """Whether ``text`` holds a character that :func:`visible` would replace."""
    return bool(_HIDDEN.search(text))


def visible(text):
    """``text`` with every invisible or direction-changing character shown as ``⟨U+XXXX⟩``; non-str as is."""
    if not isinstance(text, str) or not _HIDDEN.search(text):
        return text
    return _HIDDEN.sub(lambda m: _marker(m.group()), text)


def visible_spans(text: str, offsets) -> tuple[str, list[list[int]]]:
    """:func:`visible` for a text whose tokens are ``(start, end)`` character offsets into it: the
    offsets are moved with the replacements, so highlights still land on the same characters."""
    if not _HIDDEN.search(text):
        return text, [[int(a), int(b)] for a, b in offsets]
    pieces, where, pos = [], [0] * (len(text) + 1), 0
    for i, ch in enumerate(text):
        where[i] = pos
        piece = _marker(ch) if _HIDDEN.fullmatch(ch) else ch
        pieces.append(piece)
        pos += len(piece)
    where[len(text)] = pos
    return "".join(pieces), [[where[int(a)], where[int(b)]] for a, b in offsets]


def visible_tree(obj):
    """:func:`visible` applied to every string value inside nested dicts, lists and tuples."""
    if isinstance(obj, str):
        return visible(obj)
    if isinstance(obj, dict):
        return {k: visible_tree(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(visible_tree(v) for v in obj)
    return obj
