#!/usr/bin/env python3
"""The `webhook` receiver of prometheus/alertmanager.yml (http://webhook:5001/alerts) in
docker-compose.yml: logs every notification as one JSON line on stdout
(`docker compose logs webhook`). Replace it with your ticketing system's webhook."""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            notification = json.loads(body)
        except ValueError:
            self.send_error(400, "expected Alertmanager's JSON")
            return
        print(json.dumps({"path": self.path, **notification}, ensure_ascii=False), flush=True)
        self.send_response(200)
        self.end_headers()

    def do_GET(self) -> None:  # health check
        self.send_response(200 if self.path == "/-/healthy" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 5001
    ThreadingHTTPServer(("", port), Handler).serve_forever()
