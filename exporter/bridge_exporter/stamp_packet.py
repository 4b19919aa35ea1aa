"""STAMP test packets (RFC 8762, unauthenticated mode) and NTP timestamps.

Session-Sender packet (RFC 8762 section 4.2.1), 44 octets:

    offset  size  field
         0     4  Sequence Number
         4     8  Timestamp (NTP 64-bit format)
        12     2  Error Estimate
        14    30  MBZ

Session-Reflector packet (RFC 8762 section 4.3.1), 44 octets:

    offset  size  field
         0     4  Sequence Number
         4     8  Timestamp (when the reflector transmits)
        12     2  Error Estimate
        14     2  MBZ
        16     8  Receive Timestamp
        24     4  Session-Sender Sequence Number
        28     8  Session-Sender Timestamp
        36     2  Session-Sender Error Estimate
        38     2  MBZ
        40     1  Session-Sender TTL
        41     3  MBZ

Both have the same size so that the test traffic is symmetric. Octets past the 44-octet
base are padding that makes the packets as large as a voice frame; the sender fills them
with zeros and the reflector returns them unchanged, so the reply is as large as the
request.
"""

from __future__ import annotations

import math
import struct
import time
from dataclasses import dataclass

BASE_SIZE = 44
# The largest UDP payload over IPv4 (65535 - 20 octets IP header - 8 octets UDP header).
MAX_SIZE = 65507

_SENDER = struct.Struct("!IQH30x")
_REFLECTOR = struct.Struct("!IQH2xQIQH2xB3x")
assert _SENDER.size == _REFLECTOR.size == BASE_SIZE

# Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01).
NTP_UNIX_OFFSET = 2_208_988_800
_FRACTION = 1 << 32


class PacketError(ValueError):
    """A datagram that is not a STAMP packet (too short)."""


def ntp_from_unix(seconds: float) -> int:
    """Unix time (seconds) as a 64-bit NTP timestamp: 32 bits seconds, 32 bits fraction."""
    value = round((seconds + NTP_UNIX_OFFSET) * _FRACTION)
    return value & 0xFFFF_FFFF_FFFF_FFFF


def unix_from_ntp(value: int) -> float:
    """A 64-bit NTP timestamp as Unix time (seconds)."""
    return value / _FRACTION - NTP_UNIX_OFFSET


def ntp_now() -> int:
    return ntp_from_unix(time.time())


# Error Estimate (RFC 4656 section 4.1.2, reused by RFC 8762 section 4.2.1):
#   bit 15 S (clock synchronized to UTC), bit 14 Z (0 = NTP format, 1 = PTPv2 format),
#   bits 13..8 Scale, bits 7..0 Multiplier; error = Multiplier * 2**(Scale - 32) seconds.
_S_BIT = 0x8000


def encode_error_estimate(seconds: float, synchronized: bool = False) -> int:
    """The Error Estimate field for a clock error of about `seconds` (rounded up)."""
    units = max(1, math.ceil(seconds * _FRACTION))  # in 2**-32 s; the multiplier is never 0
    scale = 0
    while units > 0xFF and scale < 0x3F:
        units = math.ceil(units / 2)
        scale += 1
    multiplier = min(units, 0xFF)
    return (_S_BIT if synchronized else 0) | (scale << 8) | multiplier


def error_estimate_seconds(value: int) -> float:
    scale = (value >> 8) & 0x3F
    multiplier = value & 0xFF
    return multiplier * 2.0 ** (scale - 32)


def error_estimate_synchronized(value: int) -> bool:
    return bool(value & _S_BIT)


# Neither this prober nor the reflector disciplines its clock; a millisecond is an honest
# order of magnitude for an NTP-synced host and S=0 says it is not guaranteed.
DEFAULT_ERROR_ESTIMATE = encode_error_estimate(0.001)


@dataclass(frozen=True)
class SenderPacket:
    sequence: int
    timestamp: int  # NTP 64-bit format
    error_estimate: int = DEFAULT_ERROR_ESTIMATE
    padding: bytes = b""  # octets after the 44-octet base

    def encode(self, size: int = BASE_SIZE) -> bytes:
        """The packet padded with zeros to `size` octets (at least the 44-octet base)."""
        base = _SENDER.pack(self.sequence, self.timestamp, self.error_estimate)
        return _pad(base + self.padding, size)

    @classmethod
    def decode(cls, data: bytes) -> SenderPacket:
        if len(data) < BASE_SIZE:
            raise PacketError(f"{len(data)} octets, a STAMP packet has at least {BASE_SIZE}")
        sequence, timestamp, error_estimate = _SENDER.unpack_from(data)
        return cls(sequence, timestamp, error_estimate, bytes(data[BASE_SIZE:]))


@dataclass(frozen=True)
class ReflectorPacket:
    sequence: int
    timestamp: int  # NTP 64-bit format, when the reflector sent this packet
    error_estimate: int
    receive_timestamp: int  # NTP 64-bit format, when the reflector got the sender's packet
    sender_sequence: int
    sender_timestamp: int
    sender_error_estimate: int
    sender_ttl: int  # TTL / Hop Limit of the sender's packet as received; 0 if unknown
    padding: bytes = b""

    def encode(self, size: int = BASE_SIZE) -> bytes:
        base = _REFLECTOR.pack(
            self.sequence,
            self.timestamp,
            self.error_estimate,
            self.receive_timestamp,
            self.sender_sequence,
            self.sender_timestamp,
            self.sender_error_estimate,
            self.sender_ttl,
        )
        return _pad(base + self.padding, size)

    @classmethod
    def decode(cls, data: bytes) -> ReflectorPacket:
        if len(data) < BASE_SIZE:
            raise PacketError(f"{len(data)} octets, a STAMP packet has at least {BASE_SIZE}")
        return cls(*_REFLECTOR.unpack_from(data), padding=bytes(data[BASE_SIZE:]))

    @property
    def residence_seconds(self) -> float:
        """How long the reflector held the packet (its transmit minus receive time)."""
        # Modular difference, so a pair straddling the NTP era rollover (2036) stays right.
        difference = (self.timestamp - self.receive_timestamp) & 0xFFFF_FFFF_FFFF_FFFF
        if difference >= 1 << 63:
            difference -= 1 << 64
        return difference / _FRACTION


def _pad(data: bytes, size: int) -> bytes:
    if len(data) >= size:
        return data
    return data + bytes(size - len(data))
