"""Benchmark the recommendation API over HTTP on the Online Retail catalogue.

``python bench/recommend.py [--data-dir ../shared/data] [--state-dir /tmp/state-recommend-bench]``

Prepares its own STATE_DIR (Online Retail: ~4k products, ~400k events), trains the served
recommender in-process (``manage.py train recommend --inline``), starts gunicorn (2 workers x 4 threads) and measures:

- ``for_you``: ``GET /api/v1/recommend/customers/{id}?k=10`` for real customers, 8 concurrent
  keep-alive clients, against ``popular`` (``GET /api/v1/recommend/popular?k=10``, the
  popularity-only endpoint: same auth, same product fetch, no model scoring) in the same run;
- ``similar``: ``GET /api/v1/recommend/products/{sku}/similar?k=10``;
- ``ingest``: ``POST /api/v1/events`` with 1,000 events per request (one fresh customer per batch,
  real SKUs), one request at a time; after each, ``for_you`` for that customer must be
  personalised (``fallback`` null, a reason naming one of the ingested products) - the share
  that is, is ``reflected``; re-posting a batch must create nothing.

Prints one JSON object: p50/p95/p99 per kind, the for_you/popular ratio, peak resident memory.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import resource
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.harness import _percentile, load_test, manage, peak_rss_mb, prepare_state, serve  # noqa: E402

DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"

SAMPLE = r"""
import json, random
from backbone import lifecycle
from catalog.models import Customer, Product
from recommend.models import RecommenderModel
customers = list(Customer.objects.filter(external_id__startswith="or-", events__isnull=False).distinct().values_list("external_id", flat=True))
skus = list(Product.objects.filter(sku__startswith="or-", events__isnull=False).distinct().values_list("sku", flat=True))
rng = random.Random(7)
model = lifecycle.active(RecommenderModel)
print(json.dumps({"customers": rng.sample(sorted(customers), min(300, len(customers))), "skus": rng.sample(sorted(skus), min(300, len(skus))), "model": {"name": model.name, "metrics": model.metrics}}))
"""


def ingest_batches(base_url: str, key: str, skus: list[str], batches: int, size: int) -> dict:
    """POST ``batches`` batches of ``size`` events sequentially; check the next answer reflects each."""
    host, port = base_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    headers = {"X-Api-Key": key, "Content-Type": "application/json"}
    rng = random.Random(11)
    latencies, reflected, created, duplicates_on_retry, statuses = [], 0, 0, 0, []
    start = datetime(2012, 1, 1, tzinfo=UTC)
    stamp = int(time.time())
    for b in range(batches):
        customer = f"bench-{stamp}-{b}"
        picked = rng.sample(skus, 8)
        events = [
            {
                "client_event_id": f"bench-{stamp}-{b}-{i}",
                "customer": customer if i < 20 else f"bench-{stamp}-{b}-other-{i % 50}",
                "product": picked[i % 8] if i < 20 else rng.choice(skus),
                "type": "view" if i % 3 else "cart",
                "timestamp": (start + timedelta(minutes=b * 10000 + i)).isoformat(),
                "session": f"bench-{stamp}-{b}",
            }
            for i in range(size)
        ]
        body = json.dumps({"events": events})
        began = time.perf_counter()
        conn.request("POST", "/api/v1/events", body=body, headers=headers)
        response = conn.getresponse()
        payload = json.loads(response.read() or b"{}")
        latencies.append((time.perf_counter() - began) * 1000)
        statuses.append(response.status)
        created += payload.get("created", 0)
        conn.request("GET", f"/api/v1/recommend/customers/{customer}?k=10", headers={"X-Api-Key": key})
        answer = json.loads(conn.getresponse().read())
        titles_seen = answer.get("fallback") is None and any(
            item["reason"].startswith("because you") for item in answer.get("items", [])
        )
        reflected += bool(titles_seen)
        if b == 0:  # a retry of the same batch stores nothing
            conn.request("POST", "/api/v1/events", body=body, headers=headers)
            duplicates_on_retry = json.loads(conn.getresponse().read()).get("duplicates", 0)
    conn.close()
    ordered = sorted(latencies)
    return {
        "batches": batches,
        "events_per_batch": size,
        "status_counts": {str(s): statuses.count(s) for s in sorted(set(statuses))},
        "created": created,
        "duplicates_on_retry": duplicates_on_retry,
        "p50_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(_percentile(ordered, 0.95), 2),
        "p99_ms": round(_percentile(ordered, 0.99), 2),
        "reflected": f"{reflected}/{batches}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    parser.add_argument("--state-dir", default="/tmp/state-recommend-bench")
    parser.add_argument("--port", type=int, default=8771)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()

    began = time.monotonic()
    prepare_state(args.state_dir, ["online_retail"], args.data_dir)
    manage(args.state_dir, "train", "recommend", "--inline")
    sample = json.loads(manage(args.state_dir, "shell", "-c", SAMPLE).strip().splitlines()[-1])
    setup_s = round(time.monotonic() - began, 1)

    with serve(args.state_dir, args.port, workers=2) as server:
        headers = {"X-Api-Key": server.storefront_key}
        for_you = [("GET", f"/api/v1/recommend/customers/{c}?k=10", None) for c in sample["customers"]]
        popular = [("GET", "/api/v1/recommend/popular?k=10", None) for _ in sample["customers"]]
        similar = [("GET", f"/api/v1/recommend/products/{s}/similar?k=10", None) for s in sample["skus"]]
        load_test(server.base_url, for_you[:40] + popular[:40] + similar[:40], headers)  # warm every worker
        results = {
            "popular": load_test(server.base_url, popular, headers, repeats=args.repeats),
            "for_you": load_test(server.base_url, for_you, headers, repeats=args.repeats),
            "similar": load_test(server.base_url, similar, headers, repeats=args.repeats),
        }
        results["ingest"] = ingest_batches(server.base_url, server.storefront_key, sample["skus"], args.batches, 1000)
        peak = peak_rss_mb(server.pids())

    report = {
        "bench": "recommend",
        "dataset": "online_retail",
        "model": sample["model"],
        "concurrency": 8,
        "server": "gunicorn 2 workers x 4 threads",
        **results,
        "for_you_over_popular_p50": round(results["for_you"]["p50_ms"] / results["popular"]["p50_ms"], 2),
        "for_you_over_popular_p99": round(results["for_you"]["p99_ms"] / results["popular"]["p99_ms"], 2),
        "server_peak_rss_mb": peak,
        "bench_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "setup_s": setup_s,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
