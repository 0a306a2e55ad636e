"""Has the snapshot changed since the last run? A cheap conditional probe, and the cursor that remembers.

The sensors call `probe` once per tick. It sends a conditional GET (`If-Modified-Since` from the cursor, and
`If-None-Match` when the server ever sent an `ETag`) with `stream=True`, reads the status, the headers and at
most a few kilobytes (enough to tell an empty body), then closes the connection: the download itself is the
fetch asset's job. A HEAD would be cheaper, but not every server or CDN honours it, while conditional GETs are
honoured by Sensor.Community. There are no retries here: the next tick is the retry, and the sensor has to
stay far inside Dagster's 60 s evaluation budget.

The run key derives from the server's own `Last-Modified` (else its `ETag`, else a hash of the first bytes
and the length), so a daemon that restarts or loses its cursor asks for the same key again and Dagster
drops the duplicate request instead of ingesting the same snapshot twice.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from email.utils import format_datetime, parsedate_to_datetime
from enum import Enum
from pathlib import Path

import requests
import urllib3.exceptions

from aqi_assets.lib.common.fetch import (
    DEFAULT_USER_AGENT,
    FetchError,
    check_url,
    file_url_path,
    redact_text,
    redact_url,
    redact_urllib3_logs,
)

CURSOR_VERSION = 1
PROBE_CONNECT_TIMEOUT_S = 3.0
PROBE_READ_TIMEOUT_S = 10.0
# Enough bytes to recognise an empty body ("", whitespace, "[]") and to fingerprint a server that sends no
# validators; small enough that a probe never costs more than one TCP window.
PROBE_PEEK_BYTES = 4096


class CursorError(ValueError):
    """A stored cursor could not be read (not JSON, or written by an unknown cursor version)."""


@dataclass(frozen=True)
class CursorState:
    """What the last requested snapshot looked like; serialised as the sensor cursor."""

    last_modified: str | None = None  # HTTP-date exactly as the server sent it, echoed in If-Modified-Since
    etag: str | None = None  # echoed in If-None-Match
    modified_at: str | None = None  # ISO-8601 UTC of last_modified, to recognise an older snapshot
    run_key: str | None = None  # key of the last snapshot a run was requested for

    def to_json(self) -> str:
        return json.dumps({"version": CURSOR_VERSION, **asdict(self)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> CursorState:
        """The state stored in a cursor; no cursor yet gives the empty state."""
        if not text:
            return cls()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise CursorError(f"sensor cursor is not JSON ({error}): {text[:80]!r}") from None
        if not isinstance(data, dict) or data.get("version") != CURSOR_VERSION:
            version = data.get("version") if isinstance(data, dict) else None
            raise CursorError(f"sensor cursor has version {version!r}, expected {CURSOR_VERSION}: {text[:80]!r}")
        fields = {name: data.get(name) for name in ("last_modified", "etag", "modified_at", "run_key")}
        for name, value in fields.items():
            if value is not None and not isinstance(value, str):
                raise CursorError(f"sensor cursor field {name!r} is not a string: {value!r}")
        return cls(**fields)


class ProbeKind(str, Enum):
    CHANGED = "changed"  # a snapshot no run was requested for yet
    UNCHANGED = "unchanged"  # same (or older) snapshot as the cursor's
    ERROR = "error"  # nothing usable: unreachable, timeout, HTTP error, empty body, bad URL


@dataclass(frozen=True)
class ProbeOutcome:
    kind: ProbeKind
    detail: str  # machine-readable cause, e.g. "not_modified", "timeout", "server_error", "empty_body"
    reason: str  # one human line for the SkipReason or the log; never contains credentials
    cursor: CursorState  # the state to store: moves only when kind is CHANGED
    run_key: str | None = None  # set when kind is CHANGED
    status: int | None = None  # HTTP status (200 for a file)
    last_modified: str | None = None
    etag: str | None = None

    @property
    def changed(self) -> bool:
        return self.kind is ProbeKind.CHANGED


def parse_http_date(value: str | None) -> datetime | None:
    """An HTTP-date as an aware UTC datetime; None when absent or unparseable (then it is not trusted)."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:  # RFC 9110 dates are GMT even when the zone is written as "-0000"
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def _stamp(moment: datetime) -> str:
    """Sortable UTC text, with microseconds only when there are some (file mtimes have them, HTTP dates not)."""
    text = moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}"
    return text + "Z"


def _is_empty(head: bytes, body_ended: bool) -> bool:
    return body_ended and b"".join(head.split()) in (b"", b"[]")


