"""A small real model server for the demo: HTTP + JSON, wrapped by the middleware.

``POST /predict`` with ``{"request_id": "...", "features": {"amount": 12.5, ...}}``
answers ``{"score": 0.83, "label": "fraud"}``. The predict function is wrapped
by :func:`middleware.shadow`, exactly as a user would wrap theirs.

``--regression`` makes the server behave as after a bad dependency update: the
preprocessing converts ``amount`` with a wrong exchange rate (tripling it) and every call takes ~3 ms
longer (a slower kernel). Nothing else changes.

Run: ``python -m sidecar.demo_server --port 8080 --target 127.0.0.1:50051``
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import middleware

__all__ = ["main"]

_WEIGHTS = {"amount": 0.004, "age_days": -0.002, "items": 0.15, "distance_km": 0.01}


def build_predict(*, regression: bool) -> Any:
    """The user's model function, before wrapping."""

    def predict(payload: dict[str, Any]) -> dict[str, Any]:
        features = payload["features"]
        amount = float(features["amount"]) * (3.0 if regression else 1.0)
        z = -3.0 + _WEIGHTS["amount"] * amount
        z += _WEIGHTS["age_days"] * float(features["age_days"])
        z += _WEIGHTS["items"] * float(features["items"])
        z += _WEIGHTS["distance_km"] * float(features["distance_km"])
        score = 1.0 / (1.0 + math.exp(-z))
        # Simulated inference work: ~1 ms, ~4 ms after the regression.
        time.sleep(0.004 if regression else 0.001)
        return {"score": score, "label": "fraud" if score > 0.5 else "ok"}

    return predict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--target", required=True, help="sidecar gRPC address")
    parser.add_argument("--model", default="fraud")
    parser.add_argument("--version", default="v1")
    parser.add_argument("--environment", default="demo")
    parser.add_argument(
        "--regression", action="store_true", help="behave as after a bad dependency update"
    )
    args = parser.parse_args(argv)

    shadow = middleware.Shadow(
        model=args.model,
        version=args.version,
        environment=args.environment,
        target=args.target,
        sample_rate=1.0,
        features=lambda call_args, call_kwargs: call_args[0]["features"],
        request_id=lambda call_args, call_kwargs: call_args[0].get("request_id"),
        flush_interval=0.2,
    )
    predict = shadow.wrap(build_predict(regression=args.regression))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if self.path != "/predict":
                self.send_error(404)
                return
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            try:
                result = predict(json.loads(body))
                data, status = json.dumps(result).encode(), 200
            except (KeyError, TypeError, ValueError) as err:
                data, status = json.dumps({"error": str(err)}).encode(), 400
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)

    def stop(signum: int, frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"model server {args.model}:{args.version} on http://127.0.0.1:{args.port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
        shadow.close(timeout=5.0)
        stats = shadow.stats()
        print(f"model server stopped; middleware stats: {stats}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
