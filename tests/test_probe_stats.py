"""The `stats` prober against a local aiohttp server that serves the simulator's documents
(bridge_exporter.simulate.media): presets, custom mappings, auth, and failures."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import random
import re
import secrets
import time

import pytest
from aiohttp import web
from bridge_exporter.probes.base import Target
from bridge_exporter.probes.stats import METRICS, PRESETS, StatsProber, StatsSettings
from bridge_exporter.simulate import media
from bridge_exporter.simulate.faults import Fault
from bridge_exporter.simulate.media import MediaSample
from conftest import free_port

LOG = logging.getLogger("test.stats")
TARGET = Target("commune-07", "127.0.0.1")
USER = "admin"
PASSWORD = "s3cret pass"
REALM = "bridge-test"

# A call whose figures every document can carry exactly (whole ms, whole kbit/s, loss in
# steps of 1/10,000), and whose outgoing channels differ (they report no loss or jitter).
IN_CALL = MediaSample(
    in_call=True,
    packet_loss_ratio=0.0125,
    jitter_seconds=0.018,
    bitrate_bits_per_second=1_984_000.0,
    video_width=1280,
    video_height=720,
    frame_rate=25.0,
)

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;">]>
<Status><Call item="1">&lol2;</Call></Status>
"""

CUSTOM_DOCUMENT = {
    "call": {"active": True},
    "streams": [
        {"dir": "in", "jitterUs": 12000, "lossPercent": "1.5", "kbps": 1000},
        {"dir": "in", "jitterUs": 8000, "lossPercent": "0.5", "kbps": 500},
        {"dir": "out", "jitterUs": 90000, "lossPercent": "9", "kbps": 1500},
    ],
    "video": {"resolution": "1280x720"},
}


class Device:
    """What the test server serves and what it saw."""

    def __init__(self) -> None:
        self.sample = IN_CALL
        self.release = asyncio.Event()
        self.nonces: set[str] = set()
        self.digest_accepted = 0
        self.port = 0


def _basic_ok(request: web.Request) -> bool:
    expected = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    return request.headers.get("Authorization", "") == f"Basic {expected}"


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def _digest_ok(request: web.Request, device: Device) -> bool:
    """RFC 7616 with MD5 and qop=auth, checked the way a codec's web server does."""
    header = request.headers.get("Authorization", "")
    if not header.startswith("Digest "):
        return False
    params = {
        key: quoted if quoted else bare
        for key, quoted, bare in re.findall(r'(\w+)=(?:"([^"]*)"|([^,\s]*))', header[7:])
    }
    if params.get("username") != USER or params.get("realm") != REALM:
        return False
    if params.get("nonce") not in device.nonces or params.get("qop") != "auth":
        return False
    if params.get("uri") != request.raw_path:
        return False
    ha1 = _md5(f"{USER}:{REALM}:{PASSWORD}")
    ha2 = _md5(f"{request.method}:{params['uri']}")
    expected = _md5(f"{ha1}:{params['nonce']}:{params['nc']}:{params['cnonce']}:auth:{ha2}")
    return params.get("response") == expected


def _digest_challenge(device: Device) -> web.Response:
    nonce = secrets.token_hex(16)
    device.nonces.add(nonce)
    challenge = f'Digest realm="{REALM}", qop="auth", algorithm=MD5, nonce="{nonce}", opaque="x1"'
    return web.Response(status=401, headers={"WWW-Authenticate": challenge})


