"""Submitting jobs: queue one, answer it from the stored result of identical work, or attach
it to the identical job already in flight.

Submissions are the hot path under load. On PostgreSQL a new job is one statement, run
outside a transaction (a single statement is atomic by itself): it inserts the job, its
event row and its parsed property unless a stored result or an identical job in flight
answers it, so a submission costs one round trip, not a BEGIN, a lookup, three inserts and a
COMMIT. When it inserts nothing, the rare paths (a stored result, an identical job in flight)
run in a transaction with the ORM, as they do on SQLite.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Connection, Select, bindparam, exists, insert, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from service.queue.states import EventKind, Status
from service.store.job_records import Job, JobSpec, job_of, move
from service.store.models import JobEvent, JobRow, ParsedProperty, ResultRow, utcnow
from service.store.parsed import parsed_key, store_parsed

# Only decisive verdicts answer identical work; an `unknown` may be decided by a rerun.
CACHEABLE = ("holds", "violated")


def _lookup(key: str) -> Select[tuple[int | None, int | None]]:
    """The newest decisive result of identical work, and the identical job in flight."""
    hit = (
        select(ResultRow.id)
        .where(ResultRow.cache_key == key, ResultRow.verdict.in_(CACHEABLE))
        .order_by(ResultRow.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    running = select(JobRow.id).where(JobRow.inflight_key == key).scalar_subquery()
    return select(hit, running)


def _attach(s: Session, running: JobRow, priority: int) -> Job:
    """The identical queued or running job, raised to ``priority`` if that is higher."""
    if running.status == Status.QUEUED.value and priority > running.priority:
        s.execute(
            update(JobRow)
            .where(JobRow.id == running.id, JobRow.priority < priority)
            .values(priority=priority)
        )
    return job_of(running, None)


def _queued_values(spec: JobSpec) -> dict[str, Any]:
    return {
        "project_id": spec.project_id,
        "artefact_id": spec.artefact,
        "prop": spec.prop,
        "property_hash": spec.property_hash,
        "subnetwork": spec.subnetwork,
        "options": spec.options,
        "cache_key": spec.cache_key,
        "inflight_key": spec.cache_key,
        "priority": spec.priority,
        "max_attempts": spec.max_attempts,
        "status": Status.QUEUED.value,
        "attempts": 0,
        "cached": False,
        "created_at": utcnow(),
    }


def new_job(job_id: int, values: dict[str, Any]) -> Job:
    return Job(
        id=job_id,
        artefact=values["artefact_id"],
        status=Status.QUEUED,
        prop=values["prop"],
        subnetwork=values["subnetwork"],
        options=values["options"],
        cache_key=values["cache_key"],
        attempts=0,
        cached=False,
        progress=None,
        reason=None,
        verdict=None,
        counterexample=None,
        stats=None,
        seconds=None,
        created_at=values["created_at"],
        started_at=None,
        finished_at=None,
        project_id=values["project_id"],
    )


def _answer_from(s: Session, spec: JobSpec, hit: ResultRow) -> Job:
    """A job done at once from the stored result of identical work."""
    values = {**_queued_values(spec), "inflight_key": None}
    row = JobRow(**values)
    s.add(row)
    s.flush()
    row.cached, row.result_id, row.seconds = True, hit.id, 0.0
    row.started_at = utcnow()
    move(s, row, Status.DONE)
    return job_of(row, hit)


def submit_one(s: Session, spec: JobSpec) -> Job:
    """A queued job; one already done from the stored result of identical work; or the
    identical job already queued or running."""
    hit_id, running_id = s.execute(_lookup(spec.cache_key)).one()
    if hit_id is None and running_id is not None:
        running = s.get(JobRow, running_id)
        if running is not None:
            return _attach(s, running, spec.priority)
    if hit_id is not None:
        return _answer_from(s, spec, s.get_one(ResultRow, hit_id))
    if spec.parsed is not None:
        store_parsed(s, parsed_key(spec.property_hash, spec.parsed.sizes), spec.parsed.data)
    values = _queued_values(spec)
    job_id = s.execute(insert(JobRow).values(values).returning(JobRow.id)).scalar_one()
    s.execute(
        insert(JobEvent).values(
            job_id=job_id,
            kind=EventKind.STATUS.value,
            data={"status": Status.QUEUED.value},
            created_at=values["created_at"],
        )
    )
    return new_job(job_id, values)


# The columns the one-statement insert fills, in order, each from a bound parameter of its name.
_JSON_COLUMNS = ("prop", "subnetwork", "options")
_COLUMNS = (
    "project_id", "artefact_id", "prop", "property_hash", "subnetwork", "options", "cache_key",
    "inflight_key", "priority", "max_attempts", "status", "attempts", "cached", "created_at",
)  # fmt: skip


def _param(name: str) -> Any:
    column = JobRow.__table__.c[name]
    return bindparam(name, type_=JSON if name in _JSON_COLUMNS else column.type)


def _insert_statement(with_parsed: bool) -> Any:
    """PostgreSQL: insert the job (and its event and parsed property) unless a decisive stored
    result or an identical job in flight exists; returns the new id, or no row. A concurrent
    identical submission that wins the race makes the job insert do nothing (ON CONFLICT on
    the in-flight key), and the event and parsed inserts follow the job's."""
    key = bindparam("cache_key", type_=JobRow.__table__.c.cache_key.type)
    # The verdicts as constants, not an expanding IN: the statement's text is then fixed, so
    # it is neither rendered again per execution nor re-parsed by the driver.
    decisive = ResultRow.verdict.in_([literal(v) for v in CACHEABLE])
    stored = exists().where(ResultRow.cache_key == key, decisive)
    running = exists().where(JobRow.inflight_key == key)
    source = select(*(_param(c) for c in _COLUMNS)).where(~stored, ~running)
    job = (
        pg_insert(JobRow)
        .from_select(list(_COLUMNS), source)
        .on_conflict_do_nothing(index_elements=["inflight_key"])
        .returning(JobRow.id)
        .cte("new_job")
    )
    event = insert(JobEvent).from_select(
        ["job_id", "kind", "data", "created_at"],
        select(
            job.c.id,
            literal(EventKind.STATUS.value),
            literal({"status": Status.QUEUED.value}, JSON),
            _param("created_at"),
        ),
    )
    ctes = [event.cte("new_event")]
    if with_parsed:
        data = bindparam("parsed_data", type_=JSON)
        parsed = select(bindparam("parsed_key", type_=ParsedProperty.__table__.c.key.type), data)
        parsed = parsed.add_columns(_param("created_at")).where(exists(select(job.c.id)))
        columns = ["key", "data", "created_at"]
        stmt = pg_insert(ParsedProperty).from_select(columns, parsed).on_conflict_do_nothing()
        ctes.append(stmt.cte("new_parsed"))
    return select(job.c.id).add_cte(*ctes)