def _decide(
    *,
    period: str,
    cursor: CursorState,
    safe_url: str,
    status: int,
    last_modified: str | None,
    modified: datetime | None,
    etag: str | None,
    head: bytes,
    body_ended: bool,
    length_hint: str,
) -> ProbeOutcome:
    """Compare a 200 answer with the cursor: the one place that decides changed / unchanged / empty.

    ``modified`` is ``last_modified`` parsed (for files: the exact mtime, with the microseconds an HTTP-date
    cannot carry).
    """
    known = parse_http_date(cursor.last_modified)
    if cursor.modified_at:
        known = datetime.fromisoformat(cursor.modified_at.replace("Z", "+00:00"))
    seen = {"status": status, "last_modified": last_modified, "etag": etag}

    if modified is not None:
        run_key = f"{period}:{_stamp(modified)}"
    elif etag:
        run_key = f"{period}:etag:{etag}"
    else:
        fingerprint = hashlib.sha256(length_hint.encode() + b"\0" + head).hexdigest()[:32]
        run_key = f"{period}:sha256:{fingerprint}"

    if modified is not None and known is not None and modified <= known:
        if modified == known:
            reason = f"{safe_url} unchanged: Last-Modified still {last_modified} (the server ignored If-Modified-Since)"
            return ProbeOutcome(ProbeKind.UNCHANGED, "same_snapshot", reason, cursor, **seen)
        reason = (
            f"{safe_url} served an older snapshot (Last-Modified {last_modified}, "
            f"the last one ingested is {cursor.last_modified}); waiting for a newer one"
        )
        return ProbeOutcome(ProbeKind.UNCHANGED, "older_snapshot", reason, cursor, **seen)
    if modified is None and run_key == cursor.run_key:
        reason = f"{safe_url} unchanged: same {'ETag' if etag else 'content fingerprint'} as the last snapshot"
        return ProbeOutcome(ProbeKind.UNCHANGED, "same_snapshot", reason, cursor, **seen)
    if _is_empty(head, body_ended):
        reason = f"{safe_url} answered {status} with an empty body ({head.strip()[:2]!r}); nothing to ingest"
        return ProbeOutcome(ProbeKind.ERROR, "empty_body", reason, cursor, **seen)

    new_cursor = CursorState(
        last_modified=last_modified if modified is not None else None,
        etag=etag,
        modified_at=_stamp(modified) if modified is not None else None,
        run_key=run_key,
    )
    reason = f"{safe_url} has a new snapshot ({run_key})"
    return ProbeOutcome(ProbeKind.CHANGED, "changed", reason, new_cursor, run_key=run_key, **seen)


def probe_session(user_agent: str = DEFAULT_USER_AGENT) -> requests.Session:
    """A session without adapter retries: a failed probe is retried by the next tick, not inside this one.

    (requests' default adapter, unlike `fetch.build_session(retries=0)`, raises read timeouts as `Timeout`.)
    """
    redact_urllib3_logs()
    session = requests.Session()
    session.headers["User-Agent"] = user_agent
    return session


def _is_read_timeout(error: requests.ConnectionError) -> bool:
    """A read timeout that a retrying adapter wrapped into MaxRetryError (and requests into ConnectionError)."""
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return isinstance(reason, urllib3.exceptions.ReadTimeoutError)


def _error(detail: str, reason: str, cursor: CursorState, status: int | None = None) -> ProbeOutcome:
    return ProbeOutcome(ProbeKind.ERROR, detail, reason, cursor, status=status)


def _probe_file(url: str, cursor: CursorState, period: str, peek_bytes: int) -> ProbeOutcome:
    """A local file: its mtime plays the part of Last-Modified."""
    path: Path = file_url_path(url)
    try:
        stat = path.stat()
        with open(path, "rb") as body:
            head = body.read(peek_bytes)
    except FileNotFoundError:
        return _error("file_missing", f"snapshot file not found: {path}", cursor)
    except OSError as error:
        return _error("file_unreadable", f"snapshot file {path} cannot be read: {error}", cursor)
    modified = datetime.fromtimestamp(stat.st_mtime, timezone.utc)
    return _decide(
        period=period,
        cursor=cursor,
        safe_url=redact_url(url),
        status=200,
        last_modified=format_datetime(modified, usegmt=True),
        modified=modified,
        etag=None,
        head=head,
        body_ended=stat.st_size <= len(head),
        length_hint=str(stat.st_size),
    )


def probe(
    url: str,
    cursor: CursorState,
    *,
    period: str,
    session: requests.Session | None = None,
    connect_timeout_s: float = PROBE_CONNECT_TIMEOUT_S,
    read_timeout_s: float = PROBE_READ_TIMEOUT_S,
    allowed_file_roots: Sequence[str | Path] = (),
    user_agent: str = DEFAULT_USER_AGENT,
    peek_bytes: int = PROBE_PEEK_BYTES,
) -> ProbeOutcome:
    """Probe ``url`` once and say whether it holds a snapshot no run was requested for yet.

    Never raises for server or network trouble: every failure is an ERROR outcome whose ``reason`` names the
    cause (unreachable, timeout, HTTP status, empty body) and whose cursor is the one passed in.
    """
    try:
        scheme = check_url(url, allowed_file_roots)
    except FetchError as error:
        return _error("bad_url", str(error), cursor)
    if scheme == "file":
        try:
            return _probe_file(url, cursor, period, peek_bytes)
        except FetchError as error:
            return _error("bad_url", str(error), cursor)

    headers: dict[str, str] = {}
    if cursor.last_modified:
        headers["If-Modified-Since"] = cursor.last_modified
    if cursor.etag:
        headers["If-None-Match"] = cursor.etag
    timeout = (connect_timeout_s, read_timeout_s)
    if session is not None:
        return _probe_http(url, cursor, period, session, timeout, headers, peek_bytes)
    with probe_session(user_agent) as own_session:  # one session per tick: closed with the tick
        return _probe_http(url, cursor, period, own_session, timeout, headers, peek_bytes)


