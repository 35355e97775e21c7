"""The webhook (config `notify`), against a local HTTP server: the documented document, signed
with the secret, sent without blocking the caller; a server that is down or slow costs a drop
and a count, never a hang."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
import time
from collections.abc import Iterator

import pytest

from reconciler.adapters.webhook import QUEUE, Webhook, report, worth_sending
from reconciler.core.plan import Kind
from reconciler.core.result import Outcome, Result


class _Server(http.server.ThreadingHTTPServer):
    received: list[tuple[dict[str, str], bytes]]
    delay: float = 0.0
    status: int = 204


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        server = self.server
        assert isinstance(server, _Server)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(server.delay)
        server.received.append((dict(self.headers), body))
        self.send_response(server.status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.received = []
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()


RESULTS = [Result("web-01", Kind.UPDATE, Outcome.CONVERGED, seconds=1.25),
           Result("db-01", Kind.UPDATE, Outcome.FAILED, "starting db-01: no memory")]


def _wait_for(predicate, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.02)
    return bool(predicate())


def test_the_report_is_posted_as_documented_and_signed(server):
    url = f"http://127.0.0.1:{server.server_address[1]}/hooks/reconciler?token=s3cret"
    hook = Webhook(url, secret="k3y")
    doc = report(instance="default", host="hv-01", time="2026-11-30T18:30:00Z",
                 commit="a" * 40, dirty=False, problem=None, results=RESULTS)
    assert hook.send(doc)
    assert _wait_for(lambda: server.received)
    headers, body = server.received[0]
    sent = json.loads(body)
    assert sent["kind"] == "ReconcileReport" and sent["revision"]["commit"] == "a" * 40
    assert sent["summary"] == {"converged": 1, "pending restart": 0, "blocked": 0, "failed": 1}
    assert sent["results"][1] == {"name": "db-01", "action": "update", "result": "failed",
                                  "message": "starting db-01: no memory", "seconds": 0.0}
    expected = hmac.new(b"k3y", body, hashlib.sha256).hexdigest()
    assert headers["X-Reconciler-Signature-256"] == f"sha256={expected}"
    assert _wait_for(lambda: hook.sent == 1)
    hook.close(1)


def test_a_slow_or_down_server_never_blocks_and_costs_counted_drops(server):
    server.delay = 2.0
    hook = Webhook(f"http://127.0.0.1:{server.server_address[1]}/?token=s3cret", timeout=0.5)
    started = time.monotonic()
    accepted = [hook.send({"n": i}) for i in range(QUEUE + 10)]
    assert time.monotonic() - started < 0.5  # queued, not sent, by the caller
    assert accepted.count(False) >= 9 and hook.dropped == accepted.count(False)
    assert _wait_for(lambda: hook.failed >= 1, timeout=5)
    assert "s3cret" not in hook.last_error and "127.0.0.1" in hook.last_error
    hook.close()
    down = Webhook("http://127.0.0.1:9/", timeout=0.5)  # nothing listens on the discard port
    down.send({"n": 1})
    assert _wait_for(lambda: down.failed == 1)
    down.close()


def test_only_reconciles_that_changed_something_or_failed_are_worth_sending():
    assert worth_sending(RESULTS)
    assert not worth_sending([Result("web-01", Kind.BLOCKED, Outcome.BLOCKED)])
    assert not worth_sending([])
