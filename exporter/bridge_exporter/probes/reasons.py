"""Why a probe failed: every failure reason of every prober, each named once here.

A failed probe's reason is the `reason` label of `bridge_probe_failure_info` and the word
`/probe` shows. The same failure gets the same reason from every prober, so that one
alert rule catches it whichever prober saw it. The README's "Failure reasons" table lists
this table (a test keeps the two equal); add a reason here, never as a bare string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ALL = "all"
CONNECTING = "tcp, h323, http, stats, sip"  # the probers that open a TCP (or TLS) connection


@dataclass(frozen=True)
class Reason:
    name: str  # as exported; a family is written with its varying part: "status_<code>"
    probers: str  # which probers report it
    meaning: str


TABLE: dict[str, Reason] = {}


def _reason(name: str, probers: str, meaning: str) -> str:
    TABLE[name] = Reason(name, probers, meaning)
    return name


# --- no answer, or the network said no -----------------------------------------------------
TIMEOUT = _reason(
    "timeout",
    ALL,
    "no (complete) answer before the probe's deadline, the module's `timeout` (also a "
    "prober cancelled for overrunning its deadline: an exporter bug, logged and counted in "
    "`bridge_exporter_prober_errors_total`)",
)
REFUSED = _reason(
    "refused",
    f"{CONNECTING}, stamp",
    "the host answered that nothing listens on the port (TCP reset to the connection "
    "attempt, ICMP port unreachable)",
)
UNREACHABLE = _reason(
    "unreachable",
    ALL,
    "no route to the host or its network (ICMP host or network unreachable, network "
    "down, no usable local address)",
)
RESET = _reason(
    "reset",
    CONNECTING,
    "the connection was reset or aborted once it was up",
)
CONNECTION_CLOSED = _reason(
    "connection_closed",
    "http, stats, sip",
    "the peer closed the connection before answering completely",
)
RESOLVE_FAILED = _reason(
    "resolve_failed",
    ALL,
    "the address is not a usable IP address and the name does not resolve (or has no "
    "address of the family asked for)",
)
TLS_ERROR = _reason(
    "tls_error",
    CONNECTING,
    "the TLS handshake failed: certificate not trusted, expired or for another name, or "
    "the peer broke off",
)
NO_REPLY = _reason(
    "no_reply",
    "icmp, stamp",
    "not one packet of the train was answered (loss 1.0)",
)
NETWORK_ERROR = _reason(
    "network_error",
    ALL,
    "another socket error; the debug output (`/probe?debug=true`) names it",
)
# --- this host's trouble, not the network's --------------------------------------------------
LOCAL_RESOURCE_EXHAUSTED = _reason(
    "local_resource_exhausted",
    ALL,
    "the exporter's host ran out of file descriptors, local ports, socket buffers or memory "
    "(EMFILE, ENFILE, EAGAIN, ENOBUFS, ENOMEM), or every worker process that reads device "
    "documents stayed busy until the deadline: says nothing about the endpoint",
)
BLOCKED_LOCALLY = _reason(
    "blocked_locally",
    ALL,
    "the exporter's host would not send the packet (EPERM, EACCES: a local firewall rule)",
)
ICMP_NOT_PERMITTED = _reason(
    "icmp_not_permitted",
    "icmp",
    "the exporter may open neither raw nor ping sockets (allow ping sockets with "
    "net.ipv4.ping_group_range, or grant CAP_NET_RAW)",
)
IPV4_UNAVAILABLE = _reason(
    "ipv4_unavailable", "icmp", "this host could not open an IPv4 ICMP socket"
)
IPV6_UNAVAILABLE = _reason(
    "ipv6_unavailable", "icmp", "this host could not open an IPv6 ICMP socket (IPv6 disabled?)"
)
BAD_SETTINGS = _reason(
    "bad_settings",
    f"{CONNECTING}, stamp",
    "the module's settings cannot be used at probe time (e.g. a CA or password file that "
    "cannot be read); the debug output says which",
)
# --- the peer answered, but not as hoped -----------------------------------------------------
STATUS_FAMILY = _reason(
    "status_<code>",
    "http, stats, sip",
    "the answer's status code is not an accepted one (`status_503`, `status_404`, ...)",
)
TIMEOUT_AFTER_PROVISIONAL = _reason(
    "timeout_after_provisional",
    "sip",
    "only provisional (1xx) responses before the deadline; the status code shows the last",
)
INVALID_RESPONSE = _reason(
    "invalid_response",
    "sip, http, stats",
    "the peer answered with bytes that are not a valid response of the protocol "
    "(undecodable text, a malformed start line or header)",
)
BODY_MISMATCH = _reason("body_mismatch", "http", "the body does not match `body_regex`")
BODY_REGEX_TIMEOUT = _reason(
    "body_regex_timeout",
    "http",
    "matching `body_regex` over the body took too long or too much memory and was stopped "
    "(the pattern backtracks catastrophically on it)",
)
PARSE_ERROR = _reason(
    "parse_error",
    "stats",
    "a document is not valid JSON or XML, its format is unclear, or it is not the format the "
    "mapping is written for",
)
UNSAFE_XML = _reason(
    "unsafe_xml",
    "stats",
    "an XML document declares a DOCTYPE or ENTITY (refused: entity expansion attacks)",
)
BODY_TOO_LARGE = _reason("body_too_large", "stats", "a document exceeds the size limit")
AUTH_FILE_UNREADABLE = _reason(
    "auth_file_unreadable", "stats", "the `password_file` cannot be read"
)
MISSING_MEDIA_IN_CALL = _reason(
    "missing_media_in_call",
    "stats",
    "the mapped in-call state is not in the documents: figures cannot be judged",
)
# --- the exporter's own bug ------------------------------------------------------------------
PROBER_ERROR = _reason(
    "prober_error",
    ALL,
    "the prober raised an exception: a bug in the exporter, logged and counted in "
    "`bridge_exporter_prober_errors_total`",
)

_STATUS = re.compile(r"status_[1-9][0-9]{2}")


def status(code: int) -> str:
    """The reason for an answer whose status `code` is not accepted: `status_<code>`."""
    return f"status_{code}"


def is_known(reason: str) -> bool:
    """True if `reason` is in the table (or a member of a family such as status_503)."""
    return reason in TABLE or bool(_STATUS.fullmatch(reason))
