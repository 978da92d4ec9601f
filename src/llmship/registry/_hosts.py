"""The live gateways of an environment, and the change notices gateways listen for.

Each gateway announces itself (an upsert: its URL, pid, host, the policy revision it
routes by and how many requests it answered over the last minute), renews that every
few seconds (the heartbeat), and withdraws on a clean stop. The controller lists the
live ones to read every gateway's statistics.

On PostgreSQL, every write that changes what gateways route by (a traffic policy,
a flag, a model server announced or withdrawn, an alias moved) also sends
``NOTIFY llmship, '<env>'`` in its own transaction, so the notice arrives only once
the change is committed; gateways ``LISTEN`` (``gateway/notify.py``) and re-read at
once. SQLite has no such channel: there the gateways' polling is all there is.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from llmship.errors import InvalidRequestError, NotFoundError, SpecError
from llmship.registry import _queries as q
from llmship.registry._base import Store, check_env
from llmship.registry.records import GatewayRecord
from llmship.registry.tables import GatewayRow

FORGET_AFTER_S = 3600.0
"""A gateway or model server whose heartbeat is older than this (an hour: no analysis
window is longer) died without withdrawing; its row is deleted when another of its
environment announces itself."""
CHANNEL = "llmship"
"""The PostgreSQL ``NOTIFY`` channel; the payload is the environment that changed."""


def notify_change(session: Session, env: str) -> None:
    """Tell listening gateways that ``env``'s routing changed, when this transaction
    commits (PostgreSQL ``pg_notify``; nothing on SQLite)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_notify(:channel, :env)"), {"channel": CHANNEL, "env": env})


class HostMethods(Store):
    """Gateways announcing themselves, and the change channel (part of ``Registry``)."""

    def announce_gateway(
        self,
        env: str,
        instance: str,
        url: str,
        *,
        pid: int | None,
        host: str,
        policy_revision: int | None = None,
        recent_requests: int = 0,
    ) -> GatewayRecord:
        """Announce (or renew) the gateway ``instance`` of ``env`` at ``url``.

        The first announcement sets ``started_at``; each one after renews the heartbeat
        and the revision and request count it reports.
        """
        check_env(env)
        _check(instance, url)
        with self._write() as session:
            now = self._now()
            stmt = q.insert(session, GatewayRow).values(
                env=env,
                instance=instance,
                url=url,
                pid=pid,
                host=host[:255],
                started_at=now,
                heartbeat_at=now,
                policy_revision=policy_revision,
                recent_requests=max(0, int(recent_requests)),
            )
            excluded = stmt.excluded
            session.execute(
                stmt.on_conflict_do_update(
                    index_elements=["env", "instance"],
                    set_={
                        column: excluded[column]
                        for column in (
                            "url",
                            "pid",
                            "host",
                            "heartbeat_at",
                            "policy_revision",
                            "recent_requests",
                        )
                    },
                )
            )
            session.execute(
                delete(GatewayRow).where(
                    GatewayRow.env == env,
                    GatewayRow.heartbeat_at < now - timedelta(seconds=FORGET_AFTER_S),
                )
            )
            row = session.get(GatewayRow, (env, instance), populate_existing=True)
            if row is None:  # pragma: no cover - the upsert just wrote it
                raise NotFoundError(f"the gateway {instance} of {env} vanished")
            return _to_record(row)

    def remove_gateway(self, env: str, instance: str) -> None:
        """Forget the gateway ``instance`` of ``env`` (nothing happens when there is none)."""
        with self._write() as session:
            session.execute(
                delete(GatewayRow).where(GatewayRow.env == env, GatewayRow.instance == instance)
            )

    def list_gateways(self, env: str, *, max_age_s: float | None = None) -> list[GatewayRecord]:
        """The gateways of ``env`` by URL; with ``max_age_s``, only those whose heartbeat
        is at most that old (the live ones)."""
        with self._read() as session:
            stmt = (
                select(GatewayRow)
                .where(GatewayRow.env == env)
                .order_by(GatewayRow.url, GatewayRow.instance)
            )
            if max_age_s is not None:
                since = self._now() - timedelta(seconds=max_age_s)
                stmt = stmt.where(GatewayRow.heartbeat_at >= since)
            return [_to_record(row) for row in session.scalars(stmt)]

    def change_channel(self) -> str | None:
        """The libpq connection string a gateway ``LISTEN``\\s on for changes
        (:data:`CHANNEL`), or None when the registry cannot push them (SQLite)."""
        if self._url.get_backend_name() != "postgresql":
            return None
        return self._url.set(drivername="postgresql").render_as_string(hide_password=False)


def _check(instance: str, url: str) -> None:
    if not instance or len(instance) > 128:
        raise SpecError(
            f"gateway instance {instance!r}: give 1-128 characters, e.g. host-pid-random",
            param="instance",
        )
    if not url.startswith(("http://", "https://")) or len(url) > 1024:
        raise InvalidRequestError(
            f"gateway url {url!r}: give the URL other hosts reach it at, "
            "e.g. http://10.0.0.5:8080 (`llmship gateway --advertise-url`)",
            param="url",
        )


def _to_record(row: GatewayRow) -> GatewayRecord:
    return GatewayRecord(
        env=row.env,
        instance=row.instance,
        url=row.url,
        pid=row.pid,
        host=row.host,
        started_at=row.started_at,
        heartbeat_at=row.heartbeat_at,
        policy_revision=row.policy_revision,
        recent_requests=row.recent_requests,
    )
