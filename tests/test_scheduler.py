"""The probe engine in-process: start spreading, reloads that leave the cadence alone, and
probers' own results (reason, status, debug lines) surviving the wrapper's backstop."""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import pytest
from bridge_exporter.config import parse_inventory
from bridge_exporter.probes import Prober, ProbeResult
from bridge_exporter.probes.tcp import TcpSettings
from bridge_exporter.scheduler import Probers, Scheduler
from bridge_exporter.state import State
from conftest import eventually
from scheduler_round import one_round, single_module_inventory
from test_probe_sip import start_udp_peer

ENDPOINTS = 20
INTERVAL = 1.0


def _inventory(port: int, extra: str = "", s3_port: int | None = None):
    """Hub and 20 sites probing one TCP port; `s3_port` overrides site 3's port."""
    lines = [
        f"interval: {INTERVAL}s",
        "tiers: [hub, site]",
        "modules:",
        f"  tcp: {{prober: tcp, timeout: 500ms, tcp: {{port: {port}}}}}",
        "endpoints:",
        "  - {id: hub, name: Hub, tier: hub, address: 127.0.0.1, modules: [tcp]}",
    ]
    lines += [
        f"  - {{id: s{i}, name: Site {i}, tier: site, parent: hub, address: 127.0.0.1, "
        f"modules: [tcp]}}"
        for i in range(ENDPOINTS)
    ]
    if s3_port is not None:
        lines[lines.index(next(x for x in lines if "id: s3," in x))] = (
            "  - {id: s3, name: Site 3, tier: site, parent: hub, address: 127.0.0.1, "
            f"modules: [tcp], overrides: {{tcp: {{port: {s3_port}}}}}}}"
        )
    return parse_inventory("\n".join(lines) + "\n" + extra, "sched.yml")


class Recorder(State):
    """A State that remembers when each endpoint's rounds ended."""

    def __init__(self, inventory):
        super().__init__(inventory)
        self.rounds: dict[str, list[float]] = {}

    def finish_round(self, endpoint, duration):
        super().finish_round(endpoint, duration)
        self.rounds.setdefault(endpoint.id, []).append(asyncio.get_running_loop().time())


@pytest.fixture
async def listener():
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def _run(inventory):
    state = Recorder(inventory)
    probers = Probers()
    await probers.start_for(inventory)
    scheduler = Scheduler(inventory, state, probers)
    scheduler.start()
    return state, probers, scheduler


async def test_starts_are_spread_over_the_interval(listener, worst_loop_stall):
    state, probers, scheduler = await _run(_inventory(listener))
    try:
        started = asyncio.get_running_loop().time()
        await eventually(lambda: len(state.rounds) == ENDPOINTS + 1, "every endpoint's first round")
        firsts = sorted(times[0] - started for times in state.rounds.values())
        assert firsts[-1] <= INTERVAL + 0.3 + worst_loop_stall()  # all in the first interval
        # Spread, not a burst: the first rounds cover most of the interval (less what a
        # stalled loop ran late and together).
        assert firsts[-1] - firsts[0] > 0.5 * INTERVAL - worst_loop_stall()
        assert all(state.endpoints[i].up for i in state.endpoints)
    finally:
        await scheduler.stop()
        await probers.close()


async def test_reloads_keep_unchanged_endpoints_on_their_cadence(listener):
    state, probers, scheduler = await _run(_inventory(listener))
    try:
        await asyncio.sleep(0.2)
        window_start = asyncio.get_running_loop().time()
        # A reload every 0.25 s, each adding one endpoint: the 21 old ones are unchanged.
        for number in range(12):
            extra = "".join(
                f"  - {{id: n{i}, name: New {i}, tier: site, parent: hub, "
                f"address: 127.0.0.1, modules: [tcp]}}\n"
                for i in range(number + 1)
            )
            await scheduler.replace_inventory(_inventory(listener, extra))
            await asyncio.sleep(0.25)
        window = asyncio.get_running_loop().time() - window_start
        for endpoint_id in ["hub", *(f"s{i}" for i in range(ENDPOINTS))]:
            in_window = [t for t in state.rounds.get(endpoint_id, []) if t >= window_start]
            # One round per interval (3 s window: 2 to 4), not one per reload (12).
            assert window / INTERVAL - 1.5 <= len(in_window) <= window / INTERVAL + 1.5, (
                endpoint_id,
                len(in_window),
            )
        assert state.endpoints["n0"].up is True  # added endpoints are probed too
    finally:
        await scheduler.stop()
        await probers.close()


