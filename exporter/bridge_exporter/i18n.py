"""Every user-facing string of `check` and `report`, in English and Vietnamese: one table.

`text(lang, key, **values)` formats the entry; dates and durations are formatted here too
(`dd/mm/yyyy HH:MM:SS` in Vietnamese, ISO-like in English), in the zone given.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

LANGS = ("en", "vi")

STRINGS: dict[str, tuple[str, str]] = {
    # --- check -------------------------------------------------------------------------
    "check.title": ("Readiness check", "Kiểm tra sẵn sàng"),
    "check.scope": (
        "{points} points, {rounds} round(s), {when}",
        "{points} điểm cầu, {rounds} lượt đo, {when}",
    ),
    "check.session": ("Session: {name} ({title})", "Phiên: {name} ({title})"),
    "check.progress": ("probing", "đang đo"),
    "col.tier": ("Tier", "Cấp"),
    "col.ok_total": ("OK/Total", "Đạt/Tổng"),
    "col.good": ("Good", "Tốt"),
    "col.degraded": ("Degraded", "Suy giảm"),
    "col.poor": ("Poor", "Kém"),
    "col.unmeasured": ("No figures", "Chưa đo"),
    "col.down": ("Down", "Mất kết nối"),
    "status.up": ("OK", "ĐẠT"),
    "status.degraded": ("DEGRADED", "SUY GIẢM"),
    "status.down": ("DOWN", "MẤT KẾT NỐI"),
    "status.unknown": ("not checked", "chưa kiểm tra"),
    "status.unchecked": ("NOT CHECKED", "CHƯA ĐO ĐƯỢC"),
    "check.problems": ("Problems (root causes first)", "Sự cố (nguyên nhân gốc trước)"),
    "check.no_problems": ("No problems: every point passed.", "Không có sự cố: mọi điểm cầu đạt."),
    "check.parent": ("parent {parent}: {state}", "cấp trên {parent}: {state}"),
    "check.no_parent": ("top of the network", "cấp cao nhất"),
    "check.behind": ("behind {cause}", "do {cause} mất kết nối"),
    "check.figures": (
        "RTT {rtt} ms, jitter {jitter} ms, loss {loss} %, MOS {mos}",
        "RTT {rtt} ms, jitter {jitter} ms, mất gói {loss} %, MOS {mos}",
    ),
    "check.no_figures": ("no figures", "không có số liệu"),
    "check.no_reply": ("loss 100 %, no reply", "mất gói 100 %, không trả lời"),
    "check.quality_reason": ("quality {grade}", "chất lượng {grade}"),
    "grade.0": ("good", "tốt"),
    "grade.1": ("degraded", "suy giảm"),
    "grade.2": ("poor", "kém"),
    "check.result.0": (
        "Result: READY, every point passed (exit 0)",
        "Kết quả: SẴN SÀNG, mọi điểm cầu đạt (mã 0)",
    ),
    "check.result.3": (
        "Result: DEGRADED, {degraded} point(s) degraded, none down (exit 3)",
        "Kết quả: SUY GIẢM, {degraded} điểm cầu chất lượng suy giảm, "
        "không điểm nào mất kết nối (mã 3)",
    ),
    "check.result.4": (
        "Result: NOT READY, {down} point(s) down, {degraded} degraded (exit 4)",
        "Kết quả: CHƯA SẴN SÀNG, {down} điểm cầu mất kết nối, {degraded} suy giảm (mã 4)",
    ),
    "check.result.5": (
        "Result: NOT READY, {unchecked} point(s) could not be checked: this host ran out of "
        "descriptors, buffers or memory (raise `ulimit -n` or lower `concurrency`), "
        "{degraded} degraded (exit 5)",
        "Kết quả: CHƯA SẴN SÀNG, {unchecked} điểm cầu chưa đo được do máy chạy kiểm tra hết "
        "tài nguyên (tăng `ulimit -n` hoặc giảm `concurrency`), {degraded} suy giảm (mã 5)",
    ),
    "check.unknown_session": (
        "{file}: no session {name!r} in the inventory (sessions: {known}); name one of them",
        "{file}: không có phiên {name!r} trong tệp cấu hình (các phiên: {known}); "
        "chọn một phiên có",
    ),
    # --- report --------------------------------------------------------------------------
    "report.title": ("Session reliability report", "Báo cáo độ tin cậy phiên họp"),
    "report.range": ("From {start} to {end} ({zone})", "Từ {start} đến {end} ({zone})"),
    "report.generated": ("Generated {when} from {url}", "Lập lúc {when} từ {url}"),
    "report.summary": ("Summary", "Tổng hợp"),
    "report.points": ("Points", "Số điểm cầu"),
    "report.availability": ("Availability", "Tỷ lệ sẵn sàng"),
    "report.outage_count": ("Outages", "Số lần mất kết nối"),
    "report.root_outages": ("Root-cause outages", "Sự cố gốc"),
    "report.mttr": (
        "Mean time to recover (root causes)",
        "Thời gian khắc phục trung bình (sự cố gốc)",
    ),
    "report.delegates_affected": ("Delegates affected", "Số đại biểu bị ảnh hưởng"),
    "report.by_tier": ("Availability per tier", "Tỷ lệ sẵn sàng theo cấp"),
    "report.by_point": ("Availability per point", "Tỷ lệ sẵn sàng theo điểm cầu"),
    "report.outages": ("Outages", "Các lần mất kết nối"),
    "report.no_outages": ("No outages.", "Không có lần mất kết nối nào."),
    "report.quality": ("Quality", "Chất lượng"),
    "report.worst": ("Worst points", "Các điểm cầu chất lượng kém nhất"),
    "report.charts": ("Charts", "Biểu đồ"),
    "report.chart_tiers": (
        "Points up per tier over the session",
        "Tỷ lệ điểm cầu kết nối theo cấp",
    ),
    "report.chart_timeline": ("Outage timeline per point", "Thời gian mất kết nối theo điểm cầu"),
    "report.chart_mos": (
        "Distribution of mean MOS per point",
        "Phân bố MOS trung bình theo điểm cầu",
    ),
    "report.chart_rtt": (
        "Distribution of mean RTT per point (ms)",
        "Phân bố RTT trung bình theo điểm cầu (ms)",
    ),
    "report.upstream": ("upstream", "do cấp trên"),
    "report.own": ("own", "tại chỗ"),
    "report.ongoing": ("ongoing", "chưa khắc phục"),
    "col.endpoint": ("Point", "Điểm cầu"),
    "col.name": ("Name", "Tên"),
    "col.parent": ("Parent", "Cấp trên"),
    "col.start": ("Start", "Bắt đầu"),
    "col.end": ("End", "Kết thúc"),
    "col.duration": ("Duration", "Thời lượng"),
    "col.cause": ("Cause", "Nguyên nhân"),
    "col.delegates": ("Delegates", "Đại biểu"),
    "col.downtime": ("Downtime", "Thời gian mất kết nối"),
    "col.loss": ("Loss %", "Mất gói %"),
    "col.rtt": ("RTT ms", "RTT ms"),
    "col.jitter": ("Jitter ms", "Jitter ms"),
    "col.mos": ("MOS", "MOS"),
    "col.points": ("Points", "Số điểm"),
    "col.availability": ("Availability %", "Sẵn sàng %"),
    "report.none": ("none", "không có"),
    "report.progress": ("querying Prometheus", "đang truy vấn Prometheus"),
}


def text(lang: str, key: str, **values: object) -> str:
    english, vietnamese = STRINGS[key]
    template = vietnamese if lang == "vi" else english
    return template.format(**values) if values else template


def zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def format_time(lang: str, unix: float, tz: zoneinfo.ZoneInfo, seconds: bool = True) -> str:
    moment = dt.datetime.fromtimestamp(unix, tz)
    if lang == "vi":
        return moment.strftime("%H:%M:%S %d/%m/%Y" if seconds else "%H:%M %d/%m/%Y")
    return moment.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def format_clock(unix: float, tz: zoneinfo.ZoneInfo) -> str:
    return dt.datetime.fromtimestamp(unix, tz).strftime("%H:%M")


def format_duration(seconds: float) -> str:
    """H:MM:SS, the same in both languages (unambiguous in official reports)."""
    whole = round(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def format_percent(ratio: float, digits: int = 2) -> str:
    return f"{ratio * 100:.{digits}f}"
