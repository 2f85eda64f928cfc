"""Benchmark the ads app: pCTR scoring of 1,000 candidate ads in one call, and ``/ads/select`` over HTTP.

``python bench/ads.py [--state-dir /tmp/bench-ads] [--ads 1000] [--calls 200] [--requests 400]``

1. Prepares its own STATE_DIR (migrate, bootstrap), creates 100 campaigns x 10 ads, a slot, and
   4,000 synthetic served impressions with clicks; trains the served pCTR recipe on them
   (``ads.training.fit_ctr_version``, what ``manage.py train ads`` runs, with 2 epochs per network:
   the figures are about speed, not quality) and activates it.
2. Scoring: ``scoring_1000_candidates`` is one call that scores all 1,000 ads (their fields,
   cached creative embeddings, a given context embedding, DeepFM, calibration);
   ``predict_ctr_with_context_embedding`` adds embedding the request's query with the backbone;
   in the same run the baseline ``historical_ctr`` (one aggregate query over the served log).
3. HTTP: gunicorn (2 workers x 4 threads) on that STATE_DIR; ``POST /api/v1/ads/select`` with
   k=3 and varied queries from 8 concurrent keep-alive clients (after a warm-up that loads the
   model in every worker and reads the creative embeddings that step 2 stored for the active
   backbone version; ``warmup`` reports those first 16 requests).

Prints one JSON object: latencies (p50/p99 ms), the ratio to the baseline, peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import time
from decimal import Decimal
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench import harness  # noqa: E402

QUERIES = ["cordless drill", "garden hose", "led bulb", "paint roller", "wood screws", "shower head", "", "ladder"]


def seed_ads(n_ads: int, seed: int) -> str:
    """Create campaigns, ads, a slot and a served log with clicks; train and activate a pCTR model."""
    from ads import services, training
    from ads.models import Ad, AdSlot, Advertiser, Campaign, CtrModelVersion, ServedImpression
    from backbone import lifecycle
    from backbone.services import get_active_version

    slot, _ = AdSlot.objects.get_or_create(name="bench-top", defaults={"reserve_price": Decimal("0.0001")})
    if Ad.objects.count() < n_ads:
        rng = random.Random(seed)
        words = ["drill", "hose", "bulb", "roller", "screws", "shower", "ladder", "saw", "paint", "tile"]
        for c in range(n_ads // 10):
            advertiser, _ = Advertiser.objects.get_or_create(name=f"bench advertiser {c % 20}")
            campaign = Campaign.objects.create(
                advertiser=advertiser,
                name=f"bench campaign {c}",
                daily_budget=Decimal("1000000"),
                bid_per_click=Decimal(str(round(rng.uniform(0.1, 3.0), 2))),
            )
            Ad.objects.bulk_create(
                Ad(
                    campaign=campaign,
                    title=f"{rng.choice(words).title()} deal {c}-{i}",
                    text=f"Best {rng.choice(words)} and {rng.choice(words)} prices",
                )
                for i in range(10)
            )
        ads = services.serving_catalogue().ads
        log = []
        for _ in range(4000):
            ad = rng.choice(ads)
            query = rng.choice(QUERIES)
            log.append(
                ServedImpression(
                    ad=ad,
                    campaign=ad.campaign,
                    slot=slot,
                    pctr=0.01,
                    bid=ad.campaign.bid_per_click,
                    price=Decimal("0.1"),
                    features={
                        "slot": slot.name,
                        "ad": str(ad.pk),
                        "campaign": str(ad.campaign_id),
                        "advertiser": str(ad.campaign.advertiser_id),
                        "hour": str(rng.randrange(24)),
                        "customer": f"c{rng.randrange(200)}",
                        "query_words": query.split(),
                    },
                    context_text=query,
                )
            )
        ServedImpression.objects.bulk_create(log)
        clicked = [imp.pk for imp in log if rng.random() < 0.05]
        ServedImpression.objects.filter(pk__in=clicked).update(clicked_at="2026-01-01T00:00Z")
    if lifecycle.active(CtrModelVersion) is None:
        row = training.fit_ctr_version(version=get_active_version(), parameters={"ads_max_epochs": 2})
        lifecycle.activate(CtrModelVersion, pk=row.pk)
    return slot.name


def bench_scoring(slot_name: str, calls: int) -> dict:
    from django.utils import timezone

    from ads import services
    from ads.models import AdSlot

    slot = AdSlot.objects.get(name=slot_name)
    ads = services.serving_catalogue().ads
    context = services.resolve_context(query="cordless drill")
    now = timezone.now()
    services.predict_ctr(ads=ads, slot=slot, context=context, now=now)  # warm: model, creative embeddings
    full, model_only, baseline = [], [], []
    serving = services.SCORER.current()
    embeddings = {"backbone": serving.backbone, "encoder": serving.encoder}
    vectors = services.ad_text_vectors(ads, **embeddings)
    context_vector = vectors[:1]  # any unit vector: this path times the scoring, not the encoder
    for i in range(calls):
        context = services.resolve_context(query=QUERIES[i % len(QUERIES)] + f" {i}", customer=f"c{i % 200}")
        started = time.perf_counter()
        pctr, name, _ = services.predict_ctr(ads=ads, slot=slot, context=context, now=now)
        full.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        shared = services.context_features(slot=slot, context=context, now=now)
        features = services.serving_catalogue().features
        serving.model.predict_candidates(
            shared, features, [services.ad_text_vectors(ads, **embeddings), context_vector]
        )
        model_only.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        services.historical_ctr([ad.pk for ad in ads])
        baseline.append((time.perf_counter() - started) * 1000)
    assert name == serving.row.name and len(pctr) == len(ads)
    result = {
        "candidates": len(ads),
        "model": serving.row.name,
        "predict_ctr_with_context_embedding": harness.percentiles(full),
        "scoring_1000_candidates": harness.percentiles(model_only),
        "baseline_historical_ctr_query": harness.percentiles(baseline),
    }
    result["ratio_p50_to_baseline"] = round(
        result["predict_ctr_with_context_embedding"]["p50_ms"] / result["baseline_historical_ctr_query"]["p50_ms"], 2
    )
    return result


def bench_http(state_dir: str, slot_name: str, n_requests: int, port: int, seed: int) -> dict:
    rng = random.Random(seed)
    bodies = [
        ("POST", "/api/v1/ads/select", {"slot": slot_name, "context": {"query": rng.choice(QUERIES)}, "k": 3})
        for _ in range(n_requests)
    ]
    env = {"BACKBONE_TORCH_THREADS": "1"}
    with harness.serve(state_dir, port, workers=2, env=env) as server:
        headers = {"X-Api-Key": server.storefront_key}
        warm = harness.load_test(server.base_url, bodies[:16], headers, concurrency=8)
        measured = harness.load_test(server.base_url, bodies, headers, concurrency=8)
        peak = harness.peak_rss_mb(server.pids())
    return {"warmup": warm, "select_k3_8_clients": measured, "server_peak_rss_mb": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", default="/tmp/bench-ads")
    parser.add_argument("--ads", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--port", type=int, default=8761)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip-http", action="store_true")
    args = parser.parse_args()

    harness.prepare_state(args.state_dir, [], data_dir=str(REPO_ROOT.parent / "shared" / "data"))
    harness.setup_django(args.state_dir)
    import torch

    torch.set_num_threads(1)  # as the web workers run (BACKBONE_TORCH_THREADS=1)
    slot_name = seed_ads(args.ads, args.seed)
    report = {
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__},
        "scoring": bench_scoring(slot_name, args.calls),
        "bench_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if not args.skip_http:
        from django.db import connections

        connections.close_all()
        report["http"] = bench_http(args.state_dir, slot_name, args.requests, args.port, args.seed)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
