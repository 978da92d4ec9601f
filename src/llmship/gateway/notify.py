"""Hear of a routing change at once: PostgreSQL ``LISTEN`` on the registry's channel.

Every registry write that changes what gateways route by sends ``NOTIFY llmship,
'<env>'`` when it commits (``registry/_hosts.py``). :class:`ChangeListener` holds
its own connection (autocommit) in a thread, and on a notice for its environment
calls ``on_change`` (the gateway's ``GatewayState.refresh``): notices that arrive
while a refresh runs are answered by one more refresh, not one each. When the
connection fails it logs once, tries again with a growing pause, and refreshes
after each reconnection to catch up; meanwhile the gateway's polling keeps it
current, as it does on SQLite, which has no such channel.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from llmship.registry._engine import PG_CONNECT_ARGS

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

WAIT_SECONDS = 0.5
"""Longest wait for a notice before the thread checks whether it should stop."""
BACKOFF_SECONDS = (0.5, 10.0)
"""First and longest pause between attempts to reconnect (doubling in between)."""


class ChangeListener:
    """Listens for changes of ``env`` on the PostgreSQL connection string ``dsn``."""

    def __init__(
        self,
        dsn: str,
        env: str,
        on_change: Callable[[], object],
        *,
        channel: str = "llmship",
        backoff: tuple[float, float] = BACKOFF_SECONDS,
    ):
        self.dsn = dsn
        self.env = env
        self.on_change = on_change
        self.channel = channel
        self.backoff = backoff
        self.listening = threading.Event()
        """Set while the connection is up and ``LISTEN`` has been sent."""
        self.changes = 0
        """Notices for this environment heard so far (for tests and metrics)."""
        self._stop = threading.Event()
        self._outage = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start listening in a daemon thread."""
        self._thread = threading.Thread(
            target=self._run, name=f"llmship-listen-{self.env}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread (it notices within :data:`WAIT_SECONDS`)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        import psycopg

        delay = self.backoff[0]
        while not self._stop.is_set():
            try:
                with psycopg.connect(
                    psycopg.conninfo.make_conninfo(self.dsn, **PG_CONNECT_ARGS), autocommit=True
                ) as conn:
                    conn.execute(
                        psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(self.channel))
                    )
                    self.listening.set()
                    if self._outage:
                        self._outage = False
                        log.info("listening for policy changes again")
                        self._refresh()  # catch up on what was missed meanwhile
                    delay = self.backoff[0]
                    self._listen(conn)
            except Exception as exc:  # psycopg errors, and a failing refresh
                self.listening.clear()
                if self._stop.is_set():
                    break
                if not self._outage:
                    self._outage = True
                    log.warning(
                        "cannot listen for policy changes (%s: %s); polling only until the "
                        "registry is back",
                        type(exc).__name__,
                        str(exc).strip().splitlines()[0] if str(exc).strip() else "",
                    )
                self._stop.wait(delay)
                delay = min(delay * 2, self.backoff[1])
        self.listening.clear()

    def _listen(self, conn: psycopg.Connection[object]) -> None:
        while not self._stop.is_set():
            payloads = {n.payload for n in conn.notifies(timeout=WAIT_SECONDS, stop_after=1)}
            if not payloads:
                continue
            # Whatever else has arrived meanwhile is covered by the same refresh.
            payloads.update(n.payload for n in conn.notifies(timeout=0))
            if self.env in payloads:
                self.changes += 1
                self._refresh()

    def _refresh(self) -> None:
        try:
            self.on_change()
        except Exception:  # the state logs its own outages; never kill the listener
            log.debug("refresh after a change notice failed", exc_info=True)