async def test_a_changed_endpoint_restarts_with_its_new_settings(listener, worst_loop_stall):
    state, probers, scheduler = await _run(_inventory(listener))
    try:
        await eventually(lambda: state.endpoints["s3"].up is True, "s3 up")
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            refused_port = closed.getsockname()[1]
        inventory = _inventory(listener, s3_port=refused_port)
        reloaded = asyncio.get_running_loop().time()
        await scheduler.replace_inventory(inventory)
        await eventually(lambda: state.endpoints["s3"].up is False, "s3 down on its new port")
        # On its next slot, within an interval, not some rounds later.
        assert asyncio.get_running_loop().time() - reloaded <= INTERVAL + 0.2 + worst_loop_stall()
        assert state.endpoints["s3"].records["tcp"].result.reason == "refused"
        assert state.endpoints["s4"].up is True
    finally:
        await scheduler.stop()
        await probers.close()


# --- the prober's own result survives the scheduler -----------------------------------------


async def _round_against_a_peer_that_only_says_trying(timeout: str):
    """One scheduler round of a SIP probe whose peer answers "100 Trying" and nothing more."""
    transport, _peer, port = await start_udp_peer(lambda p, d, a: p.answer(d, a, 100, "Trying"))
    try:
        return await one_round(
            single_module_inventory(
                "sip", f"{{port: {port}, t1: 50ms, t2: 200ms}}", timeout, "127.0.0.1"
            )
        )
    finally:
        transport.close()


async def test_sip_reason_status_and_debug_survive_the_scheduler(caplog, worst_loop_stall):
    # Only "100 Trying", never a final answer: the prober's own verdict must reach the
    # state, not a bare "timeout" from the wrapper. With debug logging on, the messages
    # themselves are kept too.
    caplog.set_level(logging.DEBUG, logger="bridge_exporter.scheduler")
    done = await _round_against_a_peer_that_only_says_trying("600ms")
    result = done.result
    assert (result.success, result.reason) == (False, "timeout_after_provisional")
    assert result.status_code == 100
    assert "< SIP/2.0 100 Trying" in result.debug
    assert 0.6 <= result.duration_seconds < 0.6 + 0.5 + worst_loop_stall()
    assert done.stats.probe_errors == 0


async def test_background_rounds_keep_the_verdict_but_not_the_message_text():
    # Nobody reads a background probe's message-by-message text (/probe builds its own):
    # without debug logging the scheduler's results carry the reason, the status and the
    # verdict line, not every line of every SIP message (heap churn at 10,000 endpoints).
    result = (await _round_against_a_peer_that_only_says_trying("400ms")).result
    assert (result.reason, result.status_code) == ("timeout_after_provisional", 100)
    assert result.debug[-1].endswith(": timeout_after_provisional")
    assert not [line for line in result.debug if line.startswith(("< ", "> "))]


async def test_stamp_reason_survives_an_event_loop_stuck_across_the_deadline():
    # A reflector that never answers (and sends no ICMP error), and an event loop stuck
    # from shortly before the probe's deadline to shortly after it, as under a heavy
    # scrape: the prober's "no_reply", with its figures, must still be what is recorded.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        loop = asyncio.get_running_loop()
        loop.call_at(loop.time() + 1.0 - 0.2, time.sleep, 0.5)
        done = await one_round(
            single_module_inventory(
                "stamp", f"{{port: {port}, count: 5, interval: 20ms, wait: 30s}}", "1s",
                "127.0.0.1",
            )
        )  # fmt: skip
    result = done.result
    assert (result.success, result.reason) == (False, "no_reply")
    assert (result.packets_sent, result.packets_received) == (5, 0)
    assert result.packet_loss_ratio == 1.0
    assert done.stats.probe_errors == 0


class _OneProber(Probers):
    """Hands out one given prober for every kind: a stand-in for a buggy prober."""

    def __init__(self, prober: Prober) -> None:
        super().__init__()
        self._prober = prober

    async def get(self, kind: str) -> Prober:
        return self._prober


