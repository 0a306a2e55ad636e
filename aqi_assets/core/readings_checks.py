"""Validation of the AQI history, independent of Dagster: each function returns a `CheckOutcome`.

The index check recomputes every index from the stored concentrations with `aqi_assets.core.indices`,
batch by batch (bounded memory for any history size), and compares.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import duckdb
import numpy as np
import pyarrow as pa

from aqi_assets.core.indices import DAQI_BANDS, compute_indices

SAMPLE_ROWS = 10
INDEX_NAMES = ("daqi_pm25", "daqi_pm10", "daqi", "aqi_us_pm25", "aqi_us_pm10", "aqi_us")
LABEL_NAMES = ("daqi_band", "aqi_us_category", "aqi_us_beyond")
KEY = ("period", "sensor_id", "timestamp")
FRESHNESS_LIMITS = {"5min": timedelta(minutes=30), "24h": timedelta(hours=26)}


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
        if not self.sample:
            return "_none_"
        columns = list(self.sample[0])
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in self.sample]
        return "\n".join(lines)


def _same(stored: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Element-wise equality where NULL equals NULL."""
    stored_missing = np.array([v is None or (isinstance(v, float) and np.isnan(v)) for v in stored], dtype=bool)
    expected_missing = np.array([v is None or (isinstance(v, float) and np.isnan(v)) for v in expected], dtype=bool)
    equal = np.zeros(len(stored), dtype=bool)
    both = ~stored_missing & ~expected_missing
    equal[both] = stored[both] == expected[both]
    return equal | (stored_missing & expected_missing)


def _numeric(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)


def indices_match_concentrations(connection: duckdb.DuckDBPyConnection, batch_rows: int = 500_000) -> CheckOutcome:
    """Every stored index (and label) equals the one recomputed from the stored PM2.5 / PM10."""
    columns = ", ".join(f'"{c}"' for c in (*KEY, "pm25", "pm10", *INDEX_NAMES, *LABEL_NAMES))
    reader = connection.sql(f"SELECT {columns} FROM aqi_readings").to_arrow_reader(batch_rows)
    outcome = CheckOutcome(passed=True)
    mismatches_per_column = dict.fromkeys((*INDEX_NAMES, *LABEL_NAMES), 0)
    for batch in reader:
        expected = compute_indices(_numeric(batch.column("pm25")), _numeric(batch.column("pm10")))
        bad = np.zeros(batch.num_rows, dtype=bool)
        for name in (*INDEX_NAMES, *LABEL_NAMES):
            if name in INDEX_NAMES:
                stored = _numeric(batch.column(name))
                same = (stored == expected[name]) | (np.isnan(stored) & np.isnan(expected[name]))
            else:
                stored = np.asarray(batch.column(name).to_pylist(), dtype=object)
                same = _same(stored, np.asarray(expected[name], dtype=object))
            mismatches_per_column[name] += int((~same).sum())
            bad |= ~same
        outcome.checked_rows += batch.num_rows
        outcome.failing_rows += int(bad.sum())
        for row in np.flatnonzero(bad)[: SAMPLE_ROWS - len(outcome.sample)]:
            record = {c: batch.column(c)[int(row)].as_py() for c in (*KEY, "pm25", "pm10", "daqi", "aqi_us")}
            record["expected_daqi"] = expected["daqi"][row]
            record["expected_aqi_us"] = expected["aqi_us"][row]
            outcome.sample.append(record)
    outcome.passed = outcome.failing_rows == 0
    outcome.details = {"mismatches_per_column": {k: v for k, v in mismatches_per_column.items() if v}}
    return outcome


