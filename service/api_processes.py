"""Several API processes on one port, each with a listening socket of its own.

uvicorn's workers share one listening socket, and whichever process wakes first accepts
every connection waiting: 50 clients connecting at once were split 10/40, 38/12 or 19/31
between two processes, and keep-alive keeps each client on its process for the whole
session, so one process queues while the other idles. With a socket each (SO_REUSEPORT),
Linux spreads new connections over the processes by a hash of their addresses. Elsewhere
SO_REUSEPORT does not spread connections, and ``serve`` keeps uvicorn's shared socket.

The parent only supervises: it restarts a process that dies and stops them all on SIGTERM
or SIGINT.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import sys
import time
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType

log = logging.getLogger(__name__)

BALANCED = sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")
APP = "service.app:create_served_app"
# A process that dies sooner than this after its start is restarted only after a pause (a
# port taken or a broken environment must not become a busy loop of restarts).
QUICK_DEATH_S = 2.0
STOP_TIMEOUT_S = 15.0


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port) that other processes of this user can bind too."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    return sock


def run_api_process(host: str, port: int, access_log: bool) -> None:
    """One API process (the target of each child)."""
    import uvicorn

    sock = listening_socket(host, port)
    config = uvicorn.Config(APP, factory=True, access_log=access_log, log_level="info")
    uvicorn.Server(config).run(sockets=[sock])


class ApiProcesses:
    """``count`` API processes on (host, port), kept running until ``stop``."""

    def __init__(self, host: str, port: int, count: int, access_log: bool) -> None:
        listening_socket(host, port).close()  # a port in use fails here, with its error
        self._args = (host, port, access_log)
        self._context = multiprocessing.get_context("spawn")
        self._processes = [self._start(i) for i in range(count)]
        self._started = [time.monotonic()] * count
        self._stopping = False

    def run(self) -> None:
        """Supervise until SIGTERM or SIGINT, then stop every process."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._request_stop)
        try:
            while not self._stopping:
                wait([p.sentinel for p in self._processes], timeout=0.5)
                self._restart_dead()
        finally:
            self.stop()

    def stop(self) -> None:
        for process in self._processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn finishes the requests in flight
        for process in self._processes:
            process.join(timeout=STOP_TIMEOUT_S)
            if process.is_alive():
                process.kill()

    def _start(self, index: int) -> BaseProcess:
        process = self._context.Process(
            target=run_api_process, args=self._args, name=f"api-{index}"
        )
        process.start()
        return process

    def _restart_dead(self) -> None:
        for index, process in enumerate(self._processes):
            if process.is_alive() or self._stopping:
                continue
            lived = time.monotonic() - self._started[index]
            log.warning(
                "API process %s exited (code %s); restarting", process.pid, process.exitcode
            )
            if lived < QUICK_DEATH_S:
                time.sleep(QUICK_DEATH_S - lived)
            self._processes[index] = self._start(index)
            self._started[index] = time.monotonic()

    def _request_stop(self, _signum: int, _frame: FrameType | None) -> None:
        self._stopping = True
