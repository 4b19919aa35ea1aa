"""H.323 reachability: a TCP connect to the H.225 call-signalling port (1720 by default).

Connecting proves the gatekeeper or MCU accepts calls at the transport level; it sends
no H.225 message, so it places no call and leaves no trace in call logs.
"""

from __future__ import annotations

from dataclasses import dataclass

from .tcp import TcpProber, TcpSettings

H225_CALL_SIGNALLING_PORT = 1720


@dataclass
class H323Settings(TcpSettings):
    port: int = H225_CALL_SIGNALLING_PORT


class H323Prober(TcpProber):
    kind = "h323"
    Settings = H323Settings
