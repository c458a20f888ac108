"""Vietnamese words for states, counts and durations, the same in the chat messages
(:mod:`monitor.alerts.formats`) and in the session report (:mod:`monitor.report`): the
language the council's officials read."""

from __future__ import annotations

__all__ = ["STATE_VI", "duration", "state_counts"]

#: each state (contract names) as the officials read it
STATE_VI = {
    "up": "hoạt động",
    "degraded": "chất lượng kém",
    "down": "mất kết nối",
    "unreachable": "không truy cập được",
    "unknown": "không có dữ liệu",
    "maintenance": "bảo trì",
}


def duration(seconds: float) -> str:
    """``8 phút 22 giây``, ``1 giờ 5 phút``."""
    s = max(0, round(seconds))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    if h:
        return f"{h} giờ {m} phút" if m else f"{h} giờ"
    if m:
        return f"{m} phút {sec} giây" if sec else f"{m} phút"
    return f"{sec} giây"


def state_counts(counts: dict[str, int]) -> str:
    """``1 mất kết nối, 29 không truy cập được``: the states other than up, worst first."""
    order = ("down", "unreachable", "degraded", "unknown", "maintenance")
    return ", ".join(f"{counts[s]} {STATE_VI[s]}" for s in order if counts.get(s))
