"""The stream log on both backends: in memory, and in a real Redis shared by two "processes" (two
RedisStreamLog instances with their own state, as two uvicorn processes would have)."""

import asyncio
import time
import uuid

import pytest
import redis

from ai.chat.stream_log import MemoryStreamLog, RedisStreamLog
from tests.redis_server import REDIS_AVAILABLE, RedisServer

pytestmark = pytest.mark.asyncio
needs_redis = pytest.mark.skipif(not REDIS_AVAILABLE, reason="redis-server is installed by tests/run.sh")


@pytest.fixture(scope="module")
def redis_url():
    if not REDIS_AVAILABLE:
        pytest.skip("redis-server is installed by tests/run.sh")
    with RedisServer() as server:
        yield server.url


@pytest.fixture(params=["memory", pytest.param("redis", marks=needs_redis)])
def logs(request, settings):
    """(the producer's log, a reader's log): the same object in memory, two processes' views in Redis."""
    settings.CHAT_RESUME_GRACE_SECONDS = 0.4  # heartbeats and presence every 0.1 s
    if request.param == "memory":
        log = MemoryStreamLog()
        return log, log
    url = request.getfixturevalue("redis_url")
    return RedisStreamLog(url), RedisStreamLog(url)


def key() -> str:
    return f"acme:{uuid.uuid4().int % 10**9}"


def frame(seq: int, kind: str = "token") -> dict:
    return {"type": kind, "token": f"t{seq} ", "seq": seq}


async def read_all(log, name, *, after, until_seq, wait=2.0):
    frames = []
    deadline = time.monotonic() + wait
    while (not frames or frames[-1]["seq"] < until_seq) and time.monotonic() < deadline:
        frames += await log.read(name, after=frames[-1]["seq"] if frames else after, wait=0.2) or []
    return frames


async def test_frames_come_back_in_order_after_the_seq_asked_for(logs):
    producer, reader = logs
    name = key()
    producer.open(name, user_id=7)
    for seq in range(1, 6):
        producer.append(name, frame(seq))

    frames = await read_all(reader, name, after=2, until_seq=5)

    assert [f["seq"] for f in frames] == [3, 4, 5]
    info = await reader.info(name)
    assert (info.user_id, info.last_seq, info.ended) == (7, 5, False)
    await producer.close(name)


async def test_a_waiting_reader_wakes_as_soon_as_a_frame_arrives(logs):
    producer, reader = logs
    name = key()
    producer.open(name, user_id=7)
    producer.append(name, frame(1, "start"))
    await read_all(reader, name, after=0, until_seq=1)

    async def later():
        await asyncio.sleep(0.1)
        producer.append(name, frame(2))

    appending = asyncio.create_task(later())
    started = time.monotonic()
    frames = await reader.read(name, after=1, wait=5)
    await appending

    assert [f["seq"] for f in frames] == [2]
    assert time.monotonic() - started < 1
    await producer.close(name)


async def test_a_log_expires_the_ttl_after_its_answer_ends(logs, settings):
    settings.CHAT_RESUME_TTL_SECONDS = 0.4
    producer, reader = logs
    name = key()
    producer.open(name, user_id=7)
    producer.append(name, frame(1, "start"))
    producer.append(name, frame(2, "done"))
    await producer.close(name)

    info = await reader.info(name)
    assert (info.last_seq, info.ended) == (2, True)
    assert [f["seq"] for f in await reader.read(name, after=0, wait=0.1)] == [1, 2]
    await asyncio.sleep(0.6)
    assert await reader.info(name) is None
    assert await producer.info(name) is None


async def test_a_log_that_never_was_is_unknown(logs):
    _, reader = logs
    assert await reader.info(key()) is None


@needs_redis
async def test_another_process_reads_the_log_and_its_cancel_request_reaches_the_producer(redis_url, settings):
    settings.CHAT_RESUME_GRACE_SECONDS = 0.4
    producer, elsewhere = RedisStreamLog(redis_url), RedisStreamLog(redis_url)
    name = key()
    requested = asyncio.Event()
    producer.open(name, user_id=7, on_cancel=lambda k: requested.set())
    producer.append(name, frame(1, "start"))
    assert [f["seq"] for f in await read_all(elsewhere, name, after=0, until_seq=1)] == [1]

    await elsewhere.cancel_request(name)
    # No frame is written meanwhile: the producer's heartbeat picks the request up.
    await asyncio.wait_for(requested.wait(), 2)
    await producer.close(name)