class _IgnoresItsDeadline(Prober):
    kind = "tcp"
    Settings = TcpSettings

    async def probe_until(self, target, settings, deadline, log) -> ProbeResult:
        await asyncio.sleep(3600)
        raise AssertionError("not cancelled")


class _Raises(Prober):
    kind = "tcp"
    Settings = TcpSettings

    async def probe_until(self, target, settings, deadline, log) -> ProbeResult:
        raise RuntimeError("a bug in the prober")


async def test_a_prober_overrunning_its_deadline_is_cut_off_logged_and_counted(caplog):
    inventory = single_module_inventory("tcp", "{port: 9}", "200ms", "127.0.0.1")
    with caplog.at_level(logging.ERROR, logger="bridge_exporter.scheduler"):
        done = await one_round(inventory, _OneProber(_IgnoresItsDeadline()))
    result = done.result
    assert (result.success, result.reason) == (False, "timeout")
    assert any("after its deadline" in line for line in result.debug), result.debug
    # Cut off a grace period after the deadline, not an hour later, not at the deadline.
    assert 0.2 + 0.5 <= result.duration_seconds <= 0.2 + 3.0
    assert done.stats.probe_errors == 1  # bridge_exporter_prober_errors_total
    assert any("after its deadline" in r.getMessage() for r in caplog.records)


async def test_a_prober_that_raises_is_a_prober_error_and_counted(caplog):
    inventory = single_module_inventory("tcp", "{port: 9}", "1s", "127.0.0.1")
    with caplog.at_level(logging.ERROR, logger="bridge_exporter.scheduler"):
        done = await one_round(inventory, _OneProber(_Raises()))
    assert (done.result.success, done.result.reason) == (False, "prober_error")
    assert any("RuntimeError: a bug in the prober" in line for line in done.result.debug)
    assert done.stats.probe_errors == 1
    assert any(r.exc_info for r in caplog.records), "the traceback is logged"


class _WhenCancelled(Prober):
    """Hangs until cancelled, then does what `reaction` does: answers anyway (returns a
    result) or fails its cleanup (raises)."""

    kind = "tcp"
    Settings = TcpSettings

    def __init__(self, reaction) -> None:
        self._reaction = reaction

    async def probe_until(self, target, settings, deadline, log) -> ProbeResult:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            return self._reaction()
        raise AssertionError("not cancelled")


def _answers_late() -> ProbeResult:
    return ProbeResult(success=False, reason="no_reply", debug=["late"])


def _cleanup_fails() -> ProbeResult:
    raise OSError("cleanup failed")


async def test_a_prober_that_swallows_the_cut_keeps_its_answer_and_the_round_goes_on():
    inventory = single_module_inventory("tcp", "{port: 9}", "100ms", "127.0.0.1")
    done = await one_round(inventory, _OneProber(_WhenCancelled(_answers_late)))
    assert (done.result.reason, done.result.debug) == ("no_reply", ["late"])
    # The backstop's cancellation was taken back: this task is not left cancelling.
    assert asyncio.current_task().cancelling() == 0
    await asyncio.sleep(0.01)  # and no cancellation is still pending for it


class _Stubborn(Prober):
    """Takes its time to give up when cancelled."""

    kind = "tcp"
    Settings = TcpSettings

    def __init__(self) -> None:
        self.cut_seen = asyncio.Event()

    async def probe_until(self, target, settings, deadline, log) -> ProbeResult:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.cut_seen.set()
            await asyncio.sleep(0.5)  # the outside cancellation lands here
            raise
        raise AssertionError("not cancelled")


async def test_a_reload_cancelling_a_probe_is_not_turned_into_a_timeout(listener):
    """A round cancelled from outside (a reload, a shutdown) while its probe runs, both
    before and together with the backstop's cut, ends cancelled: no result is recorded."""
    inventory = parse_inventory(
        single_module_inventory("tcp", "{port: 9}", "100ms", "127.0.0.1"), "round.yml"
    )
    (endpoint,) = inventory.endpoints.values()
    for wait in (0.05, 1.3):  # before the deadline; after the backstop's cut began
        stubborn = _Stubborn()
        cut_seen = stubborn.cut_seen
        state = State(inventory)
        scheduler = Scheduler(inventory, state, _OneProber(stubborn))
        task = asyncio.ensure_future(scheduler.run_round(endpoint))
        if wait > 1:
            await asyncio.wait_for(cut_seen.wait(), 3)
        else:
            await asyncio.sleep(wait)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert state.endpoints[endpoint.id].records == {}, wait
        assert scheduler.stats.probe_errors == 0, wait