def _app(device: Device) -> web.Application:
    def cisco() -> web.Response:
        return web.Response(
            text=media.cisco_status_xml(device.sample), content_type=media.CISCO_CONTENT_TYPE
        )

    async def getxml(request: web.Request) -> web.Response:
        if request.query.get("location") != media.CISCO_STATUS_LOCATION:
            return web.Response(status=404)
        return cisco()

    def poly(path: str):
        async def handler(request: web.Request) -> web.Response:
            document = media.poly_media_json(device.sample)[path]
            return web.json_response(document)

        return handler

    async def basic(request: web.Request) -> web.Response:
        if not _basic_ok(request):
            return web.Response(status=401, headers={"WWW-Authenticate": f'Basic realm="{REALM}"'})
        return cisco()

    async def digest(request: web.Request) -> web.Response:
        if not _digest_ok(request, device):
            return _digest_challenge(device)
        device.digest_accepted += 1
        return cisco()

    async def custom(request: web.Request) -> web.Response:
        return web.json_response(CUSTOM_DOCUMENT)

    async def doctype(request: web.Request) -> web.Response:
        return web.Response(body=BILLION_LAUGHS, content_type="text/xml")

    async def latin1(request: web.Request) -> web.Response:
        # A display name in a legacy code page: not UTF-8, as JSON must be.
        body = b'{"call": {"active": true, "peer": "Caf\xe9 \xd0i\xeam Bi\xean"}}'
        return web.Response(body=body, content_type="application/json")

    async def garbage(request: web.Request) -> web.Response:
        return web.Response(body=b"\x16\x03\x01 {not: json", content_type="application/json")

    async def broken_xml(request: web.Request) -> web.Response:
        return web.Response(text="<Status><Call>", content_type="text/xml")

    async def binary_xml(request: web.Request) -> web.Response:
        return web.Response(body=b"\x00\x9a\x17 random bytes", content_type="text/xml")

    async def utf16_xml(request: web.Request) -> web.Response:
        body = BILLION_LAUGHS.decode().replace('"1.0"?>', '"1.0" encoding="UTF-16"?>')
        return web.Response(body=body.encode("utf-16"), content_type="text/xml")

    async def utf16_status(request: web.Request) -> web.Response:
        text = media.cisco_status_xml(device.sample)
        body = text.replace('"1.0"?>', '"1.0" encoding="UTF-16"?>').encode("utf-16")
        return web.Response(body=body, content_type="text/xml")

    async def hang(request: web.Request) -> web.Response:
        await device.release.wait()
        return web.Response(text="too late")

    app = web.Application()
    app.router.add_get(media.CISCO_STATUS_PATH, getxml)
    app.router.add_get(media.POLY_MEDIASTATS_PATH, poly(media.POLY_MEDIASTATS_PATH))
    app.router.add_get(media.POLY_CONFERENCES_PATH, poly(media.POLY_CONFERENCES_PATH))
    app.router.add_get("/basic/getxml", basic)
    app.router.add_get("/digest/getxml", digest)
    app.router.add_get("/custom.json", custom)
    app.router.add_get("/doctype.xml", doctype)
    app.router.add_get("/garbage", garbage)
    app.router.add_get("/latin1.json", latin1)
    app.router.add_get("/broken.xml", broken_xml)
    app.router.add_get("/binary.xml", binary_xml)
    app.router.add_get("/utf16.xml", utf16_xml)
    app.router.add_get("/utf16-status.xml", utf16_status)
    app.router.add_get("/hang", hang)
    return app


@pytest.fixture
async def device():
    state = Device()
    runner = web.AppRunner(_app(state))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    state.port = port
    yield state
    state.release.set()
    await runner.cleanup()


@pytest.fixture
async def prober():
    stats = StatsProber()
    await stats.start()
    yield stats
    await stats.close()


def _expected_values(sample: MediaSample) -> dict[str, float]:
    return {
        "media_in_call": 1.0,
        "media_packet_loss_ratio": sample.packet_loss_ratio,
        "media_jitter_seconds": sample.jitter_seconds,
        "media_bitrate_bits_per_second": sample.bitrate_bits_per_second,
        "media_video_width_pixels": float(sample.video_width),
        "media_video_height_pixels": float(sample.video_height),
        "media_frame_rate_fps": sample.frame_rate,
    }


async def test_cisco_preset_reads_the_exact_figures(device, prober):
    settings = StatsSettings(preset="cisco_xapi", port=device.port)
    result = await prober.probe(TARGET, settings, 2.0, LOG)
    assert result.success, result.debug
    assert result.status_code == 200
    assert result.values == _expected_values(IN_CALL)
    assert result.values["media_packet_loss_ratio"] == 0.0125
    assert result.values["media_jitter_seconds"] == 0.018
    url = f"http://127.0.0.1:{device.port}/getxml?location=/Status"
    assert any(line.startswith(f"GET {url}") for line in result.debug), result.debug


async def test_poly_preset_reads_the_exact_figures_from_both_documents(device, prober):
    settings = StatsSettings(preset="poly_rest", port=device.port)
    result = await prober.probe(TARGET, settings, 2.0, LOG)
    assert result.success, result.debug
    assert result.values == _expected_values(IN_CALL)
    assert any("(document conferences)" in line for line in result.debug)


@pytest.mark.parametrize("preset", sorted(PRESETS))
async def test_presets_read_the_simulators_own_samples(device, prober, preset):
    rng = random.Random(7)
    for fault in (Fault(), Fault(loss_ratio=0.03), Fault(jitter_seconds=0.06)):
        device.sample = media.sample_for(fault, rng)
        result = await prober.probe(TARGET, StatsSettings(preset=preset, port=device.port), 2, LOG)
        assert result.values == _expected_values(device.sample), (fault, result.debug)


