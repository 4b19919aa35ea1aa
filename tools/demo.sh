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
# The example's upcoming session is moved to start 30 minutes from now (in a copy of the
# inventory), so that the demo shows a session in its readiness window.
workdir=$(mktemp -d "${TMPDIR:-/tmp}/bridge-demo.XXXXXX")
simulator=""
cleanup() {
  if [ -n "$simulator" ]; then
    kill "$simulator" 2>/dev/null || true
    wait "$simulator" 2>/dev/null || true
  fi
  rm -rf "$workdir"
}
trap cleanup EXIT
session_note=$("$bin/python" - "$inventory" "$workdir/inventory.yml" <<'PY'
import datetime as dt, re, sys, zoneinfo
source, target = sys.argv[1], sys.argv[2]
text = open(source, encoding="utf-8").read()
zone = zoneinfo.ZoneInfo("Asia/Ho_Chi_Minh")
start = (dt.datetime.now(zone) + dt.timedelta(minutes=30)).replace(second=0, microsecond=0)
end = start + dt.timedelta(hours=2)
block = re.search(r"  - name: giao-ban-huyen-2027-01-05\n(?:    .*\n)+", text)
if block:
    moved = re.sub(r"start: .*", f"start: {start:%Y-%m-%d %H:%M}", block.group(0), count=1)
    moved = re.sub(r"end: .*", f"end: {end:%Y-%m-%d %H:%M}", moved, count=1)
    text = text[: block.start()] + moved + text[block.end() :]
    print(f"session giao-ban-huyen-2027-01-05 moved to {start:%H:%M}-{end:%H:%M} (Hà Nội time)")
open(target, "w", encoding="utf-8").write(text)
PY
)
shown_inventory=$inventory
inventory=$workdir/inventory.yml
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

  Bridge exporter demo: ${shown_inventory} ($(grep -c '^  - id:' "$inventory") endpoints), scenario ${scenario}
  ${session_note:-no upcoming session to show}
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
