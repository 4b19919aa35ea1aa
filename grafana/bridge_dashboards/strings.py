"""Every text a dashboard shows, in each language: one table, so English and Vietnamese
dashboards come from the same code and cannot drift apart."""

from __future__ import annotations

LANGUAGES = ("en", "vi")

STRINGS: dict[str, dict[str, str]] = {
    # folders and dashboards
    "folder": {"en": "Bridge network", "vi": "Mạng điểm cầu"},
    "overview": {"en": "Bridge network: overview", "vi": "Mạng điểm cầu: tổng quan"},
    "endpoint": {"en": "Bridge network: endpoint", "vi": "Mạng điểm cầu: chi tiết điểm cầu"},
    "session": {"en": "Bridge network: session review", "vi": "Mạng điểm cầu: đánh giá phiên họp"},
    "health": {"en": "Bridge network: exporter health", "vi": "Mạng điểm cầu: tình trạng exporter"},
    # variables
    "var_tier": {"en": "Tier", "vi": "Cấp"},
    "var_endpoint": {"en": "Endpoint", "vi": "Điểm cầu"},
    "var_module": {"en": "Probe module", "vi": "Phép đo"},
    "var_exporter_url": {"en": "Exporter URL", "vi": "Địa chỉ exporter"},
    # states (value mappings)
    "state_down": {"en": "DOWN", "vi": "MẤT KẾT NỐI"},
    "state_cut_off": {"en": "cut off (upstream down)", "vi": "mất theo cấp trên"},
    "state_up": {"en": "up", "vi": "kết nối"},
    "state_degraded": {"en": "up, degraded", "vi": "kết nối, chất lượng giảm"},
    "state_poor": {"en": "up, poor", "vi": "kết nối, chất lượng kém"},
    "cause_upstream": {"en": "upstream down", "vi": "do cấp trên mất kết nối"},
    "cause_self": {"en": "this point", "vi": "tại điểm cầu này"},
    "phase_starts": {"en": "starts in", "vi": "bắt đầu sau"},
    "phase_ends": {"en": "ends in", "vi": "kết thúc sau"},
    "up": {"en": "up", "vi": "kết nối"},
    "total": {"en": "total", "vi": "tổng số"},
    "this_point": {"en": "this point", "vi": "điểm cầu này"},
    "parent": {"en": "parent", "vi": "cấp trên"},
    # overview
    "tier_up": {"en": "{tier}: points up", "vi": "Cấp {tier}: điểm cầu kết nối"},
    "session_now": {"en": "Session now", "vi": "Phiên họp hiện tại"},
    "session_clock": {"en": "Session starts / ends in", "vi": "Phiên họp bắt đầu / kết thúc sau"},
    "points_down": {"en": "Points down now", "vi": "Số điểm cầu đang mất kết nối"},
    "delegates_down": {
        "en": "Delegates behind down points",
        "vi": "Đại biểu tại các điểm mất kết nối",
    },
    "map": {"en": "Map: state of every point", "vi": "Bản đồ: trạng thái các điểm cầu"},
    "timeline_tier": {
        "en": "State of every point: {tier}",
        "vi": "Trạng thái các điểm cầu cấp {tier}",
    },
    "down_table": {
        "en": "Down now: since when, parent, cause (click a name for details)",
        "vi": "Đang mất kết nối: từ lúc, cấp trên, nguyên nhân (bấm tên để xem chi tiết)",
    },
    "col_name": {"en": "Point", "vi": "Điểm cầu"},
    "col_since": {"en": "Down since", "vi": "Mất từ lúc"},
    "col_parent": {"en": "Parent", "vi": "Cấp trên"},
    "col_cause": {"en": "Cause", "vi": "Nguyên nhân"},
    "col_tier": {"en": "Tier", "vi": "Cấp"},
    "col_start": {"en": "Start", "vi": "Bắt đầu"},
    "col_end": {"en": "End", "vi": "Kết thúc"},
    "col_duration": {"en": "Duration", "vi": "Thời lượng"},
    "col_session": {"en": "Session", "vi": "Phiên họp"},
    "col_availability": {"en": "Availability", "vi": "Tỷ lệ kết nối"},
    "worst_loss": {"en": "Worst packet loss (5 min)", "vi": "Mất gói nhiều nhất (5 phút)"},
    "worst_jitter": {"en": "Worst jitter (5 min)", "vi": "Jitter cao nhất (5 phút)"},
    "worst_rtt": {"en": "Worst round-trip time (5 min)", "vi": "Độ trễ khứ hồi cao nhất (5 phút)"},
    "worst_mos": {"en": "Lowest MOS (5 min)", "vi": "MOS thấp nhất (5 phút)"},
    "row_tiers": {"en": "Points by tier", "vi": "Điểm cầu theo cấp"},
    "row_quality": {"en": "Quality", "vi": "Chất lượng"},
    # endpoint
    "state_now": {"en": "State now", "vi": "Trạng thái hiện tại"},
    "parent_state_now": {"en": "Parent's state now", "vi": "Trạng thái cấp trên"},
    "history": {"en": "Up/down history, beside its parent", "vi": "Lịch sử kết nối, cùng cấp trên"},
    "rtt": {"en": "Round-trip time (last round)", "vi": "Độ trễ khứ hồi (lần đo gần nhất)"},
    "rtt_p95": {"en": "ICMP round-trip time p95", "vi": "Độ trễ khứ hồi ICMP p95"},
    "jitter": {"en": "Jitter", "vi": "Jitter (độ biến thiên trễ)"},
    "loss": {"en": "Packet loss", "vi": "Tỷ lệ mất gói"},
    "mos": {"en": "MOS (estimated)", "vi": "MOS (ước tính)"},
    "sip_latency": {"en": "SIP OPTIONS latency", "vi": "Độ trễ SIP OPTIONS"},
    "sip_code": {"en": "SIP response code", "vi": "Mã phản hồi SIP"},
    "probe_success": {"en": "Probes succeeding", "vi": "Phép đo thành công"},
    "link_overview": {"en": "Network overview", "vi": "Tổng quan mạng"},
    "link_probe": {
        "en": "Probe it now (exporter debug)",
        "vi": "Đo ngay (chi tiết từ exporter)",
    },
    "link_endpoint": {"en": "Endpoint details", "vi": "Chi tiết điểm cầu"},
    "link_session": {"en": "Review this session", "vi": "Đánh giá phiên họp này"},
    # session review
    "sessions": {
        "en": "Sessions (click one to set the time range)",
        "vi": "Các phiên họp (bấm để chọn khoảng thời gian)",
    },
    "tier_availability": {
        "en": "Availability by tier over the range",
        "vi": "Tỷ lệ kết nối theo cấp trong khoảng thời gian",
    },
    "tier_availability_time": {
        "en": "Availability by tier (1 h)",
        "vi": "Tỷ lệ kết nối theo cấp (1 giờ)",
    },
    "point_availability": {
        "en": "Availability of each point over the range (worst first)",
        "vi": "Tỷ lệ kết nối từng điểm cầu (thấp nhất trước)",
    },
    "outages": {"en": "Outages", "vi": "Các lần mất kết nối"},
    "tier_loss": {"en": "Packet loss by tier", "vi": "Tỷ lệ mất gói theo cấp"},
    "tier_rtt_p95": {"en": "Round-trip time p95 by tier", "vi": "Độ trễ khứ hồi p95 theo cấp"},
    "tier_jitter": {"en": "Jitter by tier", "vi": "Jitter theo cấp"},
    "tier_mos": {"en": "MOS by tier", "vi": "MOS theo cấp"},
    "mos_distribution": {
        "en": "Points by MOS over the range",
        "vi": "Số điểm cầu theo MOS trong khoảng thời gian",
    },
    "rtt_distribution": {
        "en": "ICMP round-trip times over the range (share of packets)",
        "vi": "Phân bố độ trễ khứ hồi ICMP (tỷ lệ gói)",
    },
    "mos_good": {"en": "MOS ≥ 4", "vi": "MOS ≥ 4"},
    "mos_fair": {"en": "MOS 3.6-4", "vi": "MOS 3,6-4"},
    "mos_poor": {"en": "MOS < 3.6", "vi": "MOS < 3,6"},
    # exporter health
    "exporter_up": {"en": "Exporter scraped", "vi": "Prometheus lấy được số liệu"},
    "rounds": {"en": "Probe rounds per second", "vi": "Số lượt đo mỗi giây"},
    "overruns": {"en": "Round overruns per second", "vi": "Lượt đo bị bỏ qua mỗi giây"},
    "in_flight": {"en": "Probes in flight", "vi": "Phép đo đang chạy"},
    "prober_ready": {"en": "Probers ready", "vi": "Bộ đo sẵn sàng"},
    "reload_ok": {"en": "Last inventory reload", "vi": "Lần nạp cấu hình gần nhất"},
    "reload_time": {"en": "Inventory loaded at", "vi": "Cấu hình nạp lúc"},
    "scrape_duration": {"en": "Scrape duration", "vi": "Thời gian lấy số liệu"},
    "result_age": {"en": "Oldest result age", "vi": "Số liệu cũ nhất"},
    "prober_errors": {"en": "Prober errors per second", "vi": "Lỗi bộ đo mỗi giây"},
    "memory": {"en": "Exporter memory", "vi": "Bộ nhớ exporter"},
    "cpu": {"en": "Exporter CPU", "vi": "CPU exporter"},
    "ok": {"en": "OK", "vi": "Tốt"},
    "failed": {"en": "FAILED", "vi": "LỖI"},
    "ready": {"en": "ready", "vi": "sẵn sàng"},
    "not_ready": {"en": "NOT READY", "vi": "KHÔNG SẴN SÀNG"},
}


class Text:
    """The strings of one language: `text("tier_up", tier="commune")`."""

    def __init__(self, language: str):
        if language not in LANGUAGES:
            raise ValueError(f"unknown language {language!r}: use one of {', '.join(LANGUAGES)}")
        self.language = language

    def __call__(self, key: str, **values: str) -> str:
        return STRINGS[key][self.language].format(**values)
