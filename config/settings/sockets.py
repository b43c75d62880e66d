"""WebSocket limits: frames per socket, open sockets per person, and how long an idle socket stays."""

from .env import env

# A socket may send this many frames a second, in bursts of up to SOCKET_FRAME_BURST; a frame past
# that is refused with a `rate_limited` error frame (and `retry_after`), and a socket that keeps
# sending (SOCKET_FLOOD_CLOSE_AFTER refused frames without a one-second pause) is closed (4429).
SOCKET_FRAMES_PER_SECOND = env.float("SOCKET_FRAMES_PER_SECOND", default=10.0)
SOCKET_FRAME_BURST = env.int("SOCKET_FRAME_BURST", default=20)
SOCKET_FLOOD_CLOSE_AFTER = env.int("SOCKET_FLOOD_CLOSE_AFTER", default=50)
# Open sockets per person (or API key) per tenant, counted across processes through the cache;
# past it the handshake is refused with 429 `too_many_sockets` (0: no cap). A socket's place expires
# SOCKET_SLOT_TTL_SECONDS after its process last refreshed it, so a crashed process frees them.
SOCKET_MAX_PER_PERSON = env.int("SOCKET_MAX_PER_PERSON", default=20)
SOCKET_SLOT_TTL_SECONDS = env.int("SOCKET_SLOT_TTL_SECONDS", default=120)
# A socket with no frame either way (no client frame, no answer streaming) for this long is closed (4408).
SOCKET_IDLE_TIMEOUT_SECONDS = env.float("SOCKET_IDLE_TIMEOUT_SECONDS", default=300.0)
