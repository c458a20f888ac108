"""How the documents for people (HTML, Markdown) write the report's figures: in Vietnamese,
the language the council's officials read, times in the report's time zone, numbers with
a decimal comma. Formatting only: every figure comes computed in the
:class:`~monitor.report.compute.Report`.

Texts from outside (names, reasons) are not escaped here: each renderer escapes for its own
format, after :func:`monitor.text.printable`.
"""

from __future__ import annotations

import datetime
import zoneinfo

from monitor.report.compute import NOT_RUNNING, Gap, Incident, Note, Report
from monitor.vietnamese import STATE_VI, duration

__all__ = [
    "COLUMNS",
    "CONDITION",
    "HEADINGS",
    "METHOD",
    "Clock",
    "figure_loss",
    "figure_mos",
    "figure_rtt",
    "gap_kind",
    "incident_rooms",
    "note_text",
    "percent",
    "seconds",
]

#: each condition of a room: the six states and the time no monitor ran
CONDITION = {**STATE_VI, NOT_RUNNING: "confmon không chạy"}

#: the headings both documents use (the HTML and the Markdown read the same)
HEADINGS = {
    "title": "Báo cáo tình trạng kết nối các điểm cầu",
    "summary": "Tổng quan",
    "timeline": "Diễn biến theo quận, huyện, thị xã",
    "availability": "Độ khả dụng theo quận, huyện, thị xã",
    "incidents": "Sự cố mất kết nối",
    "degraded": "Chất lượng kém",
    "gaps": "Gián đoạn giám sát",
    "districts": "Chi tiết theo quận, huyện, thị xã",
    "rooms_hit": "Điểm cầu từng mất kết nối hoặc chất lượng kém",
    "rooms": "Phụ lục: chi tiết từng điểm cầu",
    "method": "Cách tính",
    "notes": "Lưu ý",
}

#: the figures' column headings
COLUMNS = {
    "number": "STT",
    "cause": "Nguyên nhân",
    "district": "Quận, huyện",
    "room": "Điểm cầu",
    "start": "Bắt đầu",
    "end": "Kết thúc",
    "duration": "Thời lượng",
    "detect": "Phát hiện sau",
    "recover": "Khôi phục sau",
    "rooms": "Số điểm cầu",
    "reason": "Lý do",
    "crossed": "Chỉ số vượt ngưỡng",
    "kind": "Loại",
    "availability": "Độ khả dụng",
    "out": "Mất kết nối",
    "degraded": "Chất lượng kém",
    "not_monitored": "Không giám sát",
    "rtt": "RTT cao nhất",
    "loss": "Mất gói cao nhất",
    "mos": "MOS thấp nhất",
    "rooms_out": "Điểm cầu mất kết nối",
}

#: the method, in a few sentences (``docs/report.md`` has the whole of it)
METHOD = (
    "Độ khả dụng = thời gian hoạt động (kể cả chất lượng kém) chia cho tổng thời gian hoạt "
    "động, mất kết nối và không truy cập được. Thời gian bảo trì và thời gian không giám sát "
    "(không có dữ liệu mới, hoặc confmon không chạy) không được tính vào mẫu số mà được nêu "
    "riêng. Một sự cố gồm mọi điểm cầu mất kết nối vì cùng một nguyên nhân (ví dụ đường "
    "truyền của trụ sở huyện): bắt đầu khi điểm cầu đầu tiên đổi trạng thái, kết thúc khi "
    "điểm cầu cuối cùng hoạt động lại. Phát hiện sau: từ kết quả đo lỗi đầu tiên đến khi "
    "trạng thái đổi; khôi phục sau: từ kết quả đo tốt đầu tiên đến khi điểm cầu cuối cùng "
    "hoạt động lại. RTT, mất gói và MOS là giá trị kém nhất ghi lại ở các lần đổi trạng thái."
)


