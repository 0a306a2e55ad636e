"""Validation of the AQI history, independent of Dagster: each function returns a `CheckOutcome`.

Each check looks at a *scope*: the rows of the snapshots a run merged (so a check's cost follows the data a
run adds, not the size of the history), or the whole history for an audit (``snapshots=None``). The index
check recomputes every index from the stored concentrations with `aqi_assets.lib.air_quality.indices`, batch by batch
(bounded memory), and compares.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from aqi_assets.lib.air_quality.indices import DAQI_BANDS, compute_indices
from aqi_assets.lib.air_quality.sensor_types import MASS_CONCENTRATION_PM_TYPES
from aqi_assets.lib.common.markdown import markdown_table
from aqi_assets.lib.common.utc import aware_utc, naive_utc
from aqi_assets.lib.readings.periods import snapshot_periods
from aqi_assets.lib.readings.schema import INDEX_COLUMNS, READINGS_KEY

SAMPLE_ROWS = 10
# The stored indices (numbers) and their labels (band, category, beyond flag), from the contract.
INDEX_NAMES = tuple(name for name, sql_type in INDEX_COLUMNS.items() if sql_type in ("TINYINT", "SMALLINT"))
LABEL_NAMES = tuple(name for name in INDEX_COLUMNS if name not in INDEX_NAMES)
KEY = READINGS_KEY
FRESHNESS_LIMITS = {name: period.freshness_fail for name, period in snapshot_periods().items()}
STATION_WINDOW = timedelta(minutes=5)  # a PM and a climate reading of one station this close are "the same time"
# PM2.5 is part of PM10; optical sensors estimate both, so PM2.5 may exceed PM10 by rounding, no more.
PM_ORDER_TOLERANCE_UGM3 = 1.0
PM_ORDER_TOLERANCE_SHARE = 0.05


@dataclass
class CheckOutcome:
    passed: bool
    failing_rows: int = 0
    checked_rows: int = 0
    sample: list[dict[str, object]] = field(default_factory=list)
    details: dict[str, object] = field(default_factory=dict)
    # Headline figures shown as typed metadata (ints, floats, datetimes), e.g. "age_minutes/5min".
    figures: dict[str, int | float | datetime] = field(default_factory=dict)
    counts_rows: bool = True  # False for checks that judge a share or an age rather than rows

    def sample_markdown(self) -> str:
        columns = list(self.sample[0]) if self.sample else []
        return markdown_table(columns, [[row[c] for c in columns] for row in self.sample])


Scope = Sequence[str] | None  # snapshot names, or None for the whole history


def scope_snapshots(connection: duckdb.DuckDBPyConnection, run_id: str | None) -> list[str]:
    """The snapshots merged by ``run_id``; when it merged none, the newest merged snapshot of each period."""
    if run_id:
        merged = [
            row[0]
            for row in connection.execute(
                "SELECT snapshot FROM snapshot_log WHERE run_id = ? AND status = 'merged' ORDER BY snapshot",
                [run_id],
            ).fetchall()
        ]
        if merged:
            return merged
    return [
        row[0]
        for row in connection.execute(
            "SELECT arg_max(snapshot, processed_at) FROM snapshot_log WHERE status = 'merged' "
            "GROUP BY period ORDER BY 1"
        ).fetchall()
    ]


def _rows(scope: Scope) -> tuple[str, dict[str, object]]:
    """A FROM-able relation of the scope's rows, and its parameters."""
    if scope is None:
        return "aqi_readings", {}
    return "(SELECT * FROM aqi_readings WHERE list_contains($snapshots, snapshot))", {"snapshots": list(scope)}


def _scope_details(scope: Scope) -> dict[str, object]:
    return {"scope": "whole history" if scope is None else {"snapshots": list(scope)}}


def _numeric(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)


def _same_labels(stored: pa.Array, expected: pa.Array) -> np.ndarray:
    """Element-wise equality where NULL equals NULL (vectorised in Arrow)."""
    equal = pc.fill_null(pc.equal(stored, expected), False)
    both_null = pc.and_(pc.is_null(stored), pc.is_null(expected))
    return np.asarray(pc.or_(equal, both_null).to_numpy(zero_copy_only=False), dtype=bool)


