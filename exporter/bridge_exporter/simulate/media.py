"""Media statistics a simulated endpoint reports about its own call, and the documents
that carry them: a Cisco RoomOS/TelePresence xAPI status document and a Poly/Polycom
REST pair (call status and media streams). Pure functions, no network code.

The documents follow the public structure of the real APIs as far as the `stats`
prober's presets read it; everything else in them is plausible filler. Figures are
rounded the way the devices report them, and the renderers are exact for samples that
`sample_for` produces: jitter in whole milliseconds, bit rates in whole kbit/s, packet
loss in steps of 1/10,000 (each document counts 10,000 incoming packets per interval).

Cisco (`GET /getxml?location=/Status`), in call:

    <Status>
      <SystemUnit><State><NumberOfActiveCalls>1</NumberOfActiveCalls>...</SystemUnit>
      <Call item="1"><Status>Connected</Status>...</Call>
      <MediaChannels>
        <Call item="1">
          <Channel item="1">
            <Direction>Incoming</Direction><Type>Video</Type>
            <Video><ChannelRole>Main</ChannelRole><FrameRate>30</FrameRate>
                   <ResolutionX>1920</ResolutionX><ResolutionY>1080</ResolutionY></Video>
            <Netstat><Bytes/><ChannelRate/> (bit/s) <Jitter/> (ms) <LastIntervalLost/>
                     <LastIntervalReceived/> <Loss/> <MaxJitter/> <Packets/></Netstat>
          </Channel> ... incoming audio, outgoing audio and video ...

Idle, there is no `Status/Call` and `MediaChannels` is empty.

Poly: `GET /api/rest/conferences` lists conferences (empty when idle), each with its
`connections` and their `state` ("CONNECTED"); `GET /api/rest/mediastats` lists media
streams (empty when idle) with `mediaType` (AUDIO, VIDEO), `mediaDirection` (RX, TX),
`actualBitRate` (kbit/s), `jitter` (ms), `packetLoss` and `packetsReceived` (packets in
the last interval), `percentPacketLoss`, and for video `videoResolution` ("1920x1080")
and `videoFrameRate`.
"""

from __future__ import annotations

import random
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from .faults import Fault

CISCO_STATUS_PATH = "/getxml"
CISCO_STATUS_LOCATION = "/Status"  # served for the query location=/Status
CISCO_CONTENT_TYPE = "text/xml"
POLY_MEDIASTATS_PATH = "/api/rest/mediastats"
POLY_CONFERENCES_PATH = "/api/rest/conferences"
POLY_CONTENT_TYPE = "application/json"

# Incoming packets per statistics interval, split between the audio and video channel.
AUDIO_PACKETS_PER_INTERVAL = 1000
VIDEO_PACKETS_PER_INTERVAL = 9000
PACKETS_PER_INTERVAL = AUDIO_PACKETS_PER_INTERVAL + VIDEO_PACKETS_PER_INTERVAL
AUDIO_RATE_BPS = 64_000
CALL_DURATION_SECONDS = 600  # the simulated call's age, for cumulative counters
INTERVALS_SO_FAR = 60


@dataclass
class MediaSample:
    in_call: bool
    packet_loss_ratio: float = 0.0
    jitter_seconds: float = 0.0
    bitrate_bits_per_second: float = 0.0
    video_width: int = 0
    video_height: int = 0
    frame_rate: float = 0.0


@dataclass(frozen=True)
class _Channel:
    """One incoming channel's figures, as whole numbers the devices report."""

    packets: int  # expected in the last interval
    lost: int
    jitter_ms: int
    rate_bps: int

    @property
    def received(self) -> int:
        return self.packets - self.lost


def _incoming(sample: MediaSample) -> tuple[_Channel, _Channel]:
    """The incoming audio and video channels whose aggregate is exactly `sample`."""
    lost_total = round(sample.packet_loss_ratio * PACKETS_PER_INTERVAL)
    lost_audio = min(lost_total, round(sample.packet_loss_ratio * AUDIO_PACKETS_PER_INTERVAL))
    jitter_ms = round(sample.jitter_seconds * 1000)
    bitrate = round(sample.bitrate_bits_per_second)
    audio_rate = min(AUDIO_RATE_BPS, bitrate)
    audio = _Channel(AUDIO_PACKETS_PER_INTERVAL, lost_audio, max(0, jitter_ms - 1), audio_rate)
    video = _Channel(
        VIDEO_PACKETS_PER_INTERVAL, lost_total - lost_audio, jitter_ms, bitrate - audio_rate
    )
    return audio, video


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _add(
    parent: ET.Element, tag: str, text: str | float | None = None, **attrib: str
) -> ET.Element:
    element = ET.SubElement(parent, tag, attrib)
    if text is not None:
        element.text = text if isinstance(text, str) else _number(text)
    return element


