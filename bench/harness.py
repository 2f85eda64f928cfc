"""What the HTTP benchmarks share: a prepared state folder, a real server, a concurrent load test.

Used by ``bench/search.py``, ``bench/recommend.py``, ``bench/chatbot.py`` and ``bench/ads.py``.
Each bench runs against its own ``STATE_DIR`` (its own embedded PostgreSQL), so a running
platform is never touched. The server is the production one: gunicorn with ``config.wsgi``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(REPO_ROOT / ".venv" / "bin" / "python") if (REPO_ROOT / ".venv").is_dir() else sys.executable
DATASET_FOLDERS = {
    "homedepot": "homedepot_search",
    "movielens": "movielens_latest_small",
    "online_retail": "online_retail",
    "banking77": "banking77",
    "clinc150": "clinc150",
    "ipinyou": "ipinyou_ctr",
}


def _env(state_dir: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "STATE_DIR": str(state_dir), "PYTHONUNBUFFERED": "1"}
    env.update(extra or {})
    return env


def manage(state_dir: str, *args: str, env: dict[str, str] | None = None) -> str:
    """Run ``manage.py ARGS`` against ``state_dir``; return its stdout (raise on failure)."""
    done = subprocess.run(
        [PYTHON, "manage.py", *args],
        cwd=REPO_ROOT,
        env=_env(state_dir, env),
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


def prepare_state(state_dir: str, datasets: list[str], data_dir: str, limit: int | None = None) -> None:
    """Migrate, bootstrap and import ``datasets`` into ``state_dir`` (each dataset once: a marker file)."""
    Path(state_dir).mkdir(parents=True, exist_ok=True)
    manage(state_dir, "migrate", "--noinput")
    manage(state_dir, "bootstrap_platform")
    for name in datasets:
        marker = Path(state_dir) / f"bench-imported-{name}-{limit or 'all'}"
        if marker.exists():
            continue
        args = ["import_dataset", name, "--data-dir", str(Path(data_dir) / DATASET_FOLDERS.get(name, name))]
        if limit:
            args += ["--limit", str(limit)]
        print(f"importing {name} into {state_dir}", file=sys.stderr)
        manage(state_dir, *args)
        marker.touch()


def create_storefront_key(state_dir: str) -> str:
    """Return the raw secret of a new storefront key in ``state_dir``."""
    code = "from catalog.services import create_storefront_key;print(create_storefront_key(name='bench')[1])"
    return manage(state_dir, "shell", "-c", code).strip().splitlines()[-1]


@dataclass
class Server:
    """A running gunicorn: where it answers, its processes, a storefront key for it."""

    base_url: str
    storefront_key: str
    master: subprocess.Popen

    def pids(self) -> list[int]:
        """The master's pid and its workers' (read from /proc)."""
        pids = [self.master.pid]
        children = Path(f"/proc/{self.master.pid}/task/{self.master.pid}/children")
        if children.exists():
            pids += [int(p) for p in children.read_text().split()]
        return pids


@contextlib.contextmanager
def serve(state_dir: str, port: int, workers: int = 2, env: dict[str, str] | None = None) -> Iterator[Server]:
    """Start gunicorn on 127.0.0.1:``port`` against ``state_dir``; wait for health; stop it on exit."""
    key = create_storefront_key(state_dir)
    log = open(Path(state_dir) / f"bench-web-{port}.log", "w")  # noqa: SIM115 - closed below
    master = subprocess.Popen(
        [
            str(Path(PYTHON).parent / "gunicorn"),
            "config.wsgi",
            "-c",
            "config/gunicorn.conf.py",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
        ],
        cwd=REPO_ROOT,
        env=_env(state_dir, env),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base_url}/api/v1/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if master.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server on port {port} did not become healthy; see {log.name}")
            time.sleep(0.5)
        yield Server(base_url=base_url, storefront_key=key, master=master)
    finally:
        master.send_signal(signal.SIGTERM)
        try:
            master.wait(timeout=30)
        except subprocess.TimeoutExpired:
            master.kill()
        log.close()


def percentiles(values: list[float]) -> dict[str, float]:
    """Median and 99th percentile (milliseconds, as measured) and the count of ``values``."""
    ordered = sorted(values)
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p99_ms": round(_percentile(ordered, 0.99), 2),
        "n": len(ordered),
    }


def setup_django(state_dir: str) -> None:
    """Set up Django in this process against ``state_dir`` (for in-process measurements)."""
    os.environ["STATE_DIR"] = state_dir
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("BACKBONE_TORCH_THREADS", "1")
    import django

    django.setup()


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def _timed_request(
    connection: http.client.HTTPConnection, host: str, port: int, headers: dict[str, str], method: str, path: str, body
) -> tuple[http.client.HTTPConnection, int, float]:
    """Send one request on ``connection``; return (the connection to go on with, status, milliseconds).

    A connection error is status 0, and a fresh connection replaces the broken one.
    """
    payload = json.dumps(body).encode() if body is not None else None
    request_headers = {**headers, "Content-Type": "application/json"} if payload else dict(headers)
    started = time.perf_counter()
    try:
        connection.request(method, path, body=payload, headers=request_headers)
        response = connection.getresponse()
        response.read()
        status = response.status
    except (OSError, http.client.HTTPException):
        connection.close()
        connection = http.client.HTTPConnection(host, port, timeout=60)
        status = 0
    return connection, status, (time.perf_counter() - started) * 1000


def load_test(
    base_url: str,
    requests: list[tuple[str, str, dict | None]],
    headers: dict[str, str],
    concurrency: int = 8,
    repeats: int = 1,
) -> dict:
    """Send every (method, path, json body) ``repeats`` times from ``concurrency`` keep-alive clients.

    Returns latency percentiles in milliseconds over all requests, throughput, and status counts;
    a connection error counts as an error with status 0.
    """
    host, port = base_url.removeprefix("http://").split(":")
    work = [r for _ in range(repeats) for r in requests]
    cursor = iter(range(len(work)))
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: Counter[int] = Counter()

    def client() -> None:
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        while True:
            with lock:
                index = next(cursor, None)
            if index is None:
                break
            connection, status, elapsed = _timed_request(connection, host, int(port), headers, *work[index])
            with lock:
                latencies.append(elapsed)
                statuses[status] += 1
        connection.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    ordered = sorted(latencies)
    errors = sum(count for status, count in statuses.items() if status == 0 or status >= 500)
    return {
        "n": len(ordered),
        "errors": errors,
        "status_counts": {str(k): v for k, v in sorted(statuses.items())},
        "p50_ms": round(statistics.median(ordered), 2) if ordered else float("nan"),
        "p95_ms": round(_percentile(ordered, 0.95), 2),
        "p99_ms": round(_percentile(ordered, 0.99), 2),
        "rps": round(len(ordered) / wall, 1) if wall else 0.0,
    }


def peak_rss_mb(pids: list[int]) -> float:
    """The largest peak resident memory (VmHWM) among ``pids``, in MiB (0 for vanished ones)."""
    peak = 0.0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) / 1024)
        except OSError:
            continue
    return round(peak, 1)
