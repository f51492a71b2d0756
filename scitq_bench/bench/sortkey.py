"""The leaderboard ordering as bytes, so the database can rank.

``encoder(board)`` turns an entry into a byte string whose plain byte order is exactly
``ranking.sort_key``'s order (smaller is better): for each (column, task) of the
ranking, a flag byte (0 real, 1 missing: missing never ranks above a real score) and
the value as 8 order-preserving bytes (negated for 'desc' columns), then the
submission instant and the submission id. Both SQLite (BLOB, memcmp) and PostgreSQL
(bytea) compare such keys byte by byte, with no collation in the way, so a ranked
page is an indexed ``ORDER BY sort_key LIMIT n`` instead of a sort of every row.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import datetime, timezone

from scitq_bench.bench.ranking import Board, Entry

_DOUBLE = struct.Struct(">d")
_UINT = struct.Struct(">Q")
_SIGN = 1 << 63
_ALL = (1 << 64) - 1
MISSING = b"\x01" + bytes(8)
EPOCH = datetime(1970, 1, 1)


def value_bytes(value: float) -> bytes:
    """Nine bytes ordering like the float (ascending); -0.0 and 0.0 alike."""
    bits = _UINT.unpack(_DOUBLE.pack(value + 0.0))[0]
    bits = (~bits & _ALL) if bits & _SIGN else (bits | _SIGN)
    return b"\x00" + _UINT.pack(bits)


def instant_bytes(moment: datetime) -> bytes:
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    delta = moment - EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return _UINT.pack(micros + (1 << 62))  # room for instants before 1970


def encoder(board: Board) -> Callable[[Entry], bytes]:
    pairs = [(c.key, c.sorting == "desc", task)
             for c in board.ranking_columns for task in board.task_keys]

    def encode(entry: Entry) -> bytes:
        parts = []
        for key, descending, task in pairs:
            value = (entry.scores.get(task) or {}).get(key)
            if value is None or value != value:
                parts.append(MISSING)
            else:
                parts.append(value_bytes(-float(value) if descending else float(value)))
        parts.append(instant_bytes(entry.submitted_at))
        parts.append(_UINT.pack(entry.submission_id))
        return b"".join(parts)

    return encode
