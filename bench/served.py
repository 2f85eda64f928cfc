"""Measure what a storefront gets: held-out cases sent through the public REST API of a running platform.

    python bench/served.py --url http://127.0.0.1:8000 --key KEY \\
        [--homedepot SPLIT/test] [--movielens SPLIT/test --movielens-train SPLIT/train] \\
        [--online-retail SPLIT/test --online-retail-train SPLIT/train] [--intents SPLIT/test/test.csv] \\
        [--limit N] [--seed 7]

The platform is one that imported the *train* side of each split (``manage.py split_dataset NAME
...``) and ran ``manage.py train``. Prints one JSON object:

- search: NDCG@10 of ``GET /api/v1/search?q=&page_size=10`` (gain 2^(rel-1)-1, unjudged 0), of a
  tantivy BM25 (``en_stem``) over the same titles in this run, their ratio, and NDCG@10 with one
  random character edit per query;
- recommend: per dataset, NDCG@10 / HR@10 of ``GET /api/v1/recommend/customers/<id>?k=30`` on each
  customer's held-out last rating or basket (items the customer already has in train dropped),
  and the share of personalised answers (``fallback`` null);
- chatbot: accuracy and ECE (15 bins) of ``POST /api/v1/chat/messages`` (null intent = out of scope);
- latency: p50/p99 of each kind of call (also suggest on the queries' first 6 characters, similar and
  bought-together for a product of each of the first 200 customers), each followed by the HTTP
  floor (``GET /api/v1/products?page_size=1``), and their ratios to the floor's p50.
"""

from __future__ import annotations

import argparse
import csv
import html
import json
import math
import random
import statistics
import sys
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backbone.metrics import ndcg_at_k  # noqa: E402 (pure functions, no Django)

SIDE_CALLS = 200  # suggest, similar and bought-together calls timed beside the measured ones


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


FLOOR = "/api/v1/products?page_size=1"  # the HTTP floor: same server, same auth, one small query


class Api:
    """The storefront's view of the platform: JSON over HTTP with the storefront key.

    Each call is timed under its ``kind`` and followed by a timed call of the HTTP floor
    (:data:`FLOOR`), so the latencies of a run can be read as ratios to the floor of the same moment.
    """

    def __init__(self, url: str, key: str):
        self.url, self.key = url.rstrip("/"), key
        self.timings: dict[str, list[float]] = defaultdict(list)

    def _send(self, path: str, body: dict | None) -> tuple[dict, float]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url + path, data=data, headers={"X-Api-Key": self.key, "Content-Type": "application/json"}
        )
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = response.read()
        return json.loads(answer), (time.perf_counter() - started) * 1000

    def call(self, path: str, body: dict | None = None, kind: str = "") -> dict:
        answer, ms = self._send(path, body)
        self.timings[kind or path.split("?")[0]].append(ms)
        self.timings["floor"].append(self._send(FLOOR, None)[1])
        return answer

    def latency_report(self) -> dict:
        """p50/p99 (ms) per kind of call, and their ratios to the floor's p50."""
        floor = statistics.median(self.timings["floor"])
        report = {}
        for kind, values in sorted(self.timings.items()):
            ordered = sorted(values)
            p50, p99 = statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
            report[kind] = {"n": len(ordered), "p50_ms": round(p50, 1), "p99_ms": round(p99, 1),
                            "p50_x_floor": round(p50 / floor, 2), "p99_x_floor": round(p99 / floor, 2)}  # fmt: skip
        return report


def typo(query: str, rng: random.Random) -> str:
    """One random character edit (delete, insert, replace or swap) inside a word of 4+ letters."""
    words = [i for i, w in enumerate(query.split()) if len(w) >= 4]
    if not words:
        return query
    parts = query.split()
    i = rng.choice(words)
    w, pos = parts[i], rng.randrange(1, len(parts[i]) - 1)
    letter = rng.choice("abcdefghijklmnopqrstuvwxyz")
    parts[i] = rng.choice(
        [
            w[:pos] + w[pos + 1 :],
            w[:pos] + letter + w[pos:],
            w[:pos] + letter + w[pos + 1 :],
            w[:pos] + w[pos + 1] + w[pos] + w[pos + 2 :],
        ]
    )
    return " ".join(parts)


