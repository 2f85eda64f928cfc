"""Benchmark the packaged encoder: products embedded per second and single-query latency.

Standalone (no Django): ``python bench/encode.py [--data-dir DIR] [--threads N]``. Reads real Home
Depot product titles and queries, prints one JSON object with the machine (CPUs, torch threads,
torch version, device), the figures (medians of repeats) and peak resident memory. On the CPU it
also measures, in the same run and with the same threads, the ONNX Runtime copy that the web
processes serve with (``backbone.onnx_encoder``): single-query latency, its ratio to PyTorch's, and
the cosine of its vectors to PyTorch's.
With the defaults (1,000 titles and 300 queries, 3 repeats each) it runs in about a minute on
two idle CPU cores, about two when they are shared.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform as std_platform  # the repository's platform/ folder is not a package
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from backbone.encoder import Encoder, packaged_model_path  # noqa: E402

DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "homedepot_search"


def read_column(path: Path, column: str, limit: int) -> list[str]:
    """Return the first ``limit`` values of ``column`` in a UTF-8 CSV file."""
    with open(path, newline="", encoding="utf-8") as fh:
        values = [row[column] for _, row in zip(range(limit), csv.DictReader(fh), strict=False)]
    if len(values) < limit:
        raise SystemExit(f"{path} has only {len(values)} rows; asked for {limit}")
    return values


def products_per_second(encoder: Encoder, titles: list[str], batch_size: int, repeats: int) -> list[float]:
    """Return the throughput of each of ``repeats`` full passes over ``titles``."""
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        encoder.encode(titles, batch_size=batch_size)
        rates.append(len(titles) / (time.perf_counter() - started))
    return rates


def query_latencies_ms(encoder: Encoder, queries: list[str]) -> list[float]:
    """Return the latency in milliseconds of encoding each query alone (as a search request does)."""
    latencies = []
    for query in queries:
        started = time.perf_counter()
        encoder.encode([query], batch_size=1)
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def onnx_figures(encoder: Encoder, queries: list[str], repeats: int, torch_p50: float) -> dict:
    """The serving encoder (ONNX Runtime, same threads) on the same queries: latency, ratio, cosine."""
    import tempfile

    from backbone.onnx_encoder import OnnxEncoder

    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        onnx = OnnxEncoder.from_encoder(encoder, Path(folder) / "encoder.onnx", threads=torch.get_num_threads())
        export_seconds = time.perf_counter() - started
    onnx.encode(queries[:32])  # warm-up
    runs = [query_latencies_ms(onnx, queries) for _ in range(repeats)]
    p50 = statistics.median(float(np.percentile(run, 50)) for run in runs)
    cosines = (onnx.encode(queries) * encoder.encode(queries)).sum(axis=1)
    return {
        "export_and_load_seconds": round(export_seconds, 2),
        "p50_median": round(p50, 2),
        "p99_median": round(statistics.median(float(np.percentile(run, 99)) for run in runs), 2),
        "p50_ratio_to_pytorch": round(p50 / torch_p50, 3),
        "cosine_to_pytorch_min": round(float(cosines.min()), 6),
    }


def peak_rss_mib() -> float:
    """Return the peak resident memory of this process in MiB (ru_maxrss is KiB on Linux)."""
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if sys.platform == "darwin":  # bytes there
        peak_kib /= 1024
    return round(peak_kib / 1024, 1)


def parse_args() -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--products", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--threads", type=int, default=0, help="torch and ONNX Runtime threads; 0: torch's default")
    return parser.parse_args()


def main() -> None:
    """Run the benchmark and print its JSON report."""
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    titles = read_column(args.data_dir / "products.csv", "product_title", args.products)
    queries = read_column(args.data_dir / "queries.csv", "query", args.queries)
    started = time.perf_counter()
    encoder = Encoder.load(packaged_model_path(), device=args.device)
    load_seconds = time.perf_counter() - started
    encoder.encode(titles[:64], batch_size=args.batch_size)  # warm-up: first calls allocate and tune kernels

    rates = products_per_second(encoder, titles, args.batch_size, args.repeats)
    query_runs = [query_latencies_ms(encoder, queries) for _ in range(args.repeats)]
    p50 = statistics.median(float(np.percentile(run, 50)) for run in query_runs)
    p99 = statistics.median(float(np.percentile(run, 99)) for run in query_runs)
    report = {
        "benchmark": "encoder",
        "model": "packaged all-MiniLM-L6-v2",
        "dtype": "fp32",
        "device": str(encoder.device),
        "cpu_count": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),  # other work on the machine skews the figures
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "python": std_platform.python_version(),
        "data": str(args.data_dir),
        "load_seconds": round(load_seconds, 2),
        "products": {
            "n": len(titles),
            "batch_size": args.batch_size,
            "repeats": args.repeats,
            "per_second_median": round(statistics.median(rates), 1),
            "per_second_runs": [round(rate, 1) for rate in rates],
        },
        "query_latency_ms": {
            "n": len(queries),
            "repeats": args.repeats,
            "p50_median": round(p50, 2),
            "p99_median": round(p99, 2),
        },
        "onnx_serving_query_latency_ms": onnx_figures(encoder, queries, args.repeats, p50)
        if encoder.device.type == "cpu"
        else None,
        "peak_rss_mib": peak_rss_mib(),
        "rss_now_mib": round(psutil.Process().memory_info().rss / 2**20, 1),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
