"""Create or update the merge request's one reconciler note (found by the marker on the plan's
first line) with the plan in markdown. Standard library only. Used by gitlab-ci.yml; reads
CI_API_V4_URL, CI_PROJECT_ID, CI_MERGE_REQUEST_IID and PLAN_NOTE_TOKEN."""

from __future__ import annotations

import json
import os
import sys
import urllib.request


def call(method: str, path: str, body: dict[str, str] | None = None) -> object:
    url = f"{os.environ['CI_API_V4_URL']}/projects/{os.environ['CI_PROJECT_ID']}{path}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={
        "PRIVATE-TOKEN": os.environ["PLAN_NOTE_TOKEN"], "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def main(path: str) -> int:
    with open(path, encoding="utf-8") as f:
        body = f.read()
    marker = body.split("\n", 1)[0]
    notes = f"/merge_requests/{os.environ['CI_MERGE_REQUEST_IID']}/notes"
    page = 1
    while True:
        found = call("GET", f"{notes}?per_page=100&page={page}")
        if not isinstance(found, list) or not found:
            break
        for note in found:
            if isinstance(note, dict) and str(note.get("body", "")).startswith(marker):
                call("PUT", f"{notes}/{note['id']}", {"body": body})
                return 0
        page += 1
    call("POST", notes, {"body": body})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