def bm25_rankings(titles: dict[str, str], queries: list[str]) -> list[list[str]]:
    """Rank ``titles`` (sku -> title) for each query with tantivy BM25 and the en_stem analyser."""
    import tantivy

    builder = tantivy.SchemaBuilder()
    builder.add_text_field("title", stored=False, tokenizer_name="en_stem")
    builder.add_text_field("sku", stored=True, tokenizer_name="raw")
    index = tantivy.Index(builder.build())
    writer = index.writer(heap_size=100_000_000, num_threads=1)  # one segment layout run after run
    for sku, title in titles.items():
        writer.add_document(tantivy.Document(sku=sku, title=title))
    writer.commit()
    index.reload()
    searcher = index.searcher()
    out = []
    for query in queries:
        words = " ".join("".join(ch if ch.isalnum() else " " for ch in query).split())
        if not words:
            out.append([])
            continue
        parsed = index.parse_query(words, ["title"])
        hits = searcher.search(parsed, 1000).hits
        tied = [(score, address) for score, address in hits if len(hits) <= 10 or score >= hits[9][0]]
        ranked = sorted((-score, searcher.doc(address)["sku"][0]) for score, address in tied)
        out.append([sku for _, sku in ranked[:10]])  # ties by sku: the same baseline every run
    return out


def measure_search(api: Api, folder: Path, limit: int | None, seed: int) -> dict:
    """NDCG@10 of the served search, of BM25 on the same titles, and of the served search with typos."""
    judged: dict[str, dict[str, float]] = defaultdict(dict)
    for row in read_csv(folder / "labels.csv"):
        judged[row["query_id"]][row["product_uid"]] = float(row["relevance"])
    queries = {r["query_id"]: r["query"] for r in read_csv(folder / "queries.csv") if r["query_id"] in judged}
    ids = sorted(queries)
    random.Random(seed).shuffle(ids)
    ids = ids[:limit] if limit else ids
    rng = random.Random(seed)

    def served(text: str, kind: str = "search") -> list[str]:
        answer = api.call("/api/v1/search?" + urllib.parse.urlencode({"q": text, "page_size": 10}), kind=kind)
        return [hit["sku"] for hit in answer["results"]]

    # the platform stores titles unescaped (``&amp;`` -> ``&``): BM25 gets the same text
    titles = {r["product_uid"]: html.unescape(r["product_title"]) for r in read_csv(folder / "products.csv")}
    clean = [ndcg_at_k(served(queries[q]), judged[q]) for q in ids]
    typos = [ndcg_at_k(served(typo(queries[q], rng), "search (one typo)"), judged[q]) for q in ids]
    for q in ids[:SIDE_CALLS]:  # what a shopper types before the whole query: its first word and a half
        api.call("/api/v1/search/suggest?" + urllib.parse.urlencode({"q": queries[q][:6]}), kind="suggest")
    bm25 = [ndcg_at_k(r, judged[q]) for q, r in zip(ids, bm25_rankings(titles, [queries[q] for q in ids]))]
    mean = lambda xs: round(sum(xs) / max(1, len(xs)), 4)  # noqa: E731
    return {
        "n": len(ids),
        "ndcg@10": mean(clean),
        "bm25_ndcg@10": mean(bm25),
        "ratio_to_bm25": round(mean(clean) / max(1e-9, mean(bm25)), 3),
        "typo_ndcg@10": mean(typos),
        "typo_ratio": round(mean(typos) / max(1e-9, mean(clean)), 3),
    }


def held_out_units(dataset: str, test: Path, train: Path) -> dict[str, tuple[set[str], set[str]]]:
    """customer id -> (held-out skus, skus the customer already has in train)."""
    targets, seen = defaultdict(set), defaultdict(set)
    if dataset == "movielens":
        for row in read_csv(test / "ratings.csv"):
            targets[f"ml-{row['userId']}"].add(f"ml-{row['movieId']}")
        for row in read_csv(train / "ratings.csv"):
            seen[f"ml-{row['userId']}"].add(f"ml-{row['movieId']}")
    else:
        for folder, into in ((test, targets), (train, seen)):
            for row in read_csv(folder / "transactions.csv"):
                if row["CustomerID"].strip() and not row["InvoiceNo"].startswith("C"):
                    into[f"or-{int(float(row['CustomerID']))}"].add(f"or-{row['StockCode'].strip().upper()}")
    return {c: (t - seen[c], seen[c]) for c, t in targets.items() if t - seen[c]}


