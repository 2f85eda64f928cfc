"""Benchmark the chatbot: ``POST /api/v1/chat/messages`` over HTTP with 8 concurrent clients.

``python bench/chatbot.py [--state-dir /tmp/bench-chatbot] [--requests 400] [--port 8771]``

1. Prepares its own STATE_DIR (migrate, bootstrap, import BANKING77) and serves its 77 intents
   as prototypes (mean of 16 examples each) on the active backbone version: the same serving
   path as a trained head plus taught intents (one encode, one matrix product, a few queries).
2. In-process: ``answer_message`` (encode + classify + store) and, in the same run, the encoder
   alone on the same texts: the ONNX Runtime copy that chat serves with, and the PyTorch encoder.
3. HTTP: gunicorn (2 workers x 4 threads) on that STATE_DIR; real BANKING77 messages, then the
   health endpoint (which also encodes one text and queries the database) as the baseline, then
   bad inputs (empty, 100,000 characters, binary junk, foreign scripts, emoji) whose status codes
   are counted: 400 or 200, never 5xx. Then the same messages on a server with
   ``BACKBONE_ONNX_SERVING=false`` (the PyTorch encoder), for the ratio.

Prints one JSON object: latencies (p50/p99 ms), the ratio to the baseline, peak resident memory.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench import harness  # noqa: E402

DATA_DIR = REPO_ROOT.parent / "shared" / "data"
BAD_INPUTS = [
    {"text": "", "session": "bad"},
    {"text": "x" * 100_000, "session": "bad"},
    {"text": "\x00\x01\x02\xff junk", "session": "bad"},
    {"text": "¿Dónde está mi tarjeta nueva?", "session": "bad"},
    {"text": "我的银行卡什么时候到", "session": "bad"},
    {"text": "🙂💳❓🔥", "session": "bad"},
    {"text": "hi", "session": ""},
    {"session": "bad"},
]


def read_messages(n: int, seed: int) -> list[str]:
    with open(DATA_DIR / "banking77" / "train.csv", newline="", encoding="utf-8") as fh:
        texts = [row["text"].strip() for row in csv.DictReader(fh)]
    return random.Random(seed).sample(texts, n)


def prepare_prototypes() -> int:
    """Serve every imported intent from 16 examples on the active version (idempotent)."""
    from chatbot import services

    services.PROTOTYPE_EXAMPLES = 16
    return services.refresh_prototypes()


def bench_in_process(texts: list[str]) -> dict:
    from backbone.services import active_encoder, active_serving_encoder
    from chatbot import services

    _, encoder = active_encoder()
    _, onnx = active_serving_encoder()
    services.answer_message(text=texts[0], session="bench-warm")
    calls = {
        "answer_message": lambda text, i: services.answer_message(text=text, session=f"bench-{i % 20}"),
        "encode_onnx": lambda text, i: onnx.encode([text]),
        "encode_pytorch": lambda text, i: encoder.encode([text]),
    }
    timings: dict[str, list[float]] = {name: [] for name in calls}
    for i, text in enumerate(texts):
        for name, call in calls.items():
            started = time.perf_counter()
            call(text, i)
            timings[name].append((time.perf_counter() - started) * 1000)
    result = {name: harness.percentiles(values) for name, values in timings.items()}
    result["ratio_p50_answer_to_encode_onnx"] = round(
        result["answer_message"]["p50_ms"] / result["encode_onnx"]["p50_ms"], 2
    )
    result["ratio_p50_encode_onnx_to_pytorch"] = round(
        result["encode_onnx"]["p50_ms"] / result["encode_pytorch"]["p50_ms"], 2
    )
    return result


def bench_http(state_dir: str, texts: list[str], port: int) -> dict:
    chat = [("POST", "/api/v1/chat/messages", {"text": t, "session": f"s{i % 50}"}) for i, t in enumerate(texts)]
    health = [("GET", "/api/v1/health", None)] * len(texts)
    bad = [("POST", "/api/v1/chat/messages", body) for body in BAD_INPUTS] * 5
    with harness.serve(state_dir, port, workers=2, env={"BACKBONE_TORCH_THREADS": "1"}) as server:
        headers = {"X-Api-Key": server.storefront_key}
        harness.load_test(server.base_url, chat[:32], headers, concurrency=8)  # warm every worker
        measured = harness.load_test(server.base_url, chat, headers, concurrency=8)
        baseline = harness.load_test(server.base_url, health, headers, concurrency=8)
        bad_inputs = harness.load_test(server.base_url, bad, headers, concurrency=8)
        peak = harness.peak_rss_mb(server.pids())
    env = {"BACKBONE_TORCH_THREADS": "1", "BACKBONE_ONNX_SERVING": "false"}
    with harness.serve(state_dir, port, workers=2, env=env) as server:
        headers = {"X-Api-Key": server.storefront_key}
        harness.load_test(server.base_url, chat[:32], headers, concurrency=8)
        pytorch_encoder = harness.load_test(server.base_url, chat, headers, concurrency=8)
    return {
        "chat_messages_8_clients": measured,
        "baseline_health_8_clients": baseline,
        "ratio_p99_to_health": round(measured["p99_ms"] / baseline["p99_ms"], 2),
        "chat_messages_8_clients_pytorch_encoder": pytorch_encoder,
        "ratio_p99_onnx_to_pytorch_encoder": round(measured["p99_ms"] / pytorch_encoder["p99_ms"], 2),
        "bad_inputs": bad_inputs,
        "server_peak_rss_mb": peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", default="/tmp/bench-chatbot")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--port", type=int, default=8771)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip-http", action="store_true")
    args = parser.parse_args()

    harness.prepare_state(args.state_dir, ["banking77"], data_dir=str(DATA_DIR))
    harness.setup_django(args.state_dir)
    import torch

    written = prepare_prototypes()
    texts = read_messages(max(args.requests, args.calls), args.seed)
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
        },
        "prototypes_written": written,
        "in_process": bench_in_process(texts[: args.calls]),
        "bench_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if not args.skip_http:
        from django.db import connections

        connections.close_all()
        report["http"] = bench_http(args.state_dir, texts[: args.requests], args.port)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