@pytest.mark.parametrize("preset", sorted(PRESETS))
async def test_idle_endpoint_reports_no_call_and_no_figures(device, prober, preset):
    device.sample = MediaSample(in_call=False)
    result = await prober.probe(TARGET, StatsSettings(preset=preset, port=device.port), 2.0, LOG)
    assert result.success, result.debug
    assert result.values == {"media_in_call": 0.0}
    assert any("media_jitter_seconds: not reported" in line for line in result.debug)


async def test_custom_json_mapping_with_filters_and_conversions(device, prober):
    settings = StatsSettings(
        url="http://{address}/custom.json",
        port=device.port,
        mapping={
            "media_in_call": "call.active",
            "media_jitter_seconds": "max(streams[dir='in'].jitterUs)|us",
            "media_packet_loss_ratio": "max(streams[dir=in].lossPercent)|percent",
            "media_bitrate_bits_per_second": "sum(streams[dir='in'].kbps)|kbps",
            "media_video_width_pixels": "$.video.resolution|width",
            "media_frame_rate_fps": "avg(streams[*].fps)",
        },
    )
    result = await prober.probe(TARGET, settings, 2.0, LOG)
    assert result.success, result.debug
    assert result.values == {
        "media_in_call": 1.0,
        "media_jitter_seconds": 0.012,
        "media_packet_loss_ratio": 0.015,
        "media_bitrate_bits_per_second": 1_500_000.0,
        "media_video_width_pixels": 1280.0,
    }
    assert any("media_frame_rate_fps: not reported" in line for line in result.debug)


async def test_user_mapping_overrides_and_removes_preset_entries(device, prober):
    settings = StatsSettings(
        preset="cisco_xapi",
        port=device.port,
        mapping={
            "media_frame_rate_fps": "",
            "media_jitter_seconds": "max(//Channel[Direction='Incoming']/Netstat/MaxJitter)|ms",
        },
    )
    result = await prober.probe(TARGET, settings, 2.0, LOG)
    assert result.success, result.debug
    assert "media_frame_rate_fps" not in result.values
    assert result.values["media_jitter_seconds"] == 0.036  # MaxJitter is twice the jitter
    assert result.values["media_bitrate_bits_per_second"] == IN_CALL.bitrate_bits_per_second


async def test_unknown_metric_names_are_bad_settings(device, prober):
    settings = StatsSettings(
        url="http://{address}/custom.json",
        port=device.port,
        mapping={"media_in_call": "call.active", "media_mos": "x", "bridge_up": "y"},
    )
    result = await prober.probe(TARGET, settings, 2.0, LOG)
    assert (result.success, result.reason) == (False, "bad_settings")
    assert "media_mos" in result.debug[-1] and "bridge_up" in result.debug[-1]
    assert all(metric in result.debug[-1] for metric in METRICS)


@pytest.mark.parametrize(
    "expression",
    ["median(call.active)", "loss(call.active)", "call.active|furlongs", "cfg:call.active"],
)
async def test_malformed_expressions_are_bad_settings(device, prober, expression):
    settings = StatsSettings(
        url="http://{address}/custom.json", port=device.port, mapping={"media_in_call": expression}
    )
    result = await prober.probe(TARGET, settings, 2.0, LOG)
    assert (result.success, result.reason) == (False, "bad_settings"), result.debug


async def test_missing_in_call_state_fails_the_probe(device, prober):
    settings = StatsSettings(
        url="http://{address}/custom.json",
        port=device.port,
        mapping={
            "media_in_call": "call.ringing",
            "media_bitrate_bits_per_second": "sum(streams[*].kbps)",
        },
    )
    result = await prober.probe(TARGET, settings, 2.0, LOG)
    assert (result.success, result.reason) == (False, "missing_media_in_call")
    assert result.values == {"media_bitrate_bits_per_second": 3000.0}


async def test_xml_with_a_doctype_is_refused(device, prober):
    settings = StatsSettings(
        url="http://{address}/doctype.xml", port=device.port, preset="cisco_xapi"
    )
    result = await prober.probe(TARGET, settings, 2.0, LOG)
    assert (result.success, result.reason) == (False, "unsafe_xml")
    assert result.values == {}
    assert "<!DOCTYPE>" in result.debug[-1]


