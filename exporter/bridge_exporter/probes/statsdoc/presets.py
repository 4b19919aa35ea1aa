"""The metric names a `stats` mapping may fill, and the ready-made vendor presets.

The simulator (simulate/media.py, simulate/servers.py) serves exactly the documents these
presets read.
"""

from __future__ import annotations

from dataclasses import dataclass

IN_CALL = "media_in_call"

METRICS = (
    "media_packet_loss_ratio",
    "media_jitter_seconds",
    "media_bitrate_bits_per_second",
    "media_video_width_pixels",
    "media_video_height_pixels",
    "media_frame_rate_fps",
    IN_CALL,
)

_CISCO_IN = "Status/MediaChannels/Call/Channel[Direction='Incoming']"
_CISCO_VIDEO = f"{_CISCO_IN}[Type='Video']/Video[ChannelRole='Main']"
_POLY_RX = "[mediaDirection='RX']"
_POLY_VIDEO = f"{_POLY_RX}[mediaType='VIDEO']"


@dataclass(frozen=True)
class Preset:
    url: str
    documents: dict[str, str]
    mapping: dict[str, str]


PRESETS: dict[str, Preset] = {
    "cisco_xapi": Preset(
        url="http://{address}/getxml?location=/Status",
        documents={},
        mapping={
            IN_CALL: "exists(Status/Call)",
            "media_packet_loss_ratio": (
                f"loss({_CISCO_IN}/Netstat/LastIntervalLost,"
                f" {_CISCO_IN}/Netstat/LastIntervalReceived)"
            ),
            "media_jitter_seconds": f"max({_CISCO_IN}/Netstat/Jitter)|ms",
            "media_bitrate_bits_per_second": f"sum({_CISCO_IN}/Netstat/ChannelRate)",
            "media_video_width_pixels": f"max({_CISCO_VIDEO}/ResolutionX)",
            "media_video_height_pixels": f"max({_CISCO_VIDEO}/ResolutionY)",
            "media_frame_rate_fps": f"max({_CISCO_VIDEO}/FrameRate)",
        },
    ),
    "poly_rest": Preset(
        url="http://{address}/api/rest/mediastats",
        documents={"conferences": "http://{address}/api/rest/conferences"},
        mapping={
            IN_CALL: "conferences:exists([*].connections[state='CONNECTED'])",
            "media_packet_loss_ratio": f"loss({_POLY_RX}.packetLoss, {_POLY_RX}.packetsReceived)",
            "media_jitter_seconds": f"max({_POLY_RX}.jitter)|ms",
            "media_bitrate_bits_per_second": f"sum({_POLY_RX}.actualBitRate)|kbps",
            "media_video_width_pixels": f"max({_POLY_VIDEO}.videoResolution)|width",
            "media_video_height_pixels": f"max({_POLY_VIDEO}.videoResolution)|height",
            "media_frame_rate_fps": f"max({_POLY_VIDEO}.videoFrameRate)",
        },
    ),
}