def cisco_status_xml(sample: MediaSample) -> str:
    """The xAPI status document (`/getxml?location=/Status`) of an endpoint in `sample`'s
    state: jitter in milliseconds, loss as packet counts, rates in bit/s."""
    status = ET.Element("Status", product="Cisco Codec", version="ce9.15.0", apiVersion="4")
    unit = _add(status, "SystemUnit")
    _add(unit, "ProductId", "Cisco Webex Room Kit (simulated)")
    _add(unit, "ProductPlatform", "Room Kit")
    _add(_add(unit, "Software"), "Version", "ce9.15.0")
    state = _add(unit, "State")
    _add(state, "NumberOfActiveCalls", 1 if sample.in_call else 0)
    _add(state, "NumberOfInProgressCalls", 0)
    _add(unit, "Uptime", 86400)

    if sample.in_call:
        rate_kbps = round(sample.bitrate_bits_per_second / 1000)
        call = _add(status, "Call", item="1", maxOccurrence="n")
        for tag, text in (
            ("AnswerState", "Answered"),
            ("CallType", "Video"),
            ("Direction", "Outgoing"),
            ("DisplayName", "Central hall"),
            ("Duration", str(CALL_DURATION_SECONDS)),
            ("Protocol", "Sip"),
            ("ReceiveCallRate", str(rate_kbps)),
            ("Status", "Connected"),
            ("TransmitCallRate", str(rate_kbps)),
        ):
            _add(call, tag, text)
    channels = _add(status, "MediaChannels")
    if sample.in_call:
        media_call = _add(channels, "Call", item="1", maxOccurrence="n")
        audio, video = _incoming(sample)
        clean_audio = _Channel(audio.packets, 0, 0, audio.rate_bps)
        clean_video = _Channel(video.packets, 0, 0, video.rate_bps)
        for item, (direction, kind, figures) in enumerate(
            (
                ("Incoming", "Audio", audio),
                ("Incoming", "Video", video),
                ("Outgoing", "Audio", clean_audio),
                ("Outgoing", "Video", clean_video),
            ),
            start=1,
        ):
            _cisco_channel(media_call, item, direction, kind, figures, sample)
    ET.indent(status)
    return '<?xml version="1.0"?>\n' + ET.tostring(status, encoding="unicode") + "\n"