@needs_redis
async def test_a_follower_elsewhere_is_seen_by_the_producer_and_cannot_revive_an_expired_log(redis_url, settings):
    settings.CHAT_RESUME_TTL_SECONDS = 0.3
    producer, elsewhere = RedisStreamLog(redis_url), RedisStreamLog(redis_url)
    name = key()
    producer.open(name, user_id=7)
    producer.append(name, frame(1, "start"))
    await read_all(elsewhere, name, after=0, until_seq=1)
    assert await producer.watched_at(name) is None

    await elsewhere.touch(name)

    assert time.time() - await producer.watched_at(name) < 1
    await producer.close(name)
    await asyncio.sleep(0.5)
    await elsewhere.touch(name)
    assert await elsewhere.info(name) is None


@needs_redis
async def test_a_new_log_can_be_found_elsewhere_once_it_is_visible(redis_url, settings):
    """A client holding an answer's first frame may resume it on another process at once, so the
    producer hands that frame out only once its log is in Redis (``visible``). Before, another process
    asked within milliseconds of the start frame could find no log: "not found", and the client waited
    for frames that never came (tests/deploy/test_resume_across_processes.py, under load)."""
    settings.CHAT_RESUME_GRACE_SECONDS = 4  # a heartbeat only every second: the first write must not wait for it
    producer = RedisStreamLog(redis_url)
    name = key()
    producer.open(name, user_id=7)
    producer.append(name, frame(1, "start"))

    await producer.visible(name)

    # What another process sees at this moment, asked without giving the producer's loop a turn.
    meta = redis.Redis.from_url(redis_url, decode_responses=True).hgetall(RedisStreamLog.keys(name)[1])
    assert meta["user"] == "7"
    await producer.close(name)


async def test_a_log_in_memory_is_visible_at_once(settings):
    log = MemoryStreamLog()
    name = key()
    log.open(name, user_id=7)
    await asyncio.wait_for(log.visible(name), 0.1)
    assert (await log.info(name)).user_id == 7


@needs_redis
async def test_a_follower_whose_log_redis_lost_says_so_instead_of_waiting_in_silence(redis_url, settings):
    """Redis restarted without its data (deploy/compose.yaml keeps none) mid-answer: a follower on
    another process ends with ``stream_lost`` (the saved message is the answer), whether it was
    waiting for the next frame or is behind and would skip the frames that were lost."""
    from ai.chat.answers import _follow

    settings.CHAT_RESUME_GRACE_SECONDS = 0.4
    producer, elsewhere = RedisStreamLog(redis_url), RedisStreamLog(redis_url)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    waiting, behind = key(), key()
    for name in (waiting, behind):
        producer.open(name, user_id=7)
        for seq in (1, 2, 3):
            producer.append(name, frame(seq, "start" if seq == 1 else "token"))
    await read_all(elsewhere, behind, after=0, until_seq=3)

    following = _follow(elsewhere, waiting, after=0)  # yields the frames in the batches it read them
    replayed = []
    while len(replayed) < 3:
        replayed += await anext(following)
    assert [f["seq"] for f in replayed] == [1, 2, 3]
    client.flushall()  # the restart
    producer.append(behind, frame(4))  # written again after the restart, without frames 2 and 3

    [last] = await asyncio.wait_for(anext(following), 5)
    assert (last["type"], last["seq"], last["error"]["code"]) == ("error", 4, "stream_lost")
    behind_frames = [frame async for batch in _follow(elsewhere, behind, after=1) for frame in batch]
    assert [(f["type"], f["seq"]) for f in behind_frames] == [("error", 2)]
    assert behind_frames[-1]["error"]["code"] == "stream_lost"
    for name in (waiting, behind):
        await producer.close(name)