async def test_xml_in_utf16_with_a_doctype_is_refused(device, prober):
    settings = StatsSettings(
        url="http://{address}/utf16.xml", port=device.port, preset="cisco_xapi"
    )
    result = await prober.probe(TARGET, settings, 2.0, LOG)
    assert (result.success, result.reason) == (False, "unsafe_xml")
    assert "<!DOCTYPE>" in result.debug[-1]


async def test_xml_in_utf16_without_a_doctype_is_read(device, prober):
    """defusedxml sees declarations in any encoding, so UTF-16 need not be refused."""
    settings = StatsSettings(
        url="http://{address}/utf16-status.xml", port=device.port, preset="cisco_xapi"
    )
    result = await prober.probe(TARGET, settings, 2.0, LOG)
    assert result.success, result.debug
    assert result.values == _expected_values(IN_CALL)


async def test_json_that_is_not_utf8_is_read_with_replacement(device, prober):
    settings = StatsSettings(
        url="http://{address}/latin1.json",
        port=device.port,
        mapping={"media_in_call": "call.active"},
    )
    result = await prober.probe(TARGET, settings, 2.0, LOG)
    assert result.success, result.debug
    assert result.values == {"media_in_call": 1.0}
    assert any("undecodable bytes replaced" in line for line in result.debug)


@pytest.mark.parametrize("path", ["/garbage", "/broken.xml", "/binary.xml"])
async def test_garbage_is_a_parse_error(device, prober, path):
    settings = StatsSettings(url="http://{address}" + path, port=device.port, preset="cisco_xapi")
    result = await prober.probe(TARGET, settings, 2.0, LOG)
    assert (result.success, result.reason, result.status_code) == (False, "parse_error", 200)


async def test_wrong_location_is_a_status_failure(device, prober):
    settings = StatsSettings(
        url="http://{address}/getxml?location=/Configuration", port=device.port, preset="cisco_xapi"
    )
    result = await prober.probe(TARGET, settings, 2.0, LOG)
    assert (result.success, result.reason, result.status_code) == (False, "status_404", 404)


def _password_file(tmp_path, password: str) -> str:
    path = tmp_path / "codec-password"
    path.write_text(password + "\n")
    path.chmod(0o600)  # a password file others may read is refused
    return str(path)


async def test_basic_auth_with_a_password_file(device, prober, tmp_path):
    settings = StatsSettings(
        preset="cisco_xapi",
        url="http://{address}/basic/getxml?location=/Status",
        port=device.port,
        auth="basic",
        username=USER,
        password_file=_password_file(tmp_path, PASSWORD),
    )
    result = await prober.probe(TARGET, settings, 2.0, LOG)
    assert result.success, result.debug
    assert result.values == _expected_values(IN_CALL)

    settings.password_file = _password_file(tmp_path, "wrong")
    result = await prober.probe(TARGET, settings, 2.0, LOG)
    assert (result.success, result.reason, result.status_code) == (False, "status_401", 401)


async def test_digest_auth_with_a_password_file(device, prober, tmp_path):
    settings = StatsSettings(
        preset="cisco_xapi",
        url="http://{address}/digest/getxml?location=/Status",
        port=device.port,
        auth="digest",
        username=USER,
        password_file=_password_file(tmp_path, PASSWORD),
    )
    result = await prober.probe(TARGET, settings, 2.0, LOG)
    assert result.success, result.debug
    assert result.values == _expected_values(IN_CALL)
    assert device.digest_accepted == 1

    settings.password_file = _password_file(tmp_path, "wrong")
    result = await prober.probe(TARGET, settings, 2.0, LOG)
    assert (result.success, result.reason, result.status_code) == (False, "status_401", 401)
    assert device.digest_accepted == 1


async def test_basic_auth_without_credentials_is_refused_by_the_server(device, prober):
    settings = StatsSettings(
        preset="cisco_xapi", url="http://{address}/basic/getxml?location=/Status", port=device.port
    )
    result = await prober.probe(TARGET, settings, 2.0, LOG)
    assert (result.success, result.reason) == (False, "status_401")


async def test_unreadable_password_file_names_the_path(device, prober, tmp_path):
    missing_file = str(tmp_path / "no-such-secret")
    settings = StatsSettings(
        preset="cisco_xapi",
        port=device.port,
        auth="digest",
        username=USER,
        password_file=missing_file,
    )
    result = await prober.probe(TARGET, settings, 2.0, LOG)
    assert (result.success, result.reason) == (False, "auth_file_unreadable")
    assert missing_file in result.debug[-1]
    assert result.status_code is None  # nothing was sent


