"""The generic webhook (config ``notify``): one JSON document per reconcile that changed
something or failed, POSTed to ``notify.url``. Delivery never blocks the caller: documents go
to a bounded queue that one worker thread sends, each with a timeout; what cannot be queued or
delivered is dropped and counted, never retried forever.

The document (``apiVersion: reconciler/v1``, ``kind: ReconcileReport``)::

    {"apiVersion": "reconciler/v1", "kind": "ReconcileReport", "instance": "default",
     "host": "hv-01", "time": "2026-11-30T18:30:00Z",
     "revision": {"commit": "1a2b...", "dirty": false, "problem": null},
     "summary": {"converged": 2, "pending restart": 0, "failed": 1, "blocked": 0},
     "results": [{"name": "web-01", "action": "update", "result": "converged",
                  "message": "", "seconds": 1.2}, ...]}

With ``notify.secret`` the body is signed as GitHub signs its webhooks: header
``X-Reconciler-Signature-256: sha256=<HMAC-SHA256 of the body, hex>``. The URL may carry a
token: it is never logged (only its scheme and host are)."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import queue
import threading
import urllib.error
import urllib.request
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from reconciler.core.result import Outcome, Result

QUEUE = 16  # documents waiting at most; more are dropped (and counted)


def report(*, instance: str, host: str, time: str, commit: str | None, dirty: bool,
           problem: str | None, results: Iterable[Result]) -> dict[str, Any]:
    """The document for one reconcile (see the module's docstring)."""
    results = list(results)
    return {
        "apiVersion": "reconciler/v1", "kind": "ReconcileReport", "instance": instance,
        "host": host, "time": time,
        "revision": {"commit": commit, "dirty": dirty, "problem": problem},
        "summary": {str(o): sum(1 for r in results if r.outcome == o) for o in Outcome},
        "results": [{"name": r.name, "action": str(r.kind), "result": str(r.outcome),
                     "message": r.message, "seconds": round(r.seconds, 3)} for r in results],
    }


def worth_sending(results: Iterable[Result]) -> bool:
    """A reconcile that changed something or failed (not one with nothing to do)."""
    return any(r.outcome in (Outcome.CONVERGED, Outcome.PENDING_RESTART, Outcome.FAILED)
               for r in results)


class Webhook:
    """The sender: ``send(document)`` queues and returns at once. ``sent``, ``dropped`` and
    ``failed`` count deliveries; ``last_error`` says the last failure (without the URL's
    path or query)."""

    def __init__(self, url: str, *, secret: str = "", timeout: float = 5.0) -> None:
        self.url, self.secret, self.timeout = url, secret, timeout
        parts = urlsplit(url)
        self.where = f"{parts.scheme}://{parts.hostname or ''}"
        self.sent = self.dropped = self.failed = 0
        self.last_error = ""
        self._queue: queue.Queue[bytes | None] = queue.Queue(QUEUE)
        self._thread = threading.Thread(target=self._run, name="webhook", daemon=True)
        self._thread.start()

    def send(self, document: dict[str, Any]) -> bool:
        """Queue one document; False (and counted as dropped) when the queue is full."""
        try:
            self._queue.put_nowait(json.dumps(document).encode())
        except queue.Full:
            self.dropped += 1
            return False
        return True

    def close(self, wait: float = 0.0) -> None:
        """Stop the worker after what is queued, waiting at most ``wait`` seconds."""
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        self._thread.join(wait)

    def _run(self) -> None:
        while (body := self._queue.get()) is not None:
            self._deliver(body)

    def _deliver(self, body: bytes) -> None:
        headers = {"Content-Type": "application/json", "User-Agent": "reconciler"}
        if self.secret:
            digest = hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
            headers["X-Reconciler-Signature-256"] = f"sha256={digest}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read(1 << 16)
            self.sent += 1
        except urllib.error.HTTPError as exc:
            self.failed += 1
            self.last_error = f"{self.where} answered {exc.code} {exc.reason}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            self.failed += 1
            reason = getattr(exc, "reason", exc)
            self.last_error = f"{self.where}: {reason}"