# The one-statement insert, without and with a parsed property to store.
INSERT = {parsed: _insert_statement(parsed) for parsed in (False, True)}


def insert_params(spec: JobSpec) -> tuple[dict[str, Any], dict[str, Any]]:
    """The new job's column values, and the parameters of its ``INSERT`` statement."""
    values = _queued_values(spec)
    params = {name: values[name] for name in _COLUMNS}
    if spec.parsed is not None:
        params["parsed_key"] = parsed_key(spec.property_hash, spec.parsed.sizes)
        params["parsed_data"] = spec.parsed.data
    return values, params


def _batch_insert_sql() -> str:
    """PostgreSQL: ``INSERT`` for many submissions in one statement. Its one parameter,
    ``rows``, is a JSON array of ``batch_row``s; it returns ``(id, inflight_key)`` of each new
    job. A row is inserted, with its event and parsed property, unless a decisive stored
    result or an identical job in flight exists, as ``INSERT`` does for one; of identical rows
    only one is inserted (ON CONFLICT on the in-flight key). Rows are inserted in the order of
    their in-flight keys, so concurrent statements take those keys' locks in one order.

    ``OFFSET 0`` keeps each NOT EXISTS a per-row probe of its index: as an anti-join, the
    planner (which takes json_to_recordset for 100 rows) scans whole tables for small
    batches once they have a few thousand rows."""
    types = {"prop": "json", "subnetwork": "json", "options": "json", "parsed_data": "json"}
    types |= {"project_id": "integer", "priority": "integer", "max_attempts": "integer"}
    types |= {"created_at": "timestamp", "parsed_key": "text"}
    fields = [*_BATCH_FIELDS, "parsed_key", "parsed_data"]
    record = ", ".join(f"{name} {types.get(name, 'text')}" for name in fields)
    jobs, results = JobRow.__tablename__, ResultRow.__tablename__
    events, parsed = JobEvent.__tablename__, ParsedProperty.__tablename__
    decisive = ", ".join(f"'{verdict}'" for verdict in CACHEABLE)
    columns = ", ".join(_COLUMNS)
    # A missing subnetwork is stored as JSON null, as SQLAlchemy's JSON type stores None.
    constants = {"inflight_key": "cache_key", "subnetwork": "coalesce(subnetwork, 'null')"}
    constants |= {"status": f"'{Status.QUEUED.value}'"}
    constants |= {"attempts": "0", "cached": "false"}
    source = ", ".join(constants.get(name, name) for name in _COLUMNS)
    return f"""
WITH input AS (SELECT * FROM json_to_recordset(%(rows)s::json) AS i({record})),
new_job AS (
    INSERT INTO {jobs} ({columns})
    SELECT {source} FROM input i
    WHERE NOT EXISTS (
        SELECT 1 FROM {results} r
        WHERE r.cache_key = i.cache_key AND r.verdict IN ({decisive}) OFFSET 0
    ) AND NOT EXISTS (SELECT 1 FROM {jobs} j WHERE j.inflight_key = i.cache_key OFFSET 0)
    ORDER BY i.cache_key
    ON CONFLICT (inflight_key) DO NOTHING
    RETURNING id, inflight_key, created_at
),
new_event AS (
    INSERT INTO {events} (job_id, kind, data, created_at)
    SELECT id, '{EventKind.STATUS.value}', %(event)s::json, created_at FROM new_job
),
new_parsed AS (
    INSERT INTO {parsed} (key, data, created_at)
    SELECT DISTINCT ON (i.parsed_key) i.parsed_key, i.parsed_data, i.created_at
    FROM input i JOIN new_job j ON j.inflight_key = i.cache_key
    WHERE i.parsed_key IS NOT NULL
    ON CONFLICT DO NOTHING
)
SELECT id, inflight_key FROM new_job
"""


# What a submission's row of BATCH_INSERT carries (the other columns are constants).
_BATCH_FIELDS = (
    "project_id", "artefact_id", "prop", "property_hash", "subnetwork", "options", "cache_key",
    "priority", "max_attempts", "created_at",
)  # fmt: skip
BATCH_INSERT = _batch_insert_sql()
QUEUED_EVENT = {"status": Status.QUEUED.value}


def batch_row(params: dict[str, Any]) -> dict[str, Any]:
    """A submission's row of BATCH_INSERT, from its ``insert_params`` (JSON-ready)."""
    row = {name: params[name] for name in _BATCH_FIELDS}
    row["created_at"] = params["created_at"].isoformat()
    row["parsed_key"] = params.get("parsed_key")
    row["parsed_data"] = params.get("parsed_data")
    return row


def insert_new(conn: Connection, spec: JobSpec) -> Job | None:
    """PostgreSQL, one statement outside a transaction: the new queued job, or None when a
    stored result or an identical job in flight answers the submission (``submit_one``)."""
    values, params = insert_params(spec)
    job_id = conn.execute(INSERT[spec.parsed is not None], params).scalar()
    return None if job_id is None else new_job(job_id, values)