async def test_hung_server_costs_only_the_timeout(device, prober, worst_loop_stall):
    settings = StatsSettings(url="http://{address}/hang", port=device.port, preset="cisco_xapi")
    started = time.perf_counter()
    result = await prober.probe(TARGET, settings, 1.0, LOG)
    elapsed = time.perf_counter() - started
    assert (result.success, result.reason) == (False, "timeout")
    assert elapsed < 1.3 + worst_loop_stall()
    assert 0.9 < result.duration_seconds < 1.3 + worst_loop_stall()


async def test_nothing_listening_is_refused(prober):
    settings = StatsSettings(preset="poly_rest", port=free_port())
    result = await prober.probe(TARGET, settings, 2.0, LOG)
    assert (result.success, result.reason) == (False, "refused")


async def test_ipv6_address_is_bracketed_in_the_url(prober):
    port = free_port()
    settings = StatsSettings(preset="cisco_xapi", port=port)
    result = await prober.probe(Target("hall", "::1"), settings, 1.0, LOG)
    assert not result.success
    assert f"GET http://[::1]:{port}/getxml?location=/Status" in result.debug


def test_poly_documents_are_json_and_empty_when_idle():
    documents = media.poly_media_json(MediaSample(in_call=False))
    assert json.loads(json.dumps(documents)) == {
        media.POLY_MEDIASTATS_PATH: [],
        media.POLY_CONFERENCES_PATH: [],
    }


def test_samples_follow_the_fault():
    rng = random.Random(3)
    healthy = [media.sample_for(Fault(), rng) for _ in range(50)]
    assert all(s.in_call for s in healthy)
    assert max(s.packet_loss_ratio for s in healthy) <= 0.0003
    assert all(0.001 <= s.jitter_seconds <= 0.004 for s in healthy)
    assert all((s.video_width, s.video_height, s.frame_rate) == (1920, 1080, 30.0) for s in healthy)
    assert all(1_900_000 <= s.bitrate_bits_per_second <= 2_048_000 for s in healthy)

    lossy = media.sample_for(Fault(loss_ratio=0.08), rng)
    assert 0.072 <= lossy.packet_loss_ratio <= 0.088
    assert (lossy.video_width, lossy.video_height) == (1280, 720)
    jittery = media.sample_for(Fault(jitter_seconds=0.040), rng)
    assert 0.036 <= jittery.jitter_seconds <= 0.048
    assert jittery.bitrate_bits_per_second < 1_600_000

    assert media.sample_for(Fault(down=True), rng).in_call is False
    flapping = Fault(flap_period_seconds=10)
    assert media.sample_for(flapping, rng, now=5).in_call is True
    assert media.sample_for(flapping, rng, now=15).in_call is False


VALIDATE_INVENTORY = """\
tiers: [province, commune]
modules:
  media:
    prober: stats
    stats:
      format: {format}
      url: "http://{{address}}/status"
      mapping: {{media_in_call: "{path}"}}
endpoints:
  - {{id: p, name: P, tier: province, address: 127.0.0.1, modules: [media]}}
"""


@pytest.mark.parametrize(
    ("format_name", "path", "problem"),
    [
        ("json", "exists(calls..state)", "'calls..state' is not a JSON path"),
        ("xml", "exists(Status/Call[@)", "'Status/Call[@' is not an XML path"),
    ],
)
def test_validate_reads_mapping_paths_as_the_format_named(format_name, path, problem):
    from bridge_exporter.config import ConfigError, parse_inventory

    text = VALIDATE_INVENTORY.format(format=format_name, path=path)
    with pytest.raises(ConfigError) as caught:
        parse_inventory(text, "bridge.yml")
    (found,) = caught.value.problems
    assert found.line == 5 and problem in found.message, found  # the `stats:` line


async def test_a_document_of_the_other_format_is_the_devices_parse_error(device, prober):
    """With `format: auto` the device picks the format: an XPath mapping over the JSON it
    sent is its answer not fitting (parse_error), not a settings mistake."""
    settings = StatsSettings(
        url="http://{address}/custom.json",
        port=device.port,
        mapping={"media_in_call": "exists(call[Direction='Incoming']/x[@)"},
    )
    result = await prober.probe(TARGET, settings, 2.0, LOG)
    assert result.reason == "parse_error", result.debug
    assert any("the device sent a JSON document" in line for line in result.debug)