def _sql_violations(connection: duckdb.DuckDBPyConnection, condition: str, columns: str) -> CheckOutcome:
    failing = connection.execute(f"SELECT count(*) FROM aqi_readings WHERE {condition}").fetchone()[0]
    checked = connection.execute("SELECT count(*) FROM aqi_readings").fetchone()[0]
    sample_cursor = connection.execute(
        f"SELECT {columns} FROM aqi_readings WHERE {condition} LIMIT {SAMPLE_ROWS}"
    )
    names = [d[0] for d in sample_cursor.description]
    sample = [dict(zip(names, row, strict=True)) for row in sample_cursor.fetchall()]
    return CheckOutcome(passed=failing == 0, failing_rows=int(failing), checked_rows=int(checked), sample=sample)


def indices_in_range(connection: duckdb.DuckDBPyConnection) -> CheckOutcome:
    condition = (
        "NOT (coalesce(daqi_pm25 BETWEEN 1 AND 10, true) AND coalesce(daqi_pm10 BETWEEN 1 AND 10, true) "
        "AND coalesce(daqi BETWEEN 1 AND 10, true) AND coalesce(aqi_us_pm25 BETWEEN 0 AND 500, true) "
        "AND coalesce(aqi_us_pm10 BETWEEN 0 AND 500, true) AND coalesce(aqi_us BETWEEN 0 AND 500, true))"
    )
    return _sql_violations(connection, condition, 'period, sensor_id, "timestamp", daqi, aqi_us')


def overall_is_max_of_sub_indices(connection: duckdb.DuckDBPyConnection) -> CheckOutcome:
    condition = (
        "daqi IS DISTINCT FROM greatest(daqi_pm25, daqi_pm10) "
        "OR aqi_us IS DISTINCT FROM greatest(aqi_us_pm25, aqi_us_pm10)"
    )
    return _sql_violations(
        connection,
        condition,
        'period, sensor_id, "timestamp", daqi_pm25, daqi_pm10, daqi, aqi_us_pm25, aqi_us_pm10, aqi_us',
    )


def daqi_band_matches_index(connection: duckdb.DuckDBPyConnection) -> CheckOutcome:
    cases = " ".join(f"WHEN daqi BETWEEN {lo} AND {hi} THEN '{name}'" for lo, hi, name in DAQI_BANDS)
    condition = f"daqi_band IS DISTINCT FROM (CASE {cases} END)"
    return _sql_violations(connection, condition, 'period, sensor_id, "timestamp", daqi, daqi_band')


def no_duplicate_readings(connection: duckdb.DuckDBPyConnection) -> CheckOutcome:
    cursor = connection.execute(
        'SELECT period, sensor_id, "timestamp", count(*) AS copies FROM aqi_readings '
        "GROUP BY ALL HAVING count(*) > 1 ORDER BY copies DESC"
    )
    names = [d[0] for d in cursor.description]
    duplicates = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    checked = connection.execute("SELECT count(*) FROM aqi_readings").fetchone()[0]
    return CheckOutcome(
        passed=not duplicates,
        failing_rows=sum(int(d["copies"]) for d in duplicates),
        checked_rows=int(checked),
        sample=duplicates[:SAMPLE_ROWS],
    )


