"""Request ids, click ids, and the derived id of an impression, computed the same way in Python and in SQL.

Request ids are UUID version 7 (RFC 9562: a millisecond timestamp, then 74 random bits): a
served page's primary key (``Page.request_id``), so the worker's inserts append at the
right-hand edge of the index instead of touching random pages of a large one.

A click is stored under ``click_event_id(request, position)``: one counted click per item shown,
and a play under ``play_event_id(request, position)``: one counted play per clicked item.

An impression's id, ``impression_event_id(request, position)``, is what the per-item table
stored before pages replaced it (migration 0006); the per-item view ``Impression`` computes it
in SQL (``impression_event_id_sql``, from PostgreSQL's native ``md5()``) so old exports keep
their ids. For version-7 requests it keeps the request id's first 8 bytes (the timestamp half)
in front of the last 8 bytes of the MD5 of ``"<request uuid>/<position>"``; requests served
before that scheme (version 4 ids) keep the plain MD5.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid


def new_request_id() -> uuid.UUID:
    """A UUID version 7: time-ordered (millisecond timestamp first), unguessable (74 random bits)."""
    raw = bytearray((time.time_ns() // 1_000_000).to_bytes(6, "big") + os.urandom(10))
    raw[6] = 0x70 | (raw[6] & 0x0F)  # version 7
    raw[8] = 0x80 | (raw[8] & 0x3F)  # RFC 9562 variant
    return uuid.UUID(bytes=bytes(raw))


def impression_event_id(request_id: uuid.UUID, position: int) -> uuid.UUID:
    digest = hashlib.md5(f"{request_id}/{int(position)}".encode(), usedforsecurity=False).hexdigest()
    if request_id.version == 7:
        return uuid.UUID(request_id.hex[:16] + digest[16:])
    return uuid.UUID(digest)


def click_event_id(request_id: uuid.UUID, position: int) -> uuid.UUID:
    """The id a click is stored under: one per impression, whatever id the client sent.

    A click names (request, position); deriving its id from them makes "at most one counted
    click per impression" a property of the unique ``event_id`` index, not of the client's
    honesty (a client that makes up a fresh event id per post cannot click an item twice).
    Time-ordered like the impression id, for the same reason (appends to the index)."""
    return _derived_id("click", request_id, position)


def _derived_id(kind: str, request_id: uuid.UUID, position: int) -> uuid.UUID:
    digest = hashlib.md5(f"{kind}/{request_id}/{int(position)}".encode(), usedforsecurity=False).hexdigest()
    if request_id.version == 7:
        return uuid.UUID(request_id.hex[:16] + digest[16:])
    return uuid.UUID(digest)


def play_event_id(request_id: uuid.UUID, position: int) -> uuid.UUID:
    """The id a play is stored under: one per clicked impression, whatever id the client sent.

    For the same reason as ``click_event_id``: a client cannot make one click into several listens,
    so a user's plays never outnumber their clicks. A player posts the play once, when the listen ends."""
    return _derived_id("play", request_id, position)


def impression_event_id_sql(request_id: str, position: str) -> str:
    """The SQL expression of ``impression_event_id`` over two SQL expressions (a uuid and an integer).

    ``uuid.version`` is 7 only for the RFC variant, hence the check of both nibbles of the text form
    (``xxxxxxxx-xxxx-7xxx-[89ab]xxx-xxxxxxxxxxxx``).
    """
    text = f"({request_id})::text"
    digest = f"md5({text} || '/' || ({position})::text)"
    return (f"(CASE WHEN substr({text}, 15, 1) = '7' AND substr({text}, 20, 1) IN ('8', '9', 'a', 'b') "
            f"THEN (left(replace({text}, '-', ''), 16) || right({digest}, 16))::uuid "
            f"ELSE {digest}::uuid END)")
