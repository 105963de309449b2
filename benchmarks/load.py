"""Load: `proofwell serve` on PostgreSQL with local workers, N concurrent clients submitting
and polling small jobs over loopback. Prints submissions/s, submission latency (p50/p99),
end-to-end latency, and lost and duplicated jobs (both must be 0).

    python benchmarks/load.py --clients 50 --jobs 4 --api-workers 2 --workers 2

A fresh database is made on the server of ``--admin-url`` (default: 127.0.0.1:5432) and
dropped at the end. Bounded: ``--clients`` x ``--jobs`` jobs, ``--deadline`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import httpx
import numpy as np
from onnx import TensorProto, helper, numpy_helper
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from service.api.client import WAIT_POLL_S
from service.gate.remote import POLL_IDS as GATE_POLL_IDS
from service.gate.remote import POLL_S as GATE_POLL_S

ROOT = Path(__file__).resolve().parents[1]
PROPERTY = """; load {tag}
(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const Y_0 Real)
(assert (>= X_0 0))
(assert (<= X_0 1))
(assert (>= X_1 0))
(assert (<= X_1 1))
(assert (>= Y_0 3))
"""


def small_model() -> bytes:
    """y = x0 + x1 on [0, 1]^2: a trivial job (holds)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])
    w = numpy_helper.from_array(np.ones((2, 1), dtype=np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g", [x], [y], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    return model.SerializeToString()


@contextlib.contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"pw_load_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve(
    url: str, api_workers: int, workers: int, log: Path, root: Path = ROOT
) -> Iterator[tuple[str, int]]:
    env = {**os.environ, "PYTHONPATH": str(root), "DATABASE_URL": url, "PROOFWELL_POLL_S": "0.05"}
    cli = [sys.executable, "-c", "from service.cli import app; app()"]
    subprocess.run([*cli, "db", "upgrade"], env=env, cwd=root, check=True, capture_output=True)
    port = free_port()
    args = ["serve", "--port", str(port), "--workers", str(workers)]
    args += ["--api-workers", str(api_workers), "--no-access-log"]
    with log.open("wb") as out:
        proc = subprocess.Popen([*cli, *args], env=env, cwd=root, stdout=out, stderr=out)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            time.sleep(0.5)
        quiet(proc.pid)
        yield base, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _process_table() -> tuple[dict[int, int], dict[int, int], dict[int, str]]:
    """Every process's parent, CPU ticks (user + system) and command line, from /proc."""
    parent, ticks, cmdline = {}, {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        pid = int(entry.name)
        parent[pid], ticks[pid] = int(fields[1]), int(fields[11]) + int(fields[12])
        cmdline[pid] = command
    return parent, ticks, cmdline


def tree_cpu_s(root: int) -> float:
    """CPU seconds (user + system) used so far by a process and its live descendants:
    a figure that, unlike latency, does not depend on what else loads the machine."""
    parent, ticks, _ = _process_table()
    tree, frontier = {root}, [root]
    while frontier:
        node = frontier.pop()
        children = [p for p, pp in parent.items() if pp == node and p not in tree]
        tree.update(children)
        frontier.extend(children)
    return sum(ticks.get(p, 0) for p in tree) / os.sysconf("SC_CLK_TCK")


def database_cpu_ticks(database: str) -> dict[int, int]:
    """CPU ticks so far of each PostgreSQL backend serving ``database`` (its process title
    names the database), when the server runs on this machine; else empty."""
    _, ticks, cmdline = _process_table()
    mark = f" {database} "
    return {
        p: t for p, t in ticks.items() if cmdline[p].startswith("postgres:") and mark in cmdline[p]
    }


def database_cpu_s(before: dict[int, int], after: dict[int, int]) -> float:
    used = sum(t - before.get(p, 0) for p, t in after.items())
    return used / os.sysconf("SC_CLK_TCK")


def quiet(pid: int, within_s: float = 60.0) -> None:
    """Wait until the server's processes have started (their CPU use settles): /healthz
    answers as soon as one API process does, and clients that connect before the others
    listen would all be served by that one, the connections being kept alive."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        before = tree_cpu_s(pid)
        time.sleep(1.0)
        if tree_cpu_s(pid) - before < 0.2:
            return


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def client(
    base: str, artefact: str, jobs: int, deadline: float, stats: dict[str, list]
) -> None:
    # aiohttp, not httpx: its C parser leaves the shared cores to the server being measured
    # (an httpx client used more CPU per request than the API it was loading).
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(base, timeout=timeout) as http:
        mine: dict[str, float] = {}
        for warm in range(jobs + 1):  # the first is a warm-up (connections, imports): not timed
            body = {
                "artefact": artefact,
                "property": {"vnnlib": PROPERTY.format(tag=uuid.uuid4().hex)},
                "options": {"timeout_s": 30},
            }
            start = time.perf_counter()
            async with http.post("/v1/jobs", json=body) as r:
                reply = await r.json() if r.status == 202 else None
            if warm:
                stats["submit"].append(time.perf_counter() - start)
            if reply is None:
                stats["errors"].append(f"submit {r.status}")
                continue
            stats["ids"].append(reply["id"])
            mine[reply["id"]] = start
            if stats["wait_each"]:  # as `proofwell submit --wait`: the verdict, then the next
                await settle(http, mine, deadline, stats, WAIT_POLL_S)
        if not stats["no_wait"]:  # as `proofwell gate --server`: all submitted, then polled
            await settle(http, mine, deadline, stats, GATE_POLL_S, batched=True)
            stats["lost"].extend(mine)


async def settle(
    http: aiohttp.ClientSession,
    mine: dict[str, float],
    deadline: float,
    stats: dict[str, list],
    every_s: float,
    batched: bool = False,
) -> None:
    """Poll the jobs in ``mine`` until they end (or the deadline), recording each's latency:
    one request per job, or (``batched``, as the gate does) one per GATE_POLL_IDS jobs."""
    while mine and time.monotonic() < deadline:
        for job in await read_jobs(http, list(mine), stats, batched):
            job_id = job.get("id")
            if job_id in mine and job.get("status") in ("done", "failed", "cancelled"):
                stats["end_to_end"].append(time.perf_counter() - mine.pop(job_id))
                stats["verdicts"].append(job.get("verdict"))
        if mine:
            await asyncio.sleep(every_s)


async def read_jobs(
    http: aiohttp.ClientSession, job_ids: list, stats: dict[str, list], batched: bool
) -> list[dict]:
    """The jobs as the API answers them, timing each request."""
    if batched:
        chunks = [job_ids[i : i + GATE_POLL_IDS] for i in range(0, len(job_ids), GATE_POLL_IDS)]
        paths = ["/v1/jobs?ids=" + ",".join(map(str, chunk)) for chunk in chunks]
    else:
        paths = [f"/v1/jobs/{job_id}" for job_id in job_ids]
    jobs = []
    for path in paths:
        start = time.perf_counter()
        async with http.get(path) as r:
            reply = await r.json() if r.status == 200 else {}
        stats["poll"].append(time.perf_counter() - start)
        jobs += reply.get("items", []) if batched else [reply]
    return jobs


async def run(
    base: str, clients: int, jobs: int, seconds: float, no_wait: bool, wait_each: bool = False
) -> dict[str, list]:
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        r = await http.post("/v1/artefacts", files={"file": ("load.onnx", small_model())})
        r.raise_for_status()
        artefact = r.json()["id"]
    stats: dict[str, list] = {
        k: [] for k in ("submit", "poll", "end_to_end", "ids", "errors", "lost", "verdicts")
    }
    stats["no_wait"] = [True] if no_wait else []
    stats["wait_each"] = [True] if wait_each else []
    deadline = time.monotonic() + seconds
    start = time.perf_counter()
    await asyncio.gather(*(client(base, artefact, jobs, deadline, stats) for _ in range(clients)))
    stats["wall"] = [time.perf_counter() - start]
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        stats["stored"] = [(await http.get("/v1/jobs", params={"limit": 1})).json()["total"]]
    return stats


def report(stats: dict[str, list], args: argparse.Namespace) -> int:
    ms = 1000.0
    submitted, stored = len(stats["ids"]), stats["stored"][0]  # warm-up jobs included
    duplicated = (submitted - len(set(stats["ids"]))) + max(0, stored - submitted)
    sub_time = sum(stats["submit"]) / max(1, args.clients)
    timed = len(stats["submit"])
    print(
        f"clients {args.clients}, jobs {submitted}, api workers {args.api_workers}, "
        f"workers {args.workers}"
    )
    print(f"submissions/s      {timed / max(sub_time, 1e-9):8.1f}")
    for name in ("submit", "poll"):
        values = stats[name] or [float("nan")]
        print(
            f"{name:<8} latency   p50 {percentile(values, 0.5) * ms:7.1f} ms   "
            f"p99 {percentile(values, 0.99) * ms:7.1f} ms   max {max(values) * ms:7.1f} ms"
        )
    e2e = stats["end_to_end"] or [float("nan")]
    print(
        f"end to end        p50 {percentile(e2e, 0.5) * ms:7.1f} ms   "
        f"p99 {percentile(e2e, 0.99) * ms:7.1f} ms"
    )
    print(
        f"verdicts          {dict((v, stats['verdicts'].count(v)) for v in set(stats['verdicts']))}"
    )
    whose = "API" if args.workers == 0 else "API and workers"
    per_job = stats["server_cpu"][0] / max(1, submitted) * ms
    print(f"server CPU        {per_job:7.2f} ms per job ({whose}, all requests)")
    for name, what in (("database", "PostgreSQL backends"), ("client", "these clients")):
        per_job = stats[f"{name}_cpu"][0] / max(1, submitted) * ms
        print(f"{name + ' CPU':<17} {per_job:7.2f} ms per job ({what})")
    print(f"lost jobs         {len(stats['lost'])}")
    print(f"duplicated jobs   {duplicated}")
    print(f"errors            {len(stats['errors'])} {sorted(set(stats['errors']))[:5]}")
    print(f"wall              {stats['wall'][0]:.1f} s")
    return 1 if stats["lost"] or duplicated or stats["errors"] else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=4, help="jobs per client")
    parser.add_argument("--api-workers", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--deadline", type=float, default=300.0, help="seconds, at most")
    parser.add_argument(
        "--no-wait", action="store_true", help="submit only (the API alone; use --workers 0)"
    )
    parser.add_argument(
        "--wait-each",
        action="store_true",
        help="each client waits for its job's verdict before the next, as CI gates do",
    )
    parser.add_argument(
        "--server-root",
        type=Path,
        default=ROOT,
        help="the checkout whose `proofwell serve` is measured (default: this one): "
        "to compare two commits with one load generator",
    )
    parser.add_argument("--admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    args.clients, args.jobs = min(args.clients, 500), min(args.jobs, 100)
    with tempfile.TemporaryDirectory() as tmp, fresh_database(args.admin_url) as url:
        log = Path(tmp) / "serve.log"
        with serve(url, args.api_workers, args.workers, log, args.server_root) as (base, pid):
            # The clients' own pauses would count as latency: a full collection walking
            # everything imported took 261 ms in the middle of a run.
            gc.collect()
            gc.freeze()
            database = make_url(url).database or ""
            before, db_before = tree_cpu_s(pid), database_cpu_ticks(database)
            client_before = resource.getrusage(resource.RUSAGE_SELF)
            stats = asyncio.run(
                run(base, args.clients, args.jobs, args.deadline, args.no_wait, args.wait_each)
            )
            client = resource.getrusage(resource.RUSAGE_SELF)
            stats["server_cpu"] = [tree_cpu_s(pid) - before]
            stats["database_cpu"] = [database_cpu_s(db_before, database_cpu_ticks(database))]
            stats["client_cpu"] = [
                client.ru_utime + client.ru_stime - client_before.ru_utime - client_before.ru_stime
            ]
    return report(stats, args)


if __name__ == "__main__":
    sys.exit(main())
