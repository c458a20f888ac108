"""What the operator is doing on the dashboard: looking at the city, searching a point, or
reading one point's detail. Pure state, changed by keys (:mod:`monitor.dashboard.keys`).

Keys: ``/`` searches a point by name (diacritics optional: "ba vi" finds "Ba Vì", "dong
anh" finds "Đông Anh"); ``d`` picks a district the same way and lists its rooms, worst
first; ``↑``/``↓`` choose; Enter opens the point's detail (from the main screen: the worst
incident's); ``a`` acknowledges the worst incident not acknowledged yet (in a detail: that
point's), so alert reminders stop while it lasts; Esc goes back; ``q`` quits (in a search,
Esc first: ``q`` is a letter there). Ctrl-C always quits.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from monitor.dashboard.model import STATE_ORDER, PointView, Snapshot

__all__ = ["Ui", "district_rooms", "fold", "search"]


def fold(text: str) -> str:
    """``text`` for matching: lower case, without diacritics (đ as d)."""
    t = unicodedata.normalize("NFD", text.lower().replace("đ", "d"))
    return "".join(c for c in t if not unicodedata.combining(c))


def search(snap: Snapshot, query: str) -> list[PointView]:
    """Points whose name, district or id hold every word of ``query`` (folded), those whose
    name starts with it first, then the worst first."""
    words = fold(query).split()
    if not words:
        return []
    found: list[tuple[tuple[int, int, str], PointView]] = []
    for p in snap.points.values():
        hq = snap.points.get(p.district)
        name = fold(p.name)
        haystack = f"{name} {fold(hq.name) if hq else ''} {p.id}"
        if all(w in haystack for w in words):
            prefix = 0 if name.startswith(words[0]) or f" {words[0]}" in name else 1
            found.append(((prefix, STATE_ORDER.index(p.state), name), p))
    return [p for _, p in sorted(found, key=lambda kv: kv[0])]


def district_rooms(snap: Snapshot, district: str) -> list[PointView]:
    """The points of ``district``, worst first (inventory order among equals)."""
    rooms = [p for p in snap.points.values() if p.district == district]
    return sorted(rooms, key=lambda p: STATE_ORDER.index(p.state))


@dataclass
class Ui:
    mode: str = "main"  # main, search, district (its rooms), detail
    query: str = ""
    cursor: int = 0
    #: what the search looks for: ``point`` (any point) or ``district`` (headquarters)
    kind: str = "point"
    district: str | None = None  # the district whose rooms are listed
    point: str | None = None  # the point whose detail is open
    back: str = "main"  # where Esc leads from the detail
    #: an incident (its cause) the operator asked to acknowledge; the app sends it
    ack: str | None = None
    #: a line for the operator (what came of an acknowledgement), and until when
    message: str = ""
    message_until: float = 0.0

    def key(self, key: str, snap: Snapshot) -> bool:
        """Apply one key; True when the dashboard should quit."""
        if self.mode == "search":
            return self._search_key(key, snap)
        if self.mode == "detail":
            if key in ("esc", "backspace", "left"):
                self.mode, self.point = self.back, None
            elif key == "a" and self.point is not None:
                p = snap.points.get(self.point)
                if p is not None and p.state not in ("up", "maintenance"):
                    self.ack = p.cause or p.id
            return key in ("q", "Q")
        if self.mode == "district":
            return self._district_key(key, snap)
        if key in ("q", "Q"):
            return True
        if key in ("/", "d"):
            self.mode, self.query, self.cursor = "search", "", 0
            self.kind = "district" if key == "d" else "point"
        elif key == "enter":
            worst = next((i.head for i in snap.incidents() if i.head is not None), None)
            if worst is not None:
                self.open(worst.id, back="main")
        elif key == "a":
            # the worst incident not acknowledged yet
            todo = next(
                (
                    i
                    for i in snap.incidents()
                    if i.cause not in snap.acks and not i.cause.startswith("gap:")
                ),
                None,
            )
            if todo is not None:
                self.ack = todo.cause
        return False

    def open(self, point: str, back: str) -> None:
        self.mode, self.point, self.back = "detail", point, back

    def matches(self, snap: Snapshot) -> list[PointView]:
        if self.kind == "district":
            hqs = [p for p in snap.points.values() if p.parent is None]
            if not self.query.strip():
                return hqs
            found = {p.id for p in search(snap, self.query)}
            return [p for p in hqs if p.id in found]
        return search(snap, self.query)

    def _district_key(self, key: str, snap: Snapshot) -> bool:
        rooms = district_rooms(snap, self.district or "")
        if key in ("esc", "backspace", "left"):
            self.mode, self.district = "main", None
        elif key == "up":
            self.cursor = max(0, self.cursor - 1)
        elif key == "down":
            self.cursor = min(max(0, len(rooms) - 1), self.cursor + 1)
        elif key == "enter" and rooms:
            self.open(rooms[min(self.cursor, len(rooms) - 1)].id, back="district")
        return key in ("q", "Q")

    def _search_key(self, key: str, snap: Snapshot) -> bool:
        found = self.matches(snap)
        if key == "esc":
            self.mode = "main"
        elif key == "enter":
            if found and self.kind == "district":
                chosen = found[min(self.cursor, len(found) - 1)]
                self.mode, self.district, self.cursor = "district", chosen.district, 0
            elif found:
                self.open(found[min(self.cursor, len(found) - 1)].id, back="search")
        elif key == "backspace":
            self.query, self.cursor = self.query[:-1], 0
        elif key == "up":
            self.cursor = max(0, self.cursor - 1)
        elif key == "down":
            self.cursor = min(max(0, len(found) - 1), self.cursor + 1)
        elif len(key) == 1 and key.isprintable() and len(self.query) < 60:
            self.query, self.cursor = self.query + key, 0
        return False
