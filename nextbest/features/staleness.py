"""Staleness of online features: Feast's online read ignores a view's ttl; nextbest does not.

A value with event timestamp ``t`` served at ``now`` is valid iff ``now - t <= ttl`` — the same rule
as the offline point-in-time join (valid iff ``t <= now <= t + ttl``), so training and serving agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from nextbest.features.manifest import FeatureViewSpec


@dataclass(frozen=True)
class ViewStaleness:
    """How old the served values of one view are.

    Attributes:
        view: feature view name.
        served_ts: event timestamp of the (oldest) served value; None if nothing was served.
        age: ``now - served_ts`` (None if nothing was served); negative means a value from the future.
        ttl: the view's ttl.
        is_missing: no value was served for this view.
        is_stale: missing, older than ttl, or from the future (the offline join would not use it).
    """

    view: str
    served_ts: datetime | None
    age: timedelta | None
    ttl: timedelta
    is_missing: bool
    is_stale: bool


def _aware(ts: datetime, name: str) -> datetime:
    """Reject naive datetimes: comparing naive and aware times silently shifts by the local offset."""
    if ts.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got naive {ts!r}")
    return ts


def staleness_report(
    feature_timestamps: Mapping[str, datetime | None], specs: Iterable[FeatureViewSpec], now: datetime
) -> list[ViewStaleness]:
    """One ViewStaleness per view of ``specs`` (sorted by view), judged at ``now``.

    Args:
        feature_timestamps: view -> event timestamp of the served value (tz-aware); a view absent
            from the mapping or mapped to None counts as missing.
        specs: the feature-view specs (for the ttl of each view).
        now: the serving time (tz-aware).
    """
    now = _aware(now, "now")
    report: list[ViewStaleness] = []
    for spec in sorted(specs, key=lambda s: s.view):
        ts = feature_timestamps.get(spec.view)
        if ts is None:
            report.append(ViewStaleness(spec.view, None, None, spec.ttl, is_missing=True, is_stale=True))
            continue
        age = now - _aware(ts, f"timestamp of {spec.view}")
        stale = age > spec.ttl or age < timedelta(0)
        report.append(ViewStaleness(spec.view, ts, age, spec.ttl, is_missing=False, is_stale=stale))
    return report


def stale_views(report: Iterable[ViewStaleness]) -> list[str]:
    """Names of the views flagged stale in ``report``."""
    return [r.view for r in report if r.is_stale]
