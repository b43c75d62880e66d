"""The issue's decompression bombs against the live server: refused at once, the server responsive."""

import asyncio
import time

import httpx
import pytest

from tests.uploads import docx_bomb

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db]
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


async def test_docx_bombs_get_413_at_once_and_healthz_stays_responsive(live_worlds, asgi_server):
    acme = live_worlds["acme"]
    bombs = {"40MB.docx": docx_bomb(40), "200MB.docx": docx_bomb(200)}
    latencies: list[float] = []
    uploading = True

    async def probe(http: httpx.AsyncClient) -> None:
        while uploading:
            started = time.perf_counter()
            assert (await http.get("/healthz")).status_code == 200
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(0.05)

    headers = {"Host": f"acme.localhost:{asgi_server.port}", "Authorization": f"Token {acme.member_token}"}
    async with httpx.AsyncClient(base_url=asgi_server.url, headers=headers, timeout=60) as http:
        prober = asyncio.create_task(probe(http))
        results = {}
        for name, data in bombs.items():
            started = time.perf_counter()
            response = await http.post("/api/documents/", files={"file": (name, data, DOCX)})
            results[name] = (response.status_code, response.json()["error"]["code"], time.perf_counter() - started)
        uploading = False
        await prober

    for status, code, elapsed in results.values():
        assert (status, code) == (413, "payload_too_large")
        assert elapsed < 3  # parsed in the request, they took 31 s and 164 s
    assert latencies and max(latencies) < 1.0  # /healthz stalled for 11 s before