def _mass_concentration_rows(sensor_type: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """True where the sensor type reports µg/m³ (see `sensor_types`): only those rows may carry an index."""
    key = pc.utf8_upper(pc.utf8_trim_whitespace(sensor_type))
    mass = pc.is_in(key, value_set=pa.array(sorted(MASS_CONCENTRATION_PM_TYPES), pa.string()))
    return np.asarray(pc.fill_null(mass, False).to_numpy(zero_copy_only=False), dtype=bool)


def _compare_batch(batch: pa.RecordBatch, outcome: CheckOutcome, mismatches_per_column: dict[str, int]) -> None:
    # Other sensor types must have NULL indices, whatever their PM columns hold.
    mass = _mass_concentration_rows(batch.column("sensor_type"))
    pm25 = np.where(mass, _numeric(batch.column("pm25")), np.nan)
    pm10 = np.where(mass, _numeric(batch.column("pm10")), np.nan)
    expected = compute_indices(pm25, pm10)
    bad = np.zeros(batch.num_rows, dtype=bool)
    for name in (*INDEX_NAMES, *LABEL_NAMES):
        column = batch.column(name)
        if name in INDEX_NAMES:
            stored = _numeric(column)
            same = (stored == expected[name]) | (np.isnan(stored) & np.isnan(expected[name]))
        else:
            same = _same_labels(column, pa.array(expected[name], type=column.type))
        mismatches_per_column[name] += int((~same).sum())
        bad |= ~same
    outcome.checked_rows += batch.num_rows
    outcome.failing_rows += int(bad.sum())
    for row in np.flatnonzero(bad)[: SAMPLE_ROWS - len(outcome.sample)]:
        record = {
            c: batch.column(c)[int(row)].as_py() for c in (*KEY, "sensor_type", "pm25", "pm10", "daqi", "aqi_us")
        }
        record["expected_daqi"] = expected["daqi"][row]
        record["expected_aqi_us"] = expected["aqi_us"][row]
        outcome.sample.append(record)


def indices_match_concentrations(
    connection: duckdb.DuckDBPyConnection, scope: Scope = None, batch_rows: int = 500_000
) -> CheckOutcome:
    """Every stored index (and label) equals the one recomputed from the stored PM2.5 / PM10; a sensor type that
    does not report µg/m³ must have NULL indices."""
    columns = ", ".join(f'"{c}"' for c in (*KEY, "sensor_type", "pm25", "pm10", *INDEX_NAMES, *LABEL_NAMES))
    relation, parameters = _rows(scope)
    outcome = CheckOutcome(passed=True)
    mismatches_per_column = dict.fromkeys((*INDEX_NAMES, *LABEL_NAMES), 0)
    # A cursor of its own: a relation's Arrow reader streams batches (bounded memory) without an extra copy.
    with connection.cursor() as cursor:
        reader = cursor.sql(f"SELECT {columns} FROM {relation}", params=parameters).to_arrow_reader(batch_rows)
        for batch in reader:
            _compare_batch(batch, outcome, mismatches_per_column)
    outcome.passed = outcome.failing_rows == 0
    outcome.details = {
        "mismatches_per_column": {k: v for k, v in mismatches_per_column.items() if v},
        **_scope_details(scope),
    }
    return outcome


def _sql_violations(
    connection: duckdb.DuckDBPyConnection, condition: str, columns: str, scope: Scope
) -> CheckOutcome:
    relation, parameters = _rows(scope)
    failing, checked = connection.execute(
        f"SELECT count(*) FILTER (WHERE {condition}), count(*) FROM {relation}", parameters
    ).fetchone()
    cursor = connection.execute(
        f"SELECT {columns} FROM {relation} WHERE {condition} LIMIT {SAMPLE_ROWS}", parameters
    )
    names = [d[0] for d in cursor.description]
    sample = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    return CheckOutcome(
        passed=failing == 0, failing_rows=int(failing), checked_rows=int(checked), sample=sample,
        details=_scope_details(scope),
    )


def indices_in_range(connection: duckdb.DuckDBPyConnection, scope: Scope = None) -> CheckOutcome:
    condition = (
        "NOT (coalesce(daqi_pm25 BETWEEN 1 AND 10, true) AND coalesce(daqi_pm10 BETWEEN 1 AND 10, true) "
        "AND coalesce(daqi BETWEEN 1 AND 10, true) AND coalesce(aqi_us_pm25 BETWEEN 0 AND 500, true) "
        "AND coalesce(aqi_us_pm10 BETWEEN 0 AND 500, true) AND coalesce(aqi_us BETWEEN 0 AND 500, true))"
    )
    return _sql_violations(connection, condition, 'period, sensor_id, "timestamp", daqi, aqi_us', scope)


def overall_is_max_of_sub_indices(connection: duckdb.DuckDBPyConnection, scope: Scope = None) -> CheckOutcome:
    condition = (
        "daqi IS DISTINCT FROM greatest(daqi_pm25, daqi_pm10) "
        "OR aqi_us IS DISTINCT FROM greatest(aqi_us_pm25, aqi_us_pm10)"
    )
    return _sql_violations(
        connection,
        condition,
        'period, sensor_id, "timestamp", daqi_pm25, daqi_pm10, daqi, aqi_us_pm25, aqi_us_pm10, aqi_us',
        scope,
    )


def daqi_band_matches_index(connection: duckdb.DuckDBPyConnection, scope: Scope = None) -> CheckOutcome:
    cases = " ".join(f"WHEN daqi BETWEEN {lo} AND {hi} THEN '{name}'" for lo, hi, name in DAQI_BANDS)
    condition = f"daqi_band IS DISTINCT FROM (CASE {cases} END)"
    return _sql_violations(connection, condition, 'period, sensor_id, "timestamp", daqi, daqi_band', scope)


def no_duplicate_readings(connection: duckdb.DuckDBPyConnection, scope: Scope = None) -> CheckOutcome:
    """(period, sensor_id, timestamp) is unique; within a scope, among the whole history's rows of its keys."""
    relation, parameters = _rows(scope)
    # The scope's time span as constants: the whole history's side of the join then reads only the row groups
    # whose zone maps overlap it, not every row ever merged.
    first, last = connection.execute(f'SELECT min("timestamp"), max("timestamp") FROM {relation}', parameters
                                     ).fetchall()[0]
    cursor = connection.execute(
        f"""
        SELECT a.period, a.sensor_id, a."timestamp", count(*) AS copies
        FROM aqi_readings a SEMI JOIN {relation} s
             ON a.period = s.period AND a.sensor_id = s.sensor_id AND a."timestamp" = s."timestamp"
        WHERE a."timestamp" BETWEEN $first AND $last
        GROUP BY ALL HAVING count(*) > 1 ORDER BY copies DESC, a.sensor_id
        """,
        {**parameters, "first": first, "last": last},
    )
    names = [d[0] for d in cursor.description]
    duplicates = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    checked = connection.execute(f"SELECT count(*) FROM {relation}", parameters).fetchone()[0]
    return CheckOutcome(
        passed=not duplicates,
        failing_rows=sum(int(d["copies"]) for d in duplicates),
        checked_rows=int(checked),
        sample=duplicates[:SAMPLE_ROWS],
        details=_scope_details(scope),
    )


def pm25_not_above_pm10(connection: duckdb.DuckDBPyConnection, scope: Scope = None) -> CheckOutcome:
    """PM2.5 is part of PM10: flag readings whose PM2.5 exceeds PM10 by more than rounding can explain
    (1 µg/m³ or 5 % of PM10, whichever is larger) — a faulty or saturated sensor."""
    condition = (
        f"pm25 > pm10 + greatest({PM_ORDER_TOLERANCE_UGM3}, {PM_ORDER_TOLERANCE_SHARE} * pm10)"
    )
    outcome = _sql_violations(
        connection, condition, 'period, sensor_id, "timestamp", sensor_type, pm25, pm10', scope
    )
    outcome.details["tolerance"] = (
        f"PM2.5 > PM10 + max({PM_ORDER_TOLERANCE_UGM3:g} µg/m³, {PM_ORDER_TOLERANCE_SHARE:.0%} of PM10)"
    )
    return outcome


def quarantine_share(connection: duckdb.DuckDBPyConnection, threshold: float, scope: Scope = None) -> CheckOutcome:
    """Share of the values that broke a rule, per snapshot in scope (whole history: every merged snapshot).

    Counted from `snapshot_log` (every value of the snapshot, also those of readings already in the history),
    so a snapshot that repeats its predecessor's readings is judged on its own content.
    """
    where = "status = 'merged' AND values_read IS NOT NULL"
    parameters: dict[str, object] = {}
    if scope is not None:
        where += " AND list_contains($snapshots, snapshot)"
        parameters["snapshots"] = list(scope)
    rows = connection.execute(
        f"SELECT period, snapshot, values_invalid, values_read FROM snapshot_log WHERE {where} "
        "ORDER BY period, snapshot",
        parameters,
    ).fetchall()
    per_snapshot = {}
    worst: dict[str, float] = {}
    for period, snapshot, invalid, total in rows:
        share = invalid / total if total else 0.0
        per_snapshot[snapshot] = {"period": period, "quarantined": int(invalid), "values": int(total), "share": share}
        worst[period] = max(worst.get(period, 0.0), share)
    figures: dict[str, int | float | datetime] = {"threshold": threshold}
    figures.update({f"quarantined_share/{period}": round(share, 4) for period, share in worst.items()})
    return CheckOutcome(
        passed=all(share <= threshold for share in worst.values()),
        details={"threshold": threshold, "per_snapshot": dict(list(per_snapshot.items())[-20:])},
        figures=figures,
        counts_rows=False,
    )


def humid_pm_share(
    connection: duckdb.DuckDBPyConnection,
    humidity_limit: float = 70.0,
    max_share: float = 0.5,
    scope: Scope = None,
) -> CheckOutcome:
    """Share of PM readings whose station (same location.id) reports humidity above the limit at the same
    time (within 5 minutes, same period). Optical PM sensors (SDS011) read high in humid air; a station's
    humidity comes from its climate sensor. Each sensor's latest reading in scope counts once."""
    relation, parameters = _rows(scope)
    rows = connection.execute(
        f"""
        WITH scoped AS (SELECT * FROM {relation}),
        pm AS (
            SELECT period, sensor_id, location_id, "timestamp" FROM scoped
            WHERE pm25 IS NOT NULL OR pm10 IS NOT NULL
            QUALIFY row_number() OVER (PARTITION BY period, sensor_id ORDER BY "timestamp" DESC) = 1
        ),
        humid AS (
            SELECT DISTINCT pm.period, pm.sensor_id
            FROM pm JOIN scoped h
              ON h.period = pm.period AND h.location_id = pm.location_id AND h.humidity > $limit
             AND h."timestamp" BETWEEN pm."timestamp" - $window AND pm."timestamp" + $window
        )
        SELECT pm.period, count(*) AS pm_readings, count(humid.sensor_id) AS humid
        FROM pm LEFT JOIN humid USING (period, sensor_id)
        GROUP BY pm.period ORDER BY pm.period
        """,
        {**parameters, "limit": humidity_limit, "window": STATION_WINDOW},
    ).fetchall()
    per_period = {
        period: {"pm_readings": int(n), "humid": int(h), "share": (h / n if n else 0.0)} for period, n, h in rows
    }
    figures: dict[str, int | float | datetime] = {"max_share": max_share}
    figures.update({f"humid_share/{period}": round(v["share"], 4) for period, v in per_period.items()})
    return CheckOutcome(
        passed=all(p["share"] <= max_share for p in per_period.values()),
        details={"humidity_limit": humidity_limit, "max_share": max_share, "per_period": per_period,
                 **_scope_details(scope)},
        figures=figures,
        counts_rows=False,
    )


def readings_fresh(connection: duckdb.DuckDBPyConnection, now: datetime | None = None) -> CheckOutcome:
    """The newest reading of each period that has data is younger than its limit (30 min / 26 h).

    Looks at each period's rows merged within its limit before that period's newest merge (constant bounds, so
    zone maps skip the rest of the history); only a period with none there is looked up in the whole history.
    """
    now = naive_utc(now)  # an aware `now` is converted to UTC, not stripped of its offset
    newest_merges = dict(
        connection.execute(
            "SELECT period, max(processed_at) FROM snapshot_log WHERE status = 'merged' GROUP BY period"
        ).fetchall()
    )
    newest: dict[str, datetime] = {}
    for period, limit in FRESHNESS_LIMITS.items():
        if period not in newest_merges:
            continue
        latest = connection.execute(
            'SELECT max("timestamp") FROM aqi_readings WHERE period = $period AND ingested_at >= $since',
            {"period": period, "since": newest_merges[period] - limit},
        ).fetchall()[0][0]
        if latest is None:  # nothing merged recently: the newest reading is older still (a stale period)
            latest = connection.execute(
                'SELECT max("timestamp") FROM aqi_readings WHERE period = $period', {"period": period}
            ).fetchall()[0][0]
        if latest is not None:
            newest[period] = latest
    details: dict[str, object] = {}
    figures: dict[str, int | float | datetime] = {}
    passed = True
    for period, limit in FRESHNESS_LIMITS.items():
        latest = newest.get(period)
        if latest is None:
            details[period] = "no readings yet"
            continue
        age = now - latest
        stale = age > limit
        passed &= not stale
        figures[f"newest_reading/{period}"] = aware_utc(latest)
        figures[f"age_minutes/{period}"] = round(age.total_seconds() / 60, 1)
        figures[f"limit_minutes/{period}"] = limit.total_seconds() / 60
        details[period] = {
            "newest_reading": latest.isoformat(),
            "age_minutes": round(age.total_seconds() / 60, 1),
            "limit_minutes": limit.total_seconds() / 60,
            "stale": stale,
        }
    return CheckOutcome(passed=passed, details=details, figures=figures, counts_rows=False)
