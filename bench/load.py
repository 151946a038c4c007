"""Load and soak: concurrent gradio_client users over every named endpoint of the tiny app.

    python bench/load.py                          # 8 users for 10 minutes
    python bench/load.py --users 4 --seconds 60   # shorter

Loopback only. Reports requests, failures (must be 0), p50/p95 per endpoint, the server's memory
over time (growth after warm-up should stay under 10 %), and what a client sees when the queue is
full (a clear "try again" message within seconds, not a hang). Endpoints whose valid request the app
refuses on its own (e.g. regenerate with no chat yet) are listed and left out of the mix.
"""
from __future__ import annotations

import argparse
import threading
import time
from collections import defaultdict
from concurrent.futures import as_completed

from serving import AppServer, Endpoint, named_endpoints, p50_p95, rss_mib
from gradio_client import Client

QUEUE_SIZE = 8  # the bench server's PP_MAX_QUEUE, so filling it is quick


def usable_endpoints(client: Client) -> tuple[list[Endpoint], dict[str, str]]:
    """Endpoints with inputs whose valid request succeeds once (this also loads their models)."""
    usable, refused = [], {}
    for endpoint in named_endpoints(client):
        if not endpoint.good:
            continue
        try:
            client.predict(*endpoint.good, api_name=endpoint.name)
            usable.append(endpoint)
        except Exception as error:  # noqa: BLE001 - reported, not raised
            refused[endpoint.name] = str(error)[:120]
    return usable, refused


def user(client: Client, endpoints: list[Endpoint], first: int, deadline: float, results: list) -> None:
    turn = first
    while time.monotonic() < deadline:
        endpoint = endpoints[turn % len(endpoints)]
        turn += 1
        started = time.perf_counter()
        try:
            client.predict(*endpoint.good, api_name=endpoint.name)
            error = None
        except Exception as failure:  # noqa: BLE001 - counted as a failure
            error = str(failure)[:200]
        results.append((endpoint.name, time.perf_counter() - started, error))


def sample_memory(pid: int, stop: threading.Event, samples: list, every: float = 2.0) -> None:
    started = time.monotonic()
    while not stop.wait(every):
        samples.append((time.monotonic() - started, rss_mib(pid)))


def fill_the_queue(client: Client, endpoint: Endpoint, wait: float = 60) -> tuple[int, float, str]:
    """Send twice the queue's size at once: (refused, seconds to the first refusal, its message)."""
    started = time.perf_counter()
    jobs = [client.submit(*endpoint.good, api_name=endpoint.name) for _ in range(2 * QUEUE_SIZE)]
    refused, first, message = 0, float("nan"), ""
    try:
        for done in as_completed([job.future for job in jobs], timeout=wait):  # a Job wraps its future
            if done.exception() is not None:
                refused += 1
                if not message:
                    first, message = time.perf_counter() - started, str(done.exception())[:120]
    except TimeoutError:  # the accepted ones are still running: what matters is the refusals
        pass
    for job in jobs:
        job.cancel()
    return refused, first, message


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--warmup", type=float, default=30, help="seconds of load before the memory baseline")
    args = parser.parse_args()

    server = AppServer(env={"PP_MAX_QUEUE": str(QUEUE_SIZE)})
    try:
        client = Client(server.url, verbose=False)
        endpoints, refused = usable_endpoints(client)
        memory, results, stop = [], [], threading.Event()
        sampler = threading.Thread(target=sample_memory, args=(server.process.pid, stop, memory), daemon=True)
        sampler.start()
        clients = [Client(server.url, verbose=False) for _ in range(args.users)]  # before the load: quick
        deadline = time.monotonic() + args.seconds
        users = [threading.Thread(target=user, args=(clients[index], endpoints, index, deadline, results))
                 for index in range(args.users)]
        for thread in users:
            thread.start()
        for thread in users:
            thread.join()
        stop.set()
        heaviest = max(endpoints, key=lambda e: p50_p95([s for n, s, _ in results if n == e.name] or [0])[0])
        queue_full = fill_the_queue(Client(server.url, verbose=False), heaviest)  # a fresh session
    finally:
        server.stop()

    by_endpoint = defaultdict(list)
    for name, seconds, error in results:
        by_endpoint[name].append((seconds, error))
    failures = [(name, error) for name, _, error in results if error]
    print(f"{args.users} users x {args.seconds:.0f} s over {len(endpoints)} endpoints: "
          f"{len(results)} requests, {len(failures)} failures")
    print("| endpoint | requests | failures | p50 s | p95 s |\n|---|---|---|---|---|")
    for name, calls in sorted(by_endpoint.items()):
        p50, p95 = p50_p95([seconds for seconds, _ in calls])
        print(f"| {name} | {len(calls)} | {sum(1 for _, e in calls if e)} | {p50:.2f} | {p95:.2f} |")
    for name, error in failures[:5]:
        print(f"failure {name}: {error}")
    for name, reason in refused.items():
        print(f"left out {name} (the app refuses its default request: {reason})")
    after_warmup = [rss for at, rss in memory if at >= args.warmup] or [rss for _, rss in memory]
    if after_warmup:
        growth = max(after_warmup) / after_warmup[0] - 1
        print(f"server RSS: {after_warmup[0]:.0f} MiB after warm-up, max {max(after_warmup):.0f} MiB "
              f"({100 * growth:+.1f} %)")
    refusals, first, message = queue_full
    print(f"queue full ({2 * QUEUE_SIZE} at once on {heaviest.name}, queue {QUEUE_SIZE}): {refusals} refused, "
          f"first after {first:.2f} s: {message!r}")


if __name__ == "__main__":
    main()