def quarantine_share(connection: duckdb.DuckDBPyConnection, threshold: float) -> CheckOutcome:
    """Share of quarantined values in the newest merged snapshot of each period."""
    rows = connection.execute(
        """
        WITH newest AS (
            SELECT period, arg_max(snapshot, processed_at) AS snapshot FROM snapshot_log
            WHERE status = 'merged' GROUP BY period
        ),
        rejected AS (
            SELECT snapshot, count(*) AS n FROM rejected_values WHERE snapshot IN (SELECT snapshot FROM newest)
            GROUP BY snapshot
        ),
        accepted AS (
            SELECT snapshot, count(*) AS readings,
                   sum(((pm1 IS NOT NULL)::INT + (pm25 IS NOT NULL)::INT + (pm4 IS NOT NULL)::INT
                        + (pm10 IS NOT NULL)::INT + (temperature IS NOT NULL)::INT + (humidity IS NOT NULL)::INT
                        + (pressure IS NOT NULL)::INT + (pressure_at_sealevel IS NOT NULL)::INT
                        + coalesce(cardinality(other_values), 0))) AS n
            FROM aqi_readings WHERE snapshot IN (SELECT snapshot FROM newest) GROUP BY snapshot
        )
        SELECT newest.period, newest.snapshot, coalesce(rejected.n, 0), coalesce(accepted.n, 0)
        FROM newest LEFT JOIN rejected USING (snapshot) LEFT JOIN accepted USING (snapshot)
        ORDER BY newest.period
        """
    ).fetchall()
    shares = {}
    passed = True
    for period, snapshot, rejected, accepted in rows:
        total = rejected + accepted
        share = rejected / total if total else 0.0
        shares[period] = {"snapshot": snapshot, "quarantined": int(rejected), "values": int(total), "share": share}
        passed &= share <= threshold
    figures: dict[str, int | float | datetime] = {"threshold": threshold}
    figures.update({f"quarantined_share/{period}": round(v["share"], 4) for period, v in shares.items()})
    return CheckOutcome(
        passed=passed, details={"threshold": threshold, "per_period": shares}, figures=figures, counts_rows=False
    )


def humid_pm_share(
    connection: duckdb.DuckDBPyConnection, humidity_limit: float = 70.0, max_share: float = 0.5
) -> CheckOutcome:
    """Share of PM readings whose station (same location.id, same period and minute window) reports RH > limit.

    Optical PM sensors (SDS011) read high in humid air; the station's humidity comes from its climate sensor.
    Uses each sensor's latest reading per period.
    """
    rows = connection.execute(
        """
        WITH latest AS (
            SELECT * FROM aqi_readings
            QUALIFY row_number() OVER (PARTITION BY period, sensor_id ORDER BY "timestamp" DESC) = 1
        ),
        station_humidity AS (
            SELECT period, location_id, max(humidity) AS humidity FROM latest
            WHERE humidity IS NOT NULL AND location_id IS NOT NULL GROUP BY ALL
        )
        SELECT l.period, count(*) AS pm_readings,
               count(*) FILTER (WHERE h.humidity > ?) AS humid
        FROM latest l LEFT JOIN station_humidity h USING (period, location_id)
        WHERE l.pm25 IS NOT NULL OR l.pm10 IS NOT NULL
        GROUP BY l.period ORDER BY l.period
        """,
        [humidity_limit],
    ).fetchall()
    per_period = {
        period: {"pm_readings": int(n), "humid": int(h), "share": (h / n if n else 0.0)} for period, n, h in rows
    }
    passed = all(p["share"] <= max_share for p in per_period.values())
    figures: dict[str, int | float | datetime] = {"max_share": max_share}
    figures.update({f"humid_share/{period}": round(v["share"], 4) for period, v in per_period.items()})
    return CheckOutcome(
        passed=passed,
        details={"humidity_limit": humidity_limit, "max_share": max_share, "per_period": per_period},
        figures=figures,
        counts_rows=False,
    )


def readings_fresh(connection: duckdb.DuckDBPyConnection, now: datetime | None = None) -> CheckOutcome:
    """The newest reading of each period that has data is younger than its limit (30 min / 26 h)."""
    now = (now or datetime.now(timezone.utc)).replace(tzinfo=None)
    newest = dict(connection.execute('SELECT period, max("timestamp") FROM aqi_readings GROUP BY 1').fetchall())
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
        figures[f"newest_reading/{period}"] = latest.replace(tzinfo=timezone.utc)
        figures[f"age_minutes/{period}"] = round(age.total_seconds() / 60, 1)
        figures[f"limit_minutes/{period}"] = limit.total_seconds() / 60
        details[period] = {
            "newest_reading": latest.isoformat(),
            "age_minutes": round(age.total_seconds() / 60, 1),
            "limit_minutes": limit.total_seconds() / 60,
            "stale": stale,
        }
    return CheckOutcome(passed=passed, details=details, figures=figures, counts_rows=False)
