#!/usr/bin/env bash
# make demo: the simulated Thái Bình network (every endpoint on its own 127.10.x.y address)
# with a scenario of faults, and the exporter probing it. Ctrl-C stops both.
# Overrides: DEMO_LISTEN (exporter, default 127.0.0.1:9198), DEMO_CONTROL (simulator
# control API, default 127.0.0.1:9199), DEMO_SCENARIO, DEMO_INVENTORY.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
inventory=${DEMO_INVENTORY:-examples/thai-binh.yml}
scenario=${DEMO_SCENARIO:-examples/scenarios/demo.yml}
listen=${DEMO_LISTEN:-127.0.0.1:9198}
control=${DEMO_CONTROL:-127.0.0.1:9199}

"$bin/bridge-exporter" validate "$inventory"
for address in "$listen" "$control"; do
  "$bin/python" - "$address" <<'PY' || exit 1
import socket, sys
host, _, port = sys.argv[1].rpartition(":")
try:
    socket.create_server((host, int(port))).close()
except OSError as exc:
    sys.exit(f"demo: cannot use {sys.argv[1]} ({exc.strerror}): is another demo running? "
             "Stop it, or set DEMO_LISTEN / DEMO_CONTROL to free addresses.")
PY
done
"$bin/bridge-exporter" simulate --config.file "$inventory" --scenario "$scenario" \
  --control.listen-address "$control" &
simulator=$!
cleanup() { kill "$simulator" 2>/dev/null || true; wait "$simulator" 2>/dev/null || true; }
trap cleanup EXIT
trap 'exit 0' INT TERM

for _ in $(seq 50); do
  "$bin/python" - "$control" <<'PY' && break
import sys, urllib.request
try:
    urllib.request.urlopen(f"http://{sys.argv[1]}/faults", timeout=1)
except Exception:
    sys.exit(1)
PY
  kill -0 "$simulator" 2>/dev/null || { echo "the simulator failed to start" >&2; exit 1; }
  sleep 0.2
done

cat <<TXT

  Bridge exporter demo: ${inventory} ($(grep -c '^  - id:' "$inventory") endpoints), scenario ${scenario}
    landing page   http://${listen}/          (tiers, endpoints down now, degraded quality)
    metrics        http://${listen}/metrics   (try: curl -s http://${listen}/metrics | grep '^bridge_up')
    ad-hoc probe   http://${listen}/probe?target=tb-hung-ha&debug=true
    faults         curl -s http://${control}/faults
                   curl -X PUT -d '{"down": true, "subtree": true}' http://${control}/faults/tb-vu-thu
  The first round completes within one interval (15 s). Ctrl-C stops the demo.

TXT
"$bin/bridge-exporter" --config.file "$inventory" --web.listen-address "$listen" &
exporter=$!
trap 'kill "$exporter" 2>/dev/null || true; wait "$exporter" 2>/dev/null || true; cleanup' EXIT
wait "$exporter"
