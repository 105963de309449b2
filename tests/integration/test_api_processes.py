"""`proofwell serve --api-workers 2` on Linux: each API process listens on a socket of its
own, so a burst of clients connecting at once is spread over both (uvicorn's shared socket
gave one of them up to 40 of 50); a process that dies is replaced; SIGTERM stops them all."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from service.api_processes import BALANCED
from tests.live_server import running_server

pytestmark = pytest.mark.skipif(
    not BALANCED, reason="SO_REUSEPORT spreads connections on Linux only"
)

LISTEN, ESTABLISHED = "0A", "01"


def sockets_on(port: int, state: str) -> set[int]:
    """Inodes of the TCP sockets whose local port is ``port``, in ``state``."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == state:
                inodes.add(int(fields[9]))
    return inodes


def owners(inodes: set[int]) -> Counter[int]:
    """How many of these sockets each process holds."""
    held: Counter[int] = Counter()
    for fds in Path("/proc").glob("[0-9]*/fd"):
        try:
            links = [os.readlink(fd) for fd in fds.iterdir()]
        except OSError:  # a process that ended, or one not ours
            continue
        for link in links:
            if link.startswith("socket:[") and int(link[8:-1]) in inodes:
                held[int(fds.parent.name)] += 1
    return held


def listeners(port: int) -> set[int]:
    return set(owners(sockets_on(port, LISTEN)))


def wait_for_listeners(port: int, count: int, without: int | None = None) -> set[int]:
    """The processes listening on ``port`` once there are ``count`` of them (none of them
    ``without``), or as they are after 30 s."""
    deadline = time.monotonic() + 30
    found = listeners(port)
    while (len(found) < count or without in found) and time.monotonic() < deadline:
        time.sleep(0.1)
        found = listeners(port)
    return found


def test_connections_are_spread_and_a_dead_process_is_replaced(tmp_path: Path) -> None:
    with running_server(tmp_path, "--workers", "0", "--api-workers", "2") as url:
        port = int(url.rsplit(":", 1)[1])
        first = wait_for_listeners(port, 2)  # /healthz answers once the first has started
        assert len(first) == 2
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
        try:
            for client in clients:  # each connection answered: accepted by a process
                client.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                assert client.recv(4096).startswith(b"HTTP/1.1 200")
            spread = owners(sockets_on(port, ESTABLISHED))
            assert set(spread) == first and min(spread.values()) >= 8, spread
        finally:
            for client in clients:
                client.close()
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        now = wait_for_listeners(port, 2, without=victim)
        assert len(now) == 2 and victim not in now and first - {victim} <= now
        assert httpx.get(f"{url}/healthz").status_code == 200
    assert not listeners(port)  # SIGTERM stopped every process
