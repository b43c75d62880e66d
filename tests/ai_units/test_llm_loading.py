"""The Anthropic SDK (3,300 modules, 1.2 s of CPU) loads only in a process that talks to Claude: a
web process while it warms up, before it reports ready; never a job worker, a ``manage.py``
command, or a platform without a key."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Imports what every process imports (settings, apps, URL confs, the ASGI app, the jobs, the worker
# command), then runs the ASGI lifespan's start-up as uvicorn would and waits until the process
# would report ready.
PROBE = """
import asyncio, json, sys, time
import django
django.setup()
import config.asgi, config.urls_public, config.urls_tenants, config.tasks
import config.management.commands.worker
after_import = "anthropic" in sys.modules
from ai.embedding.embedders import embedder_state
from ai.llm import get_llm_provider
from config.lifespan import Lifespan

async def start():
    inbox = asyncio.Queue()
    sent = []
    async def send(message):
        sent.append(message["type"])
    await inbox.put({"type": "lifespan.startup"})
    task = asyncio.ensure_future(Lifespan()({"type": "lifespan"}, inbox.get, send))
    while not embedder_state()["ready"]:
        await asyncio.sleep(0.05)
    ready = "anthropic" in sys.modules
    await inbox.put({"type": "lifespan.shutdown"})
    await task
    return sent, ready

sent, when_ready = asyncio.run(start())
import psutil
from core.platform.memory import heap_trim
rss_ready = psutil.Process().memory_info().rss
heap_trim()
rss_trimmed = psutil.Process().memory_info().rss
print(json.dumps({"after_import": after_import, "when_ready": when_ready, "sent": sent,
                  "provider": type(get_llm_provider()).__name__, "held_free_mb": (rss_ready - rss_trimmed) / 2**20}))
"""


@functools.cache
def _probe(api_key: str) -> dict:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "ANTHROPIC_API_KEY": api_key}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("api_key", "provider", "loaded_when_ready"),
    [("sk-ant-test", "AnthropicProvider", True), ("", "OfflineProvider", False)],
    ids=["with a key", "offline"],
)
def test_the_sdk_loads_only_when_a_web_process_warms_up_with_a_key(
    api_key: str, provider: str, loaded_when_ready: bool
) -> None:
    seen = _probe(api_key)

    assert seen["after_import"] is False  # workers and commands never pay for it
    assert seen["sent"] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert seen["when_ready"] is loaded_when_ready  # a ready web process has it: no chat waits for it
    assert seen["provider"] == provider


def test_a_warm_web_process_holds_no_freed_heap() -> None:
    """Loading the embedding model frees ~35 MB of parse buffers that malloc would keep for the
    process's life (a web worker held 347 MB instead of 313): the load gives them back."""
    seen = _probe("sk-ant-test")

    assert seen["held_free_mb"] < 8, f"{seen['held_free_mb']:.0f} MB freed but held after warming up"