class Clock:
    """Times of one report in its time zone: ``08:05:12``, with the date when it is not the
    day the window starts on."""

    def __init__(self, report: Report) -> None:
        self.tz = zoneinfo.ZoneInfo(report.meta.timezone)
        self.day = self.local(report.meta.start).date()

    def local(self, t: float) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(t, self.tz)

    def time(self, t: float) -> str:
        when = self.local(t)
        if when.date() != self.day:
            return when.strftime("%H:%M:%S %d/%m/%Y")
        return when.strftime("%H:%M:%S")

    def minute(self, t: float) -> str:
        """``08:05`` (an axis tick), with seconds when it is not on the minute."""
        when = self.local(t)
        return when.strftime("%H:%M" if when.second == 0 else "%H:%M:%S")

    def date(self, t: float) -> str:
        return self.local(t).strftime("%d/%m/%Y")

    def window(self, start: float, end: float) -> str:
        """``từ 08:00:00 đến 11:30:00 ngày 12/06/2026``."""
        a, b = self.local(start), self.local(end)
        if a.date() == b.date():
            return f"từ {a:%H:%M:%S} đến {b:%H:%M:%S} ngày {a:%d/%m/%Y}"
        return f"từ {a:%H:%M:%S %d/%m/%Y} đến {b:%H:%M:%S %d/%m/%Y}"

    def end(self, t: float | None) -> str:
        return self.time(t) if t is not None else "đang diễn ra khi hết khung thời gian"


def _number(value: float, places: int) -> str:
    return f"{value:,.{places}f}".replace(",", " ").replace(".", ",")


def percent(ratio: float | None) -> str:
    """``99,87%``; never ``100,00%`` for a ratio below 1 (``99,99%``); ``—`` for None."""
    if ratio is None:
        return "—"
    if ratio >= 1.0:
        return "100%"
    shown = min(ratio * 100, 99.99)
    return f"{_number(shown, 2)}%"


def seconds(value: float | None) -> str:
    """A duration in words (``1 phút 5 giây``); ``dưới 1 giây`` for a moment, ``0 giây``
    for none; ``—`` for None."""
    if value is None:
        return "—"
    return "dưới 1 giây" if 0 < value < 0.5 else duration(value)


def figure_rtt(value: float | None) -> str:
    if value is None:
        return "—"
    ms = value * 1000
    if 0 < ms < 0.05:
        return "< 0,1 ms"
    return f"{_number(ms, 1 if ms < 10 else 0)} ms"


def figure_loss(value: float | None) -> str:
    return "—" if value is None else f"{_number(value * 100, 1)}%"


def figure_mos(value: float | None) -> str:
    return "—" if value is None else _number(value, 2)


def incident_rooms(incident: Incident) -> str:
    """``30 (1 mất kết nối, 29 không truy cập được)``."""
    parts = ", ".join(
        f"{incident.rooms_by_state[s]} {STATE_VI[s]}"
        for s in ("down", "unreachable")
        if incident.rooms_by_state.get(s)
    )
    return f"{incident.rooms} ({parts})" if parts else str(incident.rooms)


def gap_kind(gap: Gap) -> str:
    if gap.kind == "not_running":
        return "confmon không chạy"
    if gap.kind == "agent":
        return f"mất agent {gap.cause.removeprefix('agent:')}"
    return "không có dữ liệu mới"


def note_text(note: Note, clock: Clock) -> str:
    """A note in Vietnamese (its English text is in the JSON)."""
    at = clock.time(note.at) if note.at is not None else ""
    texts = {
        "window_in_future": (
            f"Khung thời gian kết thúc sau thời điểm lập báo cáo: số liệu tính đến {at}."
        ),
        "not_in_inventory": (
            f"{note.count} điểm trong nhật ký sự kiện không có trong danh mục điểm cầu nên "
            "không được tính."
        ),
        "no_inventory": (
            "Không có tệp danh mục điểm cầu (-c): danh sách và tên điểm cầu lấy từ nhật ký "
            f"sự kiện ({note.count} điểm)."
        ),
        "no_runs": (
            "Nhật ký sự kiện không ghi lại lúc nào confmon chạy (do phiên bản cũ ghi): thời "
            "gian được tính theo các lần đổi trạng thái, nên khoảng confmon không chạy được "
            "tính theo trạng thái ghi cuối cùng."
        ),
        "timezone_assumed": (
            "Không có danh mục điểm cầu và nhật ký sự kiện không ghi múi giờ: giờ trong báo "
            f"cáo được hiểu theo múi giờ {clock.tz.key}."
        ),
        "before_runs": (
            f"Khung thời gian bắt đầu trước lần chạy đầu tiên được ghi lại ({at}): trước đó, "
            "thời gian được tính theo các lần đổi trạng thái."
        ),
    }
    return texts.get(note.code, note.text)