def measure_recommend(api: Api, dataset: str, test: Path, train: Path, limit: int | None, seed: int) -> dict:
    """NDCG@10 (binary gain), HR@10 and the personalised share of the served for-you answers."""
    units = held_out_units(dataset, test, train)
    customers = sorted(units)
    random.Random(seed).shuffle(customers)
    customers = customers[:limit] if limit else customers
    ndcgs, hits, personal = [], [], 0
    for customer in customers:
        target, have = units[customer]
        answer = api.call(f"/api/v1/recommend/customers/{urllib.parse.quote(customer)}?k=30", kind="for-you")
        personal += answer.get("fallback") is None
        if len(ndcgs) < SIDE_CALLS and have:
            sku = urllib.parse.quote(sorted(have)[0])
            api.call(f"/api/v1/recommend/products/{sku}/similar?k=10", kind="similar")
            api.call(f"/api/v1/recommend/products/{sku}/bought-together?k=10", kind="bought-together")
        ranking = [item["sku"] for item in answer["items"] if item["sku"] not in have][:10]
        gains = [1.0 if sku in target else 0.0 for sku in ranking]
        ideal = sum(1 / math.log2(i + 2) for i in range(min(len(target), 10)))
        ndcgs.append(sum(g / math.log2(i + 2) for i, g in enumerate(gains)) / ideal)
        hits.append(float(any(gains)))
    n = max(1, len(customers))
    return {
        "n": len(customers),
        "ndcg@10": round(sum(ndcgs) / n, 4),
        "hr@10": round(sum(hits) / n, 4),
        "personalised": round(personal / n, 4),
    }


def measure_chat(api: Api, path: Path, limit: int | None, seed: int) -> dict:
    """Accuracy and 15-bin ECE of the served intents (label ``oos`` or empty = out of scope), with
    in-scope accuracy and out-of-scope recall when the file has out-of-scope rows (CLINC150)."""
    rows = read_csv(path)
    random.Random(seed).shuffle(rows)
    rows = rows[:limit] if limit else rows
    label_key = "category" if "category" in rows[0] else "intent"
    confidences, correct, truths = [], [], []
    for i, row in enumerate(rows):
        answer = api.call("/api/v1/chat/messages", {"text": row["text"], "session": f"served-{i}"}, kind="chat")
        truth = row[label_key] if row[label_key] not in ("oos", "") else None
        confidences.append(answer["confidence"])
        correct.append(answer["intent"] == truth)
        truths.append(truth)
    bins = [[] for _ in range(15)]
    for conf, ok in zip(confidences, correct):
        bins[min(14, int(conf * 15))].append((conf, ok))
    ece = sum(
        len(b) / len(rows) * abs(sum(c for c, _ in b) / len(b) - sum(o for _, o in b) / len(b)) for b in bins if b
    )
    report = {"n": len(rows), "accuracy": round(sum(correct) / len(rows), 4), "ece": round(ece, 4)}
    oos = [ok for ok, truth in zip(correct, truths) if truth is None]
    if oos:
        in_scope = [ok for ok, truth in zip(correct, truths) if truth is not None]
        report.update(
            in_scope_accuracy=round(sum(in_scope) / len(in_scope), 4), oos_recall=round(sum(oos) / len(oos), 4)
        )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--key", required=True)
    for name in ("homedepot", "movielens", "movielens-train", "online-retail", "online-retail-train", "intents"):
        parser.add_argument(f"--{name}", type=Path)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    api, report = Api(args.url, args.key), {}
    if args.homedepot:
        report["search"] = measure_search(api, args.homedepot, args.limit, args.seed)
    if args.movielens:
        report["recommend_movielens"] = measure_recommend(
            api, "movielens", args.movielens, args.movielens_train, args.limit, args.seed
        )
    if args.online_retail:
        report["recommend_online_retail"] = measure_recommend(
            api, "online_retail", args.online_retail, args.online_retail_train, args.limit, args.seed
        )
    if args.intents:
        report["chatbot"] = measure_chat(api, args.intents, args.limit, args.seed)
    report["latency"] = api.latency_report()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
