"""Generates examples/thai-binh.yml, the seed network (kept so the file can be remade)."""

import unicodedata
from pathlib import Path

DISTRICTS = [  # (slug, name, lat, lon, communes)
    (
        "tp-thai-binh",
        "Thành phố Thái Bình",
        20.4463,
        106.3366,
        [
            "Phường Lê Hồng Phong",
            "Phường Bồ Xuyên",
            "Phường Đề Thám",
            "Phường Kỳ Bá",
            "Phường Quang Trung",
            "Phường Phú Khánh",
            "Phường Tiền Phong",
            "Phường Trần Hưng Đạo",
            "Phường Trần Lãm",
            "Phường Hoàng Diệu",
            "Xã Đông Hòa",
            "Xã Vũ Phúc",
        ],
    ),
    (
        "hung-ha",
        "Huyện Hưng Hà",
        20.5939,
        106.2170,
        [
            "Thị trấn Hưng Hà",
            "Thị trấn Hưng Nhân",
            "Xã Tân Lễ",
            "Xã Canh Tân",
            "Xã Cộng Hòa",
            "Xã Hòa Tiến",
            "Xã Minh Khai",
            "Xã Thái Phương",
            "Xã Chi Lăng",
            "Xã Độc Lập",
            "Xã Điệp Nông",
        ],
    ),
    (
        "dong-hung",
        "Huyện Đông Hưng",
        20.5520,
        106.3480,
        [
            "Thị trấn Đông Hưng",
            "Xã Đông Hợp",
            "Xã Đông La",
            "Xã Đông Sơn",
            "Xã Hồng Việt",
            "Xã Liên Hoa",
            "Xã Mê Linh",
            "Xã Nguyên Xá",
            "Xã Phong Dương",
            "Xã Đông Kinh",
            "Xã Hoa Nam",
        ],
    ),
    (
        "quynh-phu",
        "Huyện Quỳnh Phụ",
        20.6470,
        106.3640,
        [
            "Thị trấn Quỳnh Côi",
            "Thị trấn An Bài",
            "Xã An Ninh",
            "Xã An Thanh",
            "Xã Quỳnh Hải",
            "Xã Quỳnh Hoa",
            "Xã Quỳnh Giao",
            "Xã Quỳnh Hội",
            "Xã An Vũ",
            "Xã Đông Hải",
            "Xã Quỳnh Minh",
        ],
    ),
    (
        "thai-thuy",
        "Huyện Thái Thụy",
        20.5410,
        106.5180,
        [
            "Thị trấn Diêm Điền",
            "Xã Thụy Hải",
            "Xã Thụy Trường",
            "Xã Thái Thượng",
            "Xã Thái Đô",
            "Xã Thụy Liên",
            "Xã Thụy Ninh",
            "Xã Thái Nguyên",
            "Xã Thụy Phong",
            "Xã Thái Hưng",
            "Xã Hồng Dũng",
        ],
    ),
    (
        "tien-hai",
        "Huyện Tiền Hải",
        20.4040,
        106.5160,
        [
            "Thị trấn Tiền Hải",
            "Xã Đông Trà",
            "Xã Đông Minh",
            "Xã Nam Thịnh",
            "Xã Nam Thanh",
            "Xã Tây Giang",
            "Xã Tây Ninh",
            "Xã Vũ Lăng",
            "Xã An Ninh",
            "Xã Nam Trung",
            "Xã Đông Hoàng",
        ],
    ),
    (
        "kien-xuong",
        "Huyện Kiến Xương",
        20.3980,
        106.4200,
        [
            "Thị trấn Kiến Xương",
            "Xã Bình Nguyên",
            "Xã Quang Trung",
            "Xã Vũ Quý",
            "Xã Hòa Bình",
            "Xã Thanh Tân",
            "Xã Minh Tân",
            "Xã Vũ Bình",
            "Xã Lê Lợi",
            "Xã Nam Bình",
            "Xã Đình Phùng",
        ],
    ),
    (
        "vu-thu",
        "Huyện Vũ Thư",
        20.4330,
        106.2750,
        [
            "Thị trấn Vũ Thư",
            "Xã Tam Quang",
            "Xã Song Lãng",
            "Xã Minh Quang",
            "Xã Tân Hòa",
            "Xã Việt Hùng",
            "Xã Hòa Bình",
            "Xã Dũng Nghĩa",
            "Xã Xuân Hòa",
            "Xã Nguyên Xá",
            "Xã Vũ Hội",
        ],
    ),
]
EQUIVALENTS = [  # district-level points that are not districts ("cấp huyện và tương đương")
    ("dang-uy-khoi-co-quan", "Đảng ủy Khối các cơ quan tỉnh"),
    ("dang-uy-khoi-doanh-nghiep", "Đảng ủy Khối doanh nghiệp tỉnh"),
    ("dang-uy-quan-su", "Đảng ủy Quân sự tỉnh"),
    ("dang-uy-cong-an", "Đảng ủy Công an tỉnh"),
]
TOTAL_DELEGATES = 11_938


