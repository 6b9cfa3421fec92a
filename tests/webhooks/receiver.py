"""A webhook receiver for the tests: verifies every delivery with the Standard Webhooks
reference library (PyPI `standardwebhooks`, pinned in the Makefile) and records it.

Prints its port on the first line of stdout, then serves on 127.0.0.1 until killed:
  PUT /_control/secrets    ["whsec_...", ...]  the secrets a delivery may be signed with
  PUT /_control/responses  [500, 200, ...]     the statuses to answer next, in order (then 200)
  PUT /_control/delay      1.5                 seconds to wait before answering (0: none)
  GET /_control/received                       every delivery so far, oldest first
Any other POST is a delivery: answered with the next scripted status; recorded with its
`webhook-id`, `webhook-timestamp`, the secrets (by index) whose signature verified, the
parsed payload, and the status it was answered.
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook

lock = threading.Lock()
state = {"secrets": [], "responses": [], "delay": 0.0, "received": []}


class Receiver(BaseHTTPRequestHandler):
    # Keep-alive, as a real receiver: the sender's connections are reused.
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _body(self):
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def _answer(self, status, payload=None):
        body = json.dumps(payload if payload is not None else {}).encode()
        try:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            # Headers and body in one write: a second small write would wait for the ACK of
            # the first (Nagle), which the sender delays up to 40 ms.
            self._headers_buffer.append(b"\r\n" + body)
            self.flush_headers()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the sender gave up (a timeout, a killed worker): what the tests are about

    def do_PUT(self):
        key = self.path.removeprefix("/_control/")
        value = json.loads(self._body())
        with lock:
            state[key] = value
        self._answer(200)

    def do_GET(self):
        with lock:
            received = list(state["received"])
        self._answer(200, received)

    def do_POST(self):
        body = self._body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        with lock:
            secrets = list(state["secrets"])
            status = state["responses"].pop(0) if state["responses"] else 200
            delay = state["delay"]
        verified = []
        for index, secret in enumerate(secrets):
            try:
                Webhook(secret).verify(body, headers)
                verified.append(index)
            except Exception:
                pass
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        record = {
            "path": self.path,
            "webhook_id": headers.get("webhook-id"),
            "webhook_timestamp": headers.get("webhook-timestamp"),
            "signature": headers.get("webhook-signature"),
            "content_type": headers.get("content-type"),
            "verified_with": verified,
            "payload": payload,
            "answered": status,
        }
        # Recorded on arrival: a test sees a delivery that is still waiting for its answer.
        with lock:
            state["received"].append(record)
        if delay:
            time.sleep(delay)
        self._answer(status, {"ok": status < 300})


server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
print(server.server_address[1], flush=True)
server.serve_forever()
