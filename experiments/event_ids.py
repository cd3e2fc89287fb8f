"""The derived id of an impression, computed the same way in Python and in SQL.

An impression's ``event_id`` is a function of (request id, position): a click names its
request and position, and so finds the impression by the unique ``event_id`` index without
a second index on the high-volume table. It is an MD5 of ``"<request uuid>/<position>"``
read as a UUID, because PostgreSQL computes that natively (``md5()``): the worker expands a
recommendation's outbox row into its impressions inside one SQL statement, and a click is
checked against a not-yet-expanded recommendation in SQL too.
"""

from __future__ import annotations

import hashlib
import uuid


def impression_event_id(request_id: uuid.UUID, position: int) -> uuid.UUID:
    return uuid.UUID(hashlib.md5(f"{request_id}/{int(position)}".encode(), usedforsecurity=False).hexdigest())


def impression_event_id_sql(request_id: str, position: str) -> str:
    """The SQL expression of ``impression_event_id`` over two SQL expressions (a uuid and an integer)."""
    return f"md5(({request_id})::text || '/' || ({position})::text)::uuid"
