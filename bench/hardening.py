"""The hardening issue's bad requests against a running platform: each must get its JSON 4xx.

    python bench/hardening.py --url http://127.0.0.1:8000 --key SERVER_KEY --staff admin

Sends out-of-range and NUL/lone-surrogate events, JSON nested 5,000 deep to four endpoints, an
11 MB body and 30 wrong staff passwords, then asks for the poisoned customer's recommendations
(which must still answer 200). Prints one line per request and a JSON summary; exits 1 when any
answer is not what the issue asks for.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import sys
import urllib.parse

CUSTOMER = "hardening-customer"


def call(url: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None) -> tuple[int, dict]:
    """Return the status and the JSON body (``{"not_json": ...}`` when it is not JSON).

    The server may answer (413) before it has read the whole body and close the connection: the
    answer is still read after the send fails, as curl and browsers do.
    """
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    connection.putrequest(method, parts.path + (f"?{parts.query}" if parts.query else ""))
    for name, value in {**(headers or {}), "Content-Length": str(len(body or b""))}.items():
        connection.putheader(name, value)
    connection.endheaders()
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        connection.send(body or b"")
    response = connection.getresponse()
    status, raw, kind = response.status, response.read(), response.getheader("Content-Type", "")
    connection.close()
    if not kind.startswith("application/json"):
        return status, {"not_json": raw[:200].decode(errors="replace")}
    return status, json.loads(raw or b"null")


def event(sku: str, **overrides) -> dict:
    return {"client_event_id": "hardening-ok", "customer": CUSTOMER, "product": sku, "type": "view",
            "timestamp": "2026-11-28T10:00:00Z", **overrides}  # fmt: skip


def cases(sku: str) -> list[tuple[str, str, str, bytes, int]]:
    """(what, method, path, body, expected status) of every bad request."""
    deep = b'{"a":' * 5000 + b"1" + b"}" * 5000
    batch = lambda *events: json.dumps({"events": list(events)}).encode()  # noqa: E731
    out = [
        ("event in year 10000", "POST", "/api/v1/events",
         batch(event(sku, client_event_id="h-1", timestamp="9999-12-31T23:59:59-10:00")), 400),
        ("event BC", "POST", "/api/v1/events",
         batch(event(sku, client_event_id="h-2", timestamp="0001-01-01T00:00:00+14:00")), 400),
    ]  # fmt: skip
    for field in ("client_event_id", "session", "customer"):
        out.append((f"NUL in {field}", "POST", "/api/v1/events", batch(event(sku, **{field: "h\u0000x"})), 400))
    surrogate = batch(event(sku, client_event_id="h-3")).replace(b"h-3", b"h\\ud800")
    out.append(("lone surrogate in client_event_id", "POST", "/api/v1/events", surrogate, 400))
    for path in ("/api/v1/events", "/api/v1/chat/messages", "/api/v1/ads/select", "/api/v1/search/clicks"):
        out.append((f"JSON 5,000 deep to {path}", "POST", path, deep, 400))
    out.append(("11 MB body", "POST", "/api/v1/events", b'{"events": ["' + b"x" * (11 * 1024 * 1024) + b'"]}', 413))
    return out


def run(url: str, key: str, staff: str) -> list[dict]:
    """Send every case; return one row per request with what came back."""
    headers = {"X-Api-Key": key, "Content-Type": "application/json"}
    _, products = call(f"{url}/api/v1/products?page_size=1", headers=headers)
    sku = products["results"][0]["sku"]
    rows = []
    status, _ = call(f"{url}/api/v1/events", "POST", json.dumps({"events": [event(sku)]}).encode(), headers)
    rows.append({"what": "a valid event for the customer", "status": status, "expected": 201, "json": True})
    for what, method, path, body, expected in cases(sku):
        status, answer = call(url + path, method, body, headers)
        rows.append({"what": what, "status": status, "expected": expected, "json": "not_json" not in answer})
    for attempt in range(1, 31):
        token = base64.b64encode(f"{staff}:wrong-password-{attempt}".encode()).decode()
        status, answer = call(f"{url}/api/v1/training-jobs", headers={"Authorization": f"Basic {token}"})
    rows.append(
        {"what": "30th wrong staff password", "status": status, "expected": 429, "json": "not_json" not in answer}
    )
    status, answer = call(f"{url}/api/v1/recommend/customers/{CUSTOMER}", headers=headers)
    rows.append({"what": "the customer's recommendations afterwards", "status": status, "expected": 200,
                 "json": "not_json" not in answer})  # fmt: skip
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--key", required=True, help="a server-scope storefront key")
    parser.add_argument("--staff", default="admin", help="a staff user name (its password is never sent)")
    args = parser.parse_args()
    rows = run(args.url.rstrip("/"), args.key, args.staff)
    for row in rows:
        ok = row["status"] == row["expected"] and row["json"]
        print(f"{'ok  ' if ok else 'FAIL'} {row['status']} (want {row['expected']}, json={row['json']}) {row['what']}")
    failed = [r for r in rows if r["status"] != r["expected"] or not r["json"]]
    print(json.dumps({"requests": len(rows), "failed": len(failed)}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
