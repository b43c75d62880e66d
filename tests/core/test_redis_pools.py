"""Redis connections are bounded per process: the cache, the channel layer and the stream log each
keep at most REDIS_MAX_CONNECTIONS, through a burst of hundreds of concurrent operations and of
clients going away mid-command, against a real redis-server."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import Counter

import pytest
import redis

from tests.processes import ROOT, wait_until
from tests.redis_server import REDIS_AVAILABLE, RedisServer

pytestmark = pytest.mark.skipif(not REDIS_AVAILABLE, reason="redis-server is installed by tests/run.sh")

MAX_CONNECTIONS = 8
BURST = 300

# One process of Strata under a burst: threads using the cache (Django gives each its own cache
# object), WebSocket-like clients joining, messaging and leaving groups or vanishing while waiting,
# and answer followers reading the stream log, half of them gone mid-read.
BURST_SCRIPT = f"""
import asyncio, threading, django
django.setup()
from django.core.cache import cache
from channels.layers import get_channel_layer
from ai.chat.stream_log import stream_log

BURST = {BURST}
MAX = {MAX_CONNECTIONS}
barrier = threading.Barrier(BURST)
done = []

def cache_user(n):
    barrier.wait()
    cache.set(f"burst:{{n}}", n, 60)
    done.append(cache.get(f"burst:{{n}}") == n)

threads = [threading.Thread(target=cache_user, args=(n,)) for n in range(BURST)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print("cache", sum(done), flush=True)

async def sockets():
    layer = get_channel_layer()
    async def socket(n):
        channel = await layer.new_channel()
        await layer.group_add(f"burst{{n % 10}}", channel)
        await layer.group_send(f"burst{{n % 10}}", {{"type": "chat.token", "n": n}})
        if n % 2:
            try:  # the client goes away while its consumer waits for a message
                await asyncio.wait_for(layer.receive(await layer.new_channel()), 0.05)
            except TimeoutError:
                pass
        await layer.group_discard(f"burst{{n % 10}}", channel)
        return True
    return sum(await asyncio.gather(*(socket(n) for n in range(BURST))))

print("channels", asyncio.run(sockets()), flush=True)

async def followers():
    log = stream_log()
    async def follower(n):
        if n % 2:
            try:  # the follower's client disconnects mid-read
                await asyncio.wait_for(log.read(f"burst:{{n}}", after=0, wait=1.0), 0.05)
            except TimeoutError:
                pass
        return await log.info(f"burst:{{n}}") is None
    found = sum(await asyncio.gather(*(follower(n) for n in range(BURST))))
    # Then more followers than the pool holds, each blocked half a second in XREAD: the pool's
    # named connections stay open long enough for a sampler on a busy machine to see them (the
    # burst above is over in a few milliseconds).
    await asyncio.gather(*(log.read(f"burst:held{{n}}", after=0, wait=0.5) for n in range(MAX + 4)))
    return found

print("stream_log", asyncio.run(followers()), flush=True)
"""


class ClientSampler:
    """Polls the server's CLIENT LIST and keeps the largest count seen per client name."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url, client_name="sampler")
        self.peak: Counter[str] = Counter()
        self.peak_total = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            names = Counter(client.get("name", "") for client in self.client.client_list())
            del names["sampler"]
            # A connection has no name for the moment between its connect and its CLIENT SETNAME (a
            # burst of reconnects shows several such): the bound is on the pools' named connections.
            ours = sum(count for name, count in names.items() if name.startswith("strata-"))
            self.peak_total = max(self.peak_total, ours)
            for name, count in names.items():
                self.peak[name] = max(self.peak[name], count)
            self.stop.wait(0.005)

    def __enter__(self) -> ClientSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        self.thread.join(10)
        self.client.close()


def test_a_burst_of_operations_and_disconnects_keeps_each_pool_within_its_bound():
    with RedisServer() as server, ClientSampler(server.url) as sampler:
        result = subprocess.run(
            [sys.executable, "-c", BURST_SCRIPT],
            cwd=ROOT,
            env={
                **os.environ,
                "DJANGO_SETTINGS_MODULE": "config.settings",
                "REDIS_URL": server.url,
                "REDIS_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
                "REDIS_POOL_TIMEOUT": "30",
            },
            capture_output=True,
            text=True,
            timeout=240,
        )
        # The process is gone, and so are its connections (once the server has seen them close).
        # (The sampler's own client may hold two pooled connections of its own: count Strata's, by name.)
        wait_until(
            lambda: not [c for c in sampler.client.client_list() if c.get("name", "").startswith("strata-")],
            timeout=30,
            what="the connections to close",
        )

    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["cache", str(BURST), "channels", str(BURST), "stream_log", str(BURST)]
    assert sampler.peak_total <= 3 * MAX_CONNECTIONS, sampler.peak
    for name in ("strata-cache", "strata-channels", "strata-stream-log"):
        assert 0 < sampler.peak[name] <= MAX_CONNECTIONS, sampler.peak
