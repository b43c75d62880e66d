"""Invitation mail is delivered at least once: ``sent_at`` means the mail server took the message,
and a sender that died before that leaves the invitation for the job's retry to send."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from django.utils import timezone

from tenants.models import Invitation
from tenants.services.invitations import invitation_send
from tests.processes import ROOT, SPAWNED_APPLICATION_NAME, committed, live_database_url, wait_until
from tests.tenants.conftest import link_in, sent_to

# The job body, as a worker process runs it.
SENDER = (
    "import sys, django; django.setup();"
    " from tenants.services.invitations import invitation_send;"
    " invitation_send(invitation_id=int(sys.argv[1]))"
)


class SilentMailServer:
    """A TCP server on 127.0.0.1 that accepts connections and never answers (an SMTP server that
    hangs before its greeting): a sender connected to it is stuck in the middle of sending."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connected = threading.Event()
        self.clients: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self.clients.append(client)
            self.connected.set()

    def __enter__(self) -> SilentMailServer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.sock.close()
        for client in self.clients:
            client.close()


@pytest.fixture
def open_invitation(acme) -> Iterator[Invitation]:  # noqa: ANN001
    """An invitation committed for real (another process sends it), removed afterwards."""
    invitation = committed(
        Invitation.objects.create,
        tenant=acme.tenant,
        email="crash-proof@example.com",
        role="member",
        invited_by=acme.owner,
        expires=timezone.now() + dt.timedelta(days=7),
    )
    yield invitation
    committed(lambda: Invitation.objects.filter(pk=invitation.pk).delete())


def test_a_sender_killed_mid_send_leaves_it_unsent_and_the_retry_delivers_it(acme, open_invitation):
    with SilentMailServer() as smtp:
        sender = subprocess.Popen(  # noqa: S603 - our own interpreter and code
            [sys.executable, "-c", SENDER, str(open_invitation.pk)],
            cwd=ROOT,
            env={
                **os.environ,
                "DJANGO_SETTINGS_MODULE": "config.settings",
                "DATABASE_URL": live_database_url(),
                "DB_APPLICATION_NAME": SPAWNED_APPLICATION_NAME,
                "EMAIL_URL": f"smtp://127.0.0.1:{smtp.port}",
            },
        )
        try:
            wait_until(smtp.connected.is_set, timeout=120, what="the sender reaching the mail server")
            mid_send = Invitation.objects.get(pk=open_invitation.pk)
            assert mid_send.token_hash  # the link's token was made and kept before sending
            assert mid_send.sent_at is None  # but nothing was sent yet
        finally:
            sender.kill()
            sender.wait()
    assert Invitation.objects.get(pk=open_invitation.pk).sent_at is None

    committed(invitation_send, invitation_id=open_invitation.pk)  # the job's retry

    [message] = sent_to("crash-proof@example.com")
    link = link_in(message, rf"http://{acme.tenant.subdomain}\.localhost:8000/invite/[\w-]+/")
    token = link.rstrip("/").rsplit("/", 1)[1]
    delivered = Invitation.objects.get(pk=open_invitation.pk)
    assert delivered.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert delivered.sent_at is not None

    committed(invitation_send, invitation_id=open_invitation.pk)  # a duplicate run sends nothing more
    assert len(sent_to("crash-proof@example.com")) == 1
