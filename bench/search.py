"""Benchmark the search API over HTTP: hybrid search against the PostgreSQL full-text-only path.

``python bench/search.py [--data-dir ../shared/data] [--state-dir /tmp/state-search-bench]``

Prepares its own STATE_DIR (the 54,667 Home Depot products, their queries and labels), gives the
products deterministic synthetic prices and stock (the dataset has titles only, and the
filters need something to filter on), runs ``manage.py train search --inline`` (a short fine-tune:
``--train-steps`` steps of the search task, then the products re-embedded with the new version
and the ranker trained for it, all activated together), starts gunicorn (2 workers x 4 threads)
and sends real Home Depot queries from 8 concurrent keep-alive clients:

- ``plain``: ``q`` only, facets off; ``filtered``: price range + in stock, facets off;
  ``faceted``: ``q`` with facets on (category, brand, price buckets over the match set);
- the same three with ``mode=lexical`` (PostgreSQL full text only: no encoding, no trigram or
  dense leg, no ranker), measured in the same run for the ratio.

Prints one JSON object: p50/p95/p99 per kind and path, ratios, peak resident memory of the server.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import resource
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.harness import PYTHON, _env, load_test, manage, peak_rss_mb, prepare_state, serve  # noqa: E402

DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"

SETUP = r"""
from django.db import connection

with connection.cursor() as cursor:
    # Synthetic, deterministic prices and stock: the dataset has none, the filters need them.
    cursor.execute(
        "UPDATE catalog_product SET price = mod(abs(hashtext(sku)), 50000) / 100.0 + 1, "
        "in_stock = mod(abs(hashtext(sku || 's')), 10) <> 0 WHERE price IS NULL"
    )
"""


def read_queries(path: Path, n: int, seed: int) -> list[str]:
    with open(path, newline="", encoding="utf-8") as fh:
        queries = [row["query"] for row in csv.DictReader(fh)]
    return random.Random(seed).sample(queries, n)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    parser.add_argument("--state-dir", default="/tmp/state-search-bench")
    parser.add_argument("--queries", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--train-steps", type=int, default=50, help="fine-tune steps of the search task")
    parser.add_argument("--ranker-queries", type=int, default=1500)
    parser.add_argument("--port", type=int, default=8731)
    return parser.parse_args()


def prepare_and_train(args: argparse.Namespace, env: dict[str, str]) -> str:
    """Import Home Depot into the state folder, give it prices and stock, and train search there."""
    prepare_state(args.state_dir, ["homedepot"], args.data_dir)
    setup = subprocess.run(
        [PYTHON, "manage.py", "shell", "-c", SETUP], cwd=REPO_ROOT, env=_env(args.state_dir, env),
        capture_output=True, text=True,
    )  # fmt: skip
    if setup.returncode != 0:
        raise SystemExit(setup.stderr[-3000:])
    return manage(
        args.state_dir, "train", "search", "--inline",
        "--set", f"search_max_steps={args.train_steps}",
        "--set", f"search_ranker_queries={args.ranker_queries}",
        env=env,
    ).strip()  # fmt: skip


def request_kinds(queries: list[str]) -> dict[str, list[str]]:
    """The three request shapes measured: plain, filtered (price range, in stock) and faceted."""
    rng = random.Random(5)

    def path(query: str, **extra: str) -> str:
        return "/api/v1/search?" + urllib.parse.urlencode({"q": query, **extra})

    return {
        "plain": [path(q, facets="false") for q in queries],
        "filtered": [
            path(q, facets="false", min_price=str(low), max_price=str(low + 100), in_stock="true")
            for q, low in ((q, rng.choice([0, 20, 50, 100, 200])) for q in queries)
        ],
        "faceted": [path(q) for q in queries],
    }


def measure(args: argparse.Namespace, kinds: dict[str, list[str]], env: dict[str, str]) -> tuple[dict, float]:
    """Load-test each kind in hybrid and lexical mode against one server; return results and peak RSS."""
    results: dict[str, dict] = {}
    with serve(args.state_dir, args.port, workers=2, env=env) as server:
        headers = {"X-Api-Key": server.storefront_key}
        # Warm up each worker: load the encoder, the ranker and the vocabulary.
        load_test(server.base_url, [("GET", p, None) for p in kinds["faceted"][:40]], headers, concurrency=8)
        for kind, paths in kinds.items():
            for mode in ("hybrid", "lexical"):
                suffix = "" if mode == "hybrid" else "&mode=lexical"
                requests = [("GET", p + suffix, None) for p in paths]
                results[f"{kind}/{mode}"] = load_test(
                    server.base_url, requests, headers, concurrency=8, repeats=args.repeats
                )
        return results, peak_rss_mb(server.pids())


def main() -> None:
    args = parse_args()
    env = {"BACKBONE_TORCH_THREADS": "1"}
    started = time.monotonic()
    trained = prepare_and_train(args, env)
    setup_seconds = round(time.monotonic() - started, 1)
    queries = read_queries(Path(args.data_dir) / "homedepot_search" / "queries.csv", args.queries, seed=3)
    kinds = request_kinds(queries)
    results, peak = measure(args, kinds, env)
    ratios = {
        kind: {
            f"{q}_hybrid_over_lexical": round(
                results[f"{kind}/hybrid"][f"{q}_ms"] / results[f"{kind}/lexical"][f"{q}_ms"], 2
            )
            for q in ("p50", "p99")
        }
        for kind in kinds
    }
    report = {
        "bench": "search",
        "products": 54667,
        "concurrency": 8,
        "server": "gunicorn config.wsgi, 2 workers x 4 threads, BACKBONE_TORCH_THREADS=1",
        "queries": args.queries,
        "repeats": args.repeats,
        "trained": trained,
        "setup_seconds": setup_seconds,
        "results": results,
        "ratios": ratios,
        "peak_rss_mb": {"server": peak, "bench": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