class _NotesStarts(Prober):
    """Answers at once, noting when each probe began."""

    kind = "tcp"
    Settings = TcpSettings

    def __init__(self) -> None:
        self.starts: dict[str, float] = {}

    async def probe_until(self, target, settings, deadline, log) -> ProbeResult:
        self.starts.setdefault(target.endpoint_id, asyncio.get_running_loop().time())
        return ProbeResult(success=True)


def _share_at_one_phase(times: list[float], step: float, width: float) -> float:
    """The largest share of `times` whose phases in `step` lie less than `width` after one
    of them: what share of the starts one periodic wake-up of that step could have run."""
    phases = [t % step for t in times]
    return max(sum((p - first) % step < width for p in phases) for first in phases) / len(times)


async def test_round_starts_fall_on_a_grid_and_stay_spread(worst_loop_stall):
    """300 endpoints every 2 s: starts on a 20 ms grid (a hundredth of the interval), so the
    loop wakes once per step for the endpoints due in it, and still spread over the whole
    interval."""
    lines = [
        "interval: 2s",
        "tiers: [hub, site]",
        "modules:",
        "  tcp: {prober: tcp, timeout: 500ms, tcp: {port: 9}}",
        "endpoints:",
        "  - {id: hub, name: Hub, tier: hub, address: 127.0.0.1, modules: [tcp]}",
        *(
            f"  - {{id: s{i}, name: S{i}, tier: site, parent: hub, address: 127.0.0.1,"
            " modules: [tcp]}"
            for i in range(300)
        ),
    ]
    inventory = parse_inventory("\n".join(lines), "grid.yml")
    prober = _NotesStarts()
    scheduler = Scheduler(inventory, State(inventory), _OneProber(prober))
    begun = asyncio.get_running_loop().time()
    scheduler.start()
    try:
        await eventually(lambda: len(prober.starts) == 301, "every endpoint's first start")
    finally:
        await scheduler.stop()
    starts = sorted(prober.starts.values())
    # On the grid the starts have one phase in the 20 ms step (the coarse timers' 5 ms
    # tick shifts them all alike), each a little after it as its step's batch runs: all
    # within 4 ms of it (here 99 %). Off the grid they start on any 5 ms tick, some
    # quarter of them at each phase (here 31-33 % at the best one). More than half, so
    # that the batches a busy host runs late (at any phase) do not decide it.
    assert _share_at_one_phase(starts, 0.020, 0.004) > 0.5
    # Spread over the interval, not a burst (less what a stalled loop ran late together),
    # and all within the first interval.
    assert starts[-1] - starts[0] > 1.5 - worst_loop_stall()
    assert starts[-1] - begun <= 2.0 + 0.3 + worst_loop_stall()


async def test_a_prober_that_fails_when_cut_is_a_prober_error():
    inventory = single_module_inventory("tcp", "{port: 9}", "100ms", "127.0.0.1")
    done = await one_round(inventory, _OneProber(_WhenCancelled(_cleanup_fails)))
    assert (done.result.success, done.result.reason) == (False, "prober_error")
    assert done.stats.probe_errors == 1
    assert asyncio.current_task().cancelling() == 0


async def test_a_reload_is_not_lost_when_the_prober_turns_it_into_an_error():
    inventory = parse_inventory(
        single_module_inventory("tcp", "{port: 9}", "5s", "127.0.0.1"), "round.yml"
    )
    (endpoint,) = inventory.endpoints.values()
    state = State(inventory)
    scheduler = Scheduler(inventory, state, _OneProber(_WhenCancelled(_cleanup_fails)))
    task = asyncio.ensure_future(scheduler.run_round(endpoint))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2)  # ends, cancelled: a reload's wait for it ends too
    assert state.endpoints[endpoint.id].records == {}
    assert scheduler.stats.probe_errors == 0
