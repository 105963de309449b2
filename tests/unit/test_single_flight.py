"""SingleFlight: concurrent requests for the same thing share one blocking read."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from service.api.single_flight import SingleFlight
from service.config import Settings
from service.store.artefacts import ArtefactInfo, ArtefactStore
from tests.fixtures import VNNCOMP_TEST


class CountingRead:
    """A slow blocking read that counts its runs (threads may run it at once)."""

    def __init__(self, value: object = "value", error: Exception | None = None) -> None:
        self.calls = 0
        self.value, self.error = value, error
        self._lock = threading.Lock()

    def __call__(self) -> object:
        with self._lock:
            self.calls += 1
        time.sleep(0.05)
        if self.error is not None:
            raise self.error
        return self.value


def test_concurrent_callers_share_one_read_per_key() -> None:
    flight: SingleFlight[object] = SingleFlight()
    reads = {"a": CountingRead("A"), "b": CountingRead("B")}

    async def burst() -> list[object]:
        calls = [flight.run(key, reads[key]) for key in "abababababab"]
        return await asyncio.gather(*calls)

    assert asyncio.run(burst()) == list("ABABABABABAB")
    assert (reads["a"].calls, reads["b"].calls) == (1, 1)


def test_a_finished_read_is_not_kept() -> None:
    flight: SingleFlight[object] = SingleFlight()
    read = CountingRead()

    async def twice() -> None:
        await flight.run("k", read)
        await flight.run("k", read)

    asyncio.run(twice())
    assert read.calls == 2  # a cache is the caller's business; this only merges overlaps


def test_every_caller_gets_the_reads_error() -> None:
    flight: SingleFlight[object] = SingleFlight()
    read = CountingRead(error=ConnectionError("database down"))

    async def burst() -> list[object]:
        calls = [flight.run("k", read) for _ in range(5)]
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(burst())
    assert [type(r) for r in results] == [ConnectionError] * 5 and read.calls == 1


def test_a_caller_that_goes_away_does_not_cancel_the_others() -> None:
    flight: SingleFlight[object] = SingleFlight()
    read = CountingRead("V")

    async def scenario() -> object:
        first = asyncio.ensure_future(flight.run("k", read))
        second = asyncio.ensure_future(flight.run("k", read))
        await asyncio.sleep(0.01)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        return await second

    assert asyncio.run(scenario()) == "V" and read.calls == 1


def test_a_burst_on_a_model_the_process_has_not_read_reads_it_once(settings: Settings) -> None:
    """Concurrent submissions on an artefact this API process has not read (uploaded through
    another process) read its record from the database once, and each gets its job."""
    from service.app import create_app

    uploader, app = create_app(settings), create_app(settings)
    with TestClient(uploader, base_url="http://127.0.0.1") as other:
        files = {"file": ("t.onnx", (VNNCOMP_TEST / "test_sat.onnx").read_bytes())}
        artefact = other.post("/v1/artefacts", files=files).json()["id"]
    artefacts = app.state.services.artefacts
    reads = count_database_reads(artefacts)
    vnnlib = (VNNCOMP_TEST / "test_prop.vnnlib").read_text()

    async def burst() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            bodies = [
                {"artefact": artefact, "property": {"vnnlib": f"; {i}\n{vnnlib}"}}
                for i in range(12)
            ]
            replies = await asyncio.gather(*(http.post("/v1/jobs", json=b) for b in bodies))
            return [r.status_code for r in replies]

    assert asyncio.run(burst()) == [202] * 12
    assert reads == [artefact]
    for each in (uploader, app):
        each.state.services.db.dispose()


def count_database_reads(artefacts: ArtefactStore) -> list[str]:
    """The artefacts ``artefacts.get`` read from the database (not from what it knows); a
    read takes 50 ms, as on a busy database, so that the burst overlaps it."""
    reads: list[str] = []
    get = artefacts.get

    def counting(sha256: str, project: int | None = None) -> ArtefactInfo | None:
        if artefacts.known(sha256, project) is None:
            reads.append(sha256)
            time.sleep(0.05)
        return get(sha256, project)

    artefacts.get = counting  # type: ignore[method-assign]
    return reads