def _cisco_channel(
    call: ET.Element, item: int, direction: str, kind: str, figures: _Channel, sample: MediaSample
) -> None:
    channel = _add(call, "Channel", item=str(item), maxOccurrence="n")
    _add(channel, "Direction", direction)
    _add(channel, "Type", kind)
    if kind == "Audio":
        audio = _add(channel, "Audio")
        _add(audio, "Channels", 1)
        _add(audio, "Mute", "False")
        _add(audio, "Protocol", "AACLD")
    else:
        video = _add(channel, "Video")
        _add(video, "ChannelRole", "Main")
        _add(video, "FrameRate", sample.frame_rate)
        _add(video, "Protocol", "H264")
        _add(video, "ResolutionX", sample.video_width)
        _add(video, "ResolutionY", sample.video_height)
    _add(channel, "Encryption", "On")
    netstat = _add(channel, "Netstat")
    _add(netstat, "Bytes", figures.rate_bps // 8 * CALL_DURATION_SECONDS)
    _add(netstat, "ChannelRate", figures.rate_bps)
    _add(netstat, "Jitter", figures.jitter_ms)
    _add(netstat, "LastIntervalLost", figures.lost)
    _add(netstat, "LastIntervalReceived", figures.received)
    _add(netstat, "Loss", figures.lost * INTERVALS_SO_FAR)
    _add(netstat, "MaxJitter", figures.jitter_ms * 2)
    _add(netstat, "Packets", figures.received * INTERVALS_SO_FAR)


def poly_conferences_json(sample: MediaSample) -> list[dict[str, Any]]:
    """The call-status document (`/api/rest/conferences`): empty when idle."""
    if not sample.in_call:
        return []
    rate_kbps = round(sample.bitrate_bits_per_second / 1000)
    connection = {
        "id": 0,
        "state": "CONNECTED",
        "callType": "VIDEO",
        "callRate": rate_kbps,
        "direction": "OUTGOING",
        "remoteName": "Central hall",
    }
    return [{"id": 0, "isActive": True, "isEncrypted": True, "connections": [connection]}]


def poly_mediastats_json(sample: MediaSample) -> list[dict[str, Any]]:
    """The media streams document (`/api/rest/mediastats`): empty when idle."""
    if not sample.in_call:
        return []
    audio, video = _incoming(sample)
    streams = []
    for direction, kind, figures in (
        ("RX", "AUDIO", audio),
        ("RX", "VIDEO", video),
        ("TX", "AUDIO", _Channel(audio.packets, 0, 0, audio.rate_bps)),
        ("TX", "VIDEO", _Channel(video.packets, 0, 0, video.rate_bps)),
    ):
        stream: dict[str, Any] = {
            "id": len(streams),
            "conferenceId": 0,
            "connectionId": 0,
            "mediaType": kind,
            "mediaDirection": direction,
            "mediaAlgorithm": "G.722.1C" if kind == "AUDIO" else "H.264",
            "rate": figures.rate_bps // 1000,
            "actualBitRate": figures.rate_bps // 1000,
            "jitter": figures.jitter_ms,
            "packetLoss": figures.lost,
            "packetsReceived": figures.received,
            "percentPacketLoss": round(100 * figures.lost / figures.packets, 2),
        }
        if kind == "VIDEO":
            stream["videoResolution"] = f"{sample.video_width}x{sample.video_height}"
            stream["videoFrameRate"] = sample.frame_rate
        streams.append(stream)
    return streams


def poly_media_json(sample: MediaSample) -> dict[str, Any]:
    """Both Poly documents by path: {POLY_MEDIASTATS_PATH: [...], POLY_CONFERENCES_PATH: [...]},
    each served as JSON (POLY_CONTENT_TYPE)."""
    return {
        POLY_MEDIASTATS_PATH: poly_mediastats_json(sample),
        POLY_CONFERENCES_PATH: poly_conferences_json(sample),
    }


# (loss or jitter at or above which the codec steps down) -> picture and rate it sends.
_STEPS = (
    (0.10, 0.100, 640, 360, 15.0, 512),
    (0.05, 0.050, 1280, 720, 25.0, 1152),
    (0.01, 0.030, 1920, 1080, 30.0, 1536),
)
_HEALTHY_STEP = (1920, 1080, 30.0, 2048)


def sample_for(fault: Fault, rng: random.Random, now: float | None = None) -> MediaSample:
    """What an endpoint under `fault` reports about its call. `now` (seconds since the
    fault was set) makes a flapping fault count; without it only `down` ends the call.

    Healthy: in call, no or negligible loss, 1-4 ms jitter, 1080p30 at about 2 Mbit/s.
    The fault's loss and jitter show in the figures, and like a real codec the endpoint
    steps its picture and rate down as they grow (at the design's warning and critical
    thresholds, and again at 10 % / 100 ms)."""
    down = fault.is_down(now) if now is not None else fault.down
    if down:
        return MediaSample(in_call=False)
    if fault.loss_ratio > 0:
        loss = fault.loss_ratio * rng.uniform(0.9, 1.1)
    else:
        loss = 0.0 if rng.random() < 0.8 else rng.randint(1, 3) / PACKETS_PER_INTERVAL
    loss = min(1.0, round(loss * PACKETS_PER_INTERVAL) / PACKETS_PER_INTERVAL)
    jitter_ms = rng.randint(1, 4) + round(fault.jitter_seconds * 1000 * rng.uniform(0.9, 1.1))
    jitter = jitter_ms / 1000

    width, height, frame_rate, rate_kbps = _HEALTHY_STEP
    for min_loss, min_jitter, step_width, step_height, step_fps, step_kbps in _STEPS:
        if loss >= min_loss or jitter >= min_jitter:
            width, height, frame_rate, rate_kbps = step_width, step_height, step_fps, step_kbps
            break
    rate_kbps = round(rate_kbps * rng.uniform(0.97, 1.0))
    return MediaSample(
        in_call=True,
        packet_loss_ratio=loss,
        jitter_seconds=jitter,
        bitrate_bits_per_second=float(rate_kbps * 1000),
        video_width=width,
        video_height=height,
        frame_rate=frame_rate,
    )
