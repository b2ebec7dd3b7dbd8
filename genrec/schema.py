"""What every layer's settings share: the strict schema base, fields with their roles in checkpoints
(:func:`setting`), list and time field types, and the item text fields. A leaf: it imports nothing
of genrec, so datasets, models and the data layer can declare their settings without depending on
the loader in :mod:`genrec.config` (which imports them to find their schemas).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class StrictModel(BaseModel):
    """Base of every settings schema: unknown keys are errors, ``nan`` and infinities are refused
    (``--lr=.inf`` would only fail deep in training), and a resolved config is read-only."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# What a setting is to a checkpoint's identity (genrec.checkpoint): where files go or where the work
# runs, never part of an identity; what evaluating a checkpoint may change; what resuming a run may change.
ROLES = ("location", "evaluation", "resumable")
NOT_ADDED = object()  # `since` of a setting that runs have always had


def setting(*args: Any, roles: tuple[str, ...] = (), since: Any = NOT_ADDED, **kwargs: Any) -> Any:
    """pydantic's ``Field``, declaring what checkpoints must know of the key where it is declared
    (so a new setting cannot be forgotten in a list elsewhere): its ``roles`` (of :data:`ROLES`),
    and ``since``, for a setting added after runs existed, the value that reproduces what those runs
    did (a checkpoint without the key reads as having it)."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown setting role(s) {sorted(unknown)}; roles: {', '.join(ROLES)}")
    extra: dict[str, Any] = {}
    if roles:
        extra["roles"] = list(roles)
    if since is not NOT_ADDED:
        extra["since"] = since
    return Field(*args, json_schema_extra=extra or None, **kwargs)


def comma_separated(value: Any) -> Any:
    """Accept ``title,brand`` on the command line for list settings, as well as YAML ``[title, brand]``."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


TEXT_FIELDS = ("title", "brand", "categories", "description", "features")


def seconds_of(value: Any) -> float:
    """A moment as Unix seconds: a number, a numeric string, an ISO 8601 date or date-time string,
    or the date / date-time YAML makes of an unquoted ``2024-05-01``. No zone means UTC, so a split
    never depends on the machine's time zone."""
    from datetime import UTC, date, datetime

    if isinstance(value, bool):
        raise ValueError("expected a time, got a boolean")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            try:
                value = datetime.fromisoformat(value.strip())
            except ValueError:
                raise ValueError("expected Unix seconds or an ISO 8601 date-time such as 2024-05-01T00:00:00") from None
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp()
    raise ValueError(f"expected a time, got {type(value).__name__}")