def _probe_http(
    url: str,
    cursor: CursorState,
    period: str,
    session: requests.Session,
    timeout: tuple[float, float],
    headers: dict[str, str],
    peek_bytes: int,
) -> ProbeOutcome:
    """The http(s) part of `probe`: one conditional GET through ``session``."""
    safe_url = redact_url(url)
    try:
        response = session.get(url, stream=True, timeout=timeout, headers=headers)
    except requests.Timeout as error:  # before ConnectionError: ConnectTimeout is both
        return _error("timeout", f"{safe_url} timed out (limits {timeout} s): {redact_text(str(error))}", cursor)
    except requests.ConnectionError as error:
        if _is_read_timeout(error):
            return _error("timeout", f"{safe_url} timed out (limits {timeout} s): {redact_text(str(error))}", cursor)
        return _error("unreachable", f"{safe_url} is unreachable: {redact_text(str(error))}", cursor)
    except requests.RequestException as error:
        return _error("request_failed", f"GET {safe_url} failed: {redact_text(str(error))}", cursor)

    with response:
        status = response.status_code
        if status == 304:
            reason = f"{safe_url} not modified (304) since {cursor.last_modified or cursor.etag}"
            return ProbeOutcome(
                ProbeKind.UNCHANGED,
                "not_modified",
                reason,
                cursor,
                status=status,
                last_modified=cursor.last_modified,
                etag=cursor.etag,
            )
        if status >= 500:
            return _error("server_error", f"{safe_url} answered HTTP {status} {response.reason}", cursor, status)
        if status != 200:
            return _error("http_error", f"{safe_url} answered HTTP {status} {response.reason}", cursor, status)
        try:
            # urllib3 2 returns exactly peek_bytes decoded bytes unless the body ends first.
            head = response.raw.read(peek_bytes, decode_content=True) or b""
        except urllib3.exceptions.ReadTimeoutError as error:
            return _error("timeout", f"{safe_url} timed out reading the body: {redact_text(str(error))}", cursor)
        except (urllib3.exceptions.HTTPError, OSError) as error:
            return _error("broken_body", f"{safe_url} broke off: {redact_text(str(error))}", cursor, status)
        return _decide(
            period=period,
            cursor=cursor,
            safe_url=safe_url,
            status=status,
            last_modified=response.headers.get("Last-Modified"),
            modified=parse_http_date(response.headers.get("Last-Modified")),
            etag=response.headers.get("ETag"),
            head=head,
            body_ended=len(head) < peek_bytes,
            length_hint=response.headers.get("Content-Length", ""),
        )


# Probing when the next snapshot is due. The server rewrites data.json on a fixed cadence, so the moment of the
# next file is the last one's Last-Modified plus whole cadences. A tick that finds nothing new and has that moment
# within its reach waits for it and probes then: a new snapshot is seen about a second after it appears instead
# of up to a whole sensor interval later, for at most `DUE_PROBES` extra conditional GETs per cadence.
DUE_LEAD_S = 1.0  # probe this long after the due moment: the server needs a moment to write the file
DUE_PROBES = 3  # probes at and after the due moment (one second apart: the cadence jitters)
DUE_RETRY_S = 1.0
DUE_STALE_CADENCES = 3  # a last snapshot older than this many cadences: the server is behind, no schedule


def due_in(modified_at: str | None, now: datetime, every_s: float | None, horizon_s: float,
           lead_s: float = DUE_LEAD_S) -> float | None:
    """Seconds from `now` until the next snapshot is due (plus `lead_s`), when that is within `horizon_s`.

    None without a cadence or a known last snapshot, when the last one is more than `DUE_STALE_CADENCES`
    cadences old (the server has fallen behind its schedule), or when the next is due later than the horizon.
    """
    if not every_s or not modified_at or horizon_s <= 0:
        return None
    last = datetime.fromisoformat(modified_at)
    if last.tzinfo is None:
        last = last.replace(tzinfo=timezone.utc)
    age = (now - last).total_seconds()
    if age < 0 or age > DUE_STALE_CADENCES * every_s:
        return None
    wait = (math.floor(age / every_s) + 1) * every_s + lead_s - age
    if wait > every_s:  # still inside the lead of the cadence that just passed
        wait -= every_s
    return wait if wait <= horizon_s else None