def slug(text: str) -> str:
    for prefix in ("Thị trấn ", "Phường ", "Xã "):
        text = text.removeprefix(prefix)
    text = text.replace("Đ", "D").replace("đ", "d")
    ascii_text = unicodedata.normalize("NFD", text).encode("ascii", "ignore").decode()
    return ascii_text.lower().replace(" ", "-")


def main() -> None:
    lines = [
        "# The seed network: Thái Bình province on the day before the national session on the",
        "# XIII Party Congress resolution (26 March 2021). 1 central hall, 2 provincial,",
        "# 12 district-level and 89 commune points; 11,938 delegates in Thái Bình.",
        "# Every address is on 127.0.0.0/8 so the demo and the tests can reach it: replace",
        "# them with your endpoints' real addresses (IPv4, IPv6 or host names).",
        "# Validate with: bridge-exporter validate examples/thai-binh.yml",
        "",
        "interval: 15s          # each endpoint is probed every 15 s, starts spread evenly",
        "concurrency: 512       # probes in flight at most",
        "",
        "thresholds:            # quality grades (good / degraded / poor); per tier below",
        "  rtt_warning: 300ms",
        "  rtt_critical: 800ms",
        "  jitter_warning: 30ms",
        "  jitter_critical: 50ms",
        "  loss_warning: 0.01",
        "  loss_critical: 0.05",
        "",
        "tiers:                 # from the top down; each name becomes a label",
        "  - name: central",
        "    modules: [icmp, sip, stamp]",
        "  - name: province",
        "    modules: [icmp, sip, h323, stamp, media]",
        "  - name: district",
        "    modules: [icmp, sip, h323, stamp]",
        "  - name: commune",
        "    modules: [icmp, sip, stamp]",
        "    thresholds:        # commune links are often 4G/ADSL: allow a little more delay",
        "      rtt_warning: 400ms",
        "",
        "modules:",
        "  icmp:",
        "    prober: icmp",
        "    timeout: 5s",
        "    icmp: {count: 5, interval: 200ms}",
        "  sip:",
        "    prober: sip",
        "    timeout: 4s",
        "    sip: {transport: udp, port: 5060}",
        "  h323:",
        "    prober: h323",
        "    timeout: 3s",
        "    required: false    # many commune rooms are SIP-only",
        "  stamp:",
        "    prober: stamp",
        "    timeout: 5s",
        "    required: false    # quality figures; a lost train degrades, it does not mean down",
        "    stamp: {port: 862, count: 50, interval: 20ms}",
        "  media:",
        "    prober: stats",
        "    timeout: 4s",
        "    required: false",
        "    stats: {preset: cisco_xapi, url: 'http://{address}:8080/getxml?location=/Status'}",
        "",
        "# When the network must work. From `start - prepare` to `end` a session is active:",
        "# a point it needs that is down pages (severity critical) instead of opening a ticket.",
        "# Times are local to `timezone` (default Asia/Ho_Chi_Minh) unless they carry an offset.",
        "sessions:",
        "  # The seed's conference: all 103 Thái Bình points were connected and checked on the",
        "  # afternoon of 26 March; the national session opened the next morning.",
        "  - name: nq-dai-hoi-xiii-2021-03-27",
        "    title: Hội nghị toàn quốc nghiên cứu, học tập, quán triệt Nghị quyết Đại hội XIII",
        "    start: 2021-03-27 07:30",
        "    end: 2021-03-27 11:30",
        "    prepare: 2h",
        "  # An upcoming district briefing: only Hưng Hà and Vũ Thư (and the points above them).",
        "  # `make demo` moves it to start 30 minutes after the demo starts, so it shows as",
        "  # active with a countdown.",
        "  - name: giao-ban-huyen-2027-01-05",
        "    title: Giao ban trực tuyến cấp huyện",
        "    start: 2027-01-05 08:00",
        "    end: 2027-01-05 10:00",
        "    endpoints:",
        "      - subtree: tb-hung-ha",
        "      - subtree: tb-vu-thu",
        "",
        "endpoints:",
    ]

    def endpoint(id_, name, tier, parent, address, delegates, lat, lon, extra=""):
        lines.append(f"  - id: {id_}")
        lines.append(f"    name: {name}")
        lines.append(f"    tier: {tier}")
        if parent:
            lines.append(f"    parent: {parent}")
        lines.append(f"    address: {address}")
        if delegates is not None:
            lines.append(f"    delegates: {delegates}")
        lines.append(f"    latitude: {lat:.4f}")
        lines.append(f"    longitude: {lon:.4f}")
        if extra:
            lines.append(extra)

    endpoint(
        "dien-hong",
        "Phòng họp Diên Hồng, Nhà Quốc hội (Hà Nội)",
        "central",
        None,
        "127.10.0.1",
        None,
        21.0375,
        105.8368,
        "    labels: {site: nha-quoc-hoi}",
    )
    lines.append("")
    endpoint(
        "tb-tinh-uy",
        "Hội trường Tỉnh ủy Thái Bình",
        "province",
        "dien-hong",
        "127.10.1.1",
        250,
        20.4500,
        106.3400,
    )
    endpoint(
        "tb-ubnd",
        "Trung tâm Hội nghị tỉnh Thái Bình",
        "province",
        "dien-hong",
        "127.10.1.2",
        150,
        20.4480,
        106.3380,
    )
    lines.append("")
    district_delegates = 110
    for index, (dslug, dname, lat, lon, _) in enumerate(DISTRICTS, start=1):
        endpoint(
            f"tb-{dslug}",
            f"Điểm cầu {dname}",
            "district",
            "tb-tinh-uy",
            f"127.10.2.{index}",
            district_delegates,
            lat,
            lon,
        )
    for index, (eslug, ename) in enumerate(EQUIVALENTS, start=len(DISTRICTS) + 1):
        endpoint(
            f"tb-{eslug}",
            f"Điểm cầu {ename}",
            "district",
            "tb-ubnd",
            f"127.10.2.{index}",
            district_delegates,
            20.4470 + index / 1000,
            106.3390,
        )
    used = 250 + 150 + 12 * district_delegates
    communes = [(d, c) for d in DISTRICTS for c in d[4]]
    assert len(communes) == 89, len(communes)
    remaining = TOTAL_DELEGATES - used
    base, extra = divmod(remaining, len(communes))
    for number, ((dslug, _, lat, lon, names), commune) in enumerate(communes):
        district_index = DISTRICTS.index(next(d for d in DISTRICTS if d[0] == dslug))
        position = names.index(commune)
        if position == 0:
            lines.append("")
        delegates = base + (1 if number < extra else 0)
        endpoint(
            f"tb-{dslug}-{slug(commune)}",
            f"Điểm cầu {commune}",
            "commune",
            f"tb-{dslug}",
            f"127.10.{10 + district_index}.{position + 1}",
            delegates,
            lat + 0.012 * ((position % 4) - 1.5),
            lon + 0.012 * ((position // 4) - 1),
        )
    out = Path(__file__).resolve().parent.parent / "examples" / "thai-binh.yml"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
