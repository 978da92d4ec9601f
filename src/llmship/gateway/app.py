"""The gateway's ASGI application."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from llmship import __version__
from llmship.gateway import (
    admin_router,
    api_feedback,
    api_overview,
    api_releases,
    api_rollouts,
    api_router,
    api_runs,
    ui,
)
from llmship.gateway.announce import GatewayAnnouncer
from llmship.gateway.feedback import NOT_FOUND_RETRY, FeedbackTokens
from llmship.gateway.metrics import GatewayMetrics
from llmship.gateway.middleware import GatewayMiddleware
from llmship.gateway.notify import ChangeListener
from llmship.gateway.protocol import FeedbackRequest
from llmship.gateway.proxy import Upstream
from llmship.gateway.recorder import QueryRecorder
from llmship.gateway.serving import GatewayService
from llmship.gateway.shadow import ShadowMirror
from llmship.gateway.state import GatewayState
from llmship.gateway.store import GatewayDirectory, GatewayStore
from llmship.gateway.tokens import TokenBook, token_file
from llmship.http import fastapi_options, install_error_handlers, liveness
from llmship.limits import LimitsMiddleware
from llmship.registry.records import RECENT_REQUESTS_S
from llmship.settings import Settings
from llmship.wire import (
    ChatCompletionRequest,
    CompletionRequest,
    PredictRequest,
    document_bodies,
)

log = logging.getLogger(__name__)

DESCRIPTION = """\
The llmship gateway: one entry point in front of every live release of an
environment. Requests are routed as the environment's traffic policy says
(stable, weighted canary, blue-green preview, sticky A/B experiment, feature
flags), forwarded unchanged to the release's model server, and mirrored to a
shadow release when one is set. A failing candidate is retried on stable.
Every response carries `X-Llmship-Query-Id` (the query id the gateway issued, for
`POST /feedback`), `X-Request-ID` (the client's own, echoed, else the query id);
answers also `X-Llmship-Feedback-Token` (send it with the rating),
`X-Llmship-Version` (NAME@VERSION that answered) and `X-Llmship-Variant`.
The admin API under `/api/v1/` needs `Authorization: Bearer <LLMSHIP_ADMIN_TOKEN>`.
Errors use OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.
"""


FORWARDED_BODIES = (ChatCompletionRequest, CompletionRequest, PredictRequest, FeedbackRequest)
"""Bodies the gateway reads raw; their schemas are added to the OpenAPI document."""


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Gateway:
    """The parts of one gateway, wired together; ``app.state.gateway``."""

    def __init__(
        self,
        store: GatewayStore,
        settings: Settings,
        *,
        env: str | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], datetime] = _utc_now,
        advertise_url: str | None = None,
    ):
        self.store = store
        self.settings = settings
        self.tokens = TokenBook(settings.admin_token, token_file(settings))
        self.env = env or settings.env
        self.created = int(time.time())
        self.metrics = GatewayMetrics()
        self.state = GatewayState(
            store,
            self.env,
            self.metrics,
            endpoint_max_age=settings.endpoint_max_age,
            switch_wait=settings.switch_wait,
        )
        self.upstream = Upstream(
            connect_timeout=settings.upstream_connect_timeout,
            read_timeout=settings.upstream_timeout,
            max_connections=settings.upstream_max_connections,
        )
        self.recorder = QueryRecorder(store)
        self.feedback_retry = NOT_FOUND_RETRY
        """Seconds before an unknown query id is looked up once more (0: not again)."""
        self.feedback_tokens = FeedbackTokens(store)
        """Issues the token each answer carries, and checks the one a rating carries."""
        self.shadow = ShadowMirror(
            self.upstream,
            self.recorder,
            self.metrics,
            env=self.env,
            max_in_flight=settings.shadow_max_in_flight,
            wait_for_primary=settings.upstream_timeout,
            clock=clock,
        )
        self.service = GatewayService(
            self.env,
            self.state,
            self.upstream,
            self.shadow,
            self.metrics,
            rng=rng or random.Random(),
            clock=clock,
            feedback_token=self.feedback_tokens.token,
        )
        directory = store if isinstance(store, GatewayDirectory) else None
        self.announcer: GatewayAnnouncer | None = None
        """Keeps this gateway announced in the registry (when it has an advertised URL)."""
        if directory is not None and advertise_url:
            self.announcer = GatewayAnnouncer(
                directory,
                self.env,
                advertise_url,
                revision=self._revision,
                recent=lambda: self.metrics.window.recent_requests(RECENT_REQUESTS_S),
            )
        channel = directory.change_channel() if directory is not None else None
        self.listener: ChangeListener | None = None
        """Refreshes the state at once on a change notice (PostgreSQL only)."""
        if channel is not None:
            self.listener = ChangeListener(channel, self.env, self.state.refresh)

    def _revision(self) -> int | None:
        snapshot = self.state.snapshot
        return snapshot.policy.revision if snapshot is not None else None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Read the registry (the traffic policy, the feedback key), then refresh and
        write query records in the background, listen for change notices, and keep this
        gateway announced."""
        self.upstream.start()
        await asyncio.to_thread(self.state.refresh)
        tasks = [
            asyncio.create_task(self.state.run(self.settings.policy_refresh_interval)),
            asyncio.create_task(self.recorder.run()),
        ]
        if not await self.feedback_tokens.load_quietly():  # the registry is down: later
            tasks.append(asyncio.create_task(self.feedback_tokens.run()))
        if self.announcer is not None:
            tasks.append(asyncio.create_task(self.announcer.run()))
        if self.listener is not None:
            self.listener.start()
        try:
            yield
        finally:
            if self.listener is not None:
                await asyncio.to_thread(self.listener.stop)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.shadow.aclose()
            await self.recorder.flush_quietly()
            await self.upstream.aclose()


def create_app(
    store: GatewayStore,
    settings: Settings,
    *,
    env: str | None = None,
    rng: random.Random | None = None,
    clock: Callable[[], datetime] = _utc_now,
    advertise_url: str | None = None,
) -> FastAPI:
    """The gateway for ``env`` (default: the ``env`` setting) over ``store``.

    ``rng`` makes routing deterministic in tests; ``clock`` stamps query records.
    With ``advertise_url`` (the URL other hosts reach it at) it announces itself in
    the registry while it runs.
    """
    gateway = Gateway(store, settings, env=env, rng=rng, clock=clock, advertise_url=advertise_url)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with gateway.running():
            yield

    app = FastAPI(
        title=f"llmship gateway: {gateway.env}",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        **fastapi_options(),
    )
    app.state.gateway = gateway
    app.include_router(api_router.router)
    app.include_router(liveness)
    app.include_router(admin_router.router)
    for dashboard in (api_overview, api_rollouts, api_releases, api_runs, api_feedback, ui):
        app.include_router(dashboard.router)
    install_error_handlers(app)
    app.add_middleware(
        GatewayMiddleware,
        service=gateway.service,
        metrics=gateway.metrics,
        recorder=gateway.recorder,
        env=gateway.env,
    )
    app.add_middleware(  # outermost: nothing reads a request that is over a limit
        LimitsMiddleware,
        max_body_bytes=settings.max_body_bytes,
        max_header_bytes=settings.max_header_bytes,
    )

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            document_bodies(schema, FORWARDED_BODIES, settings.max_request_tokens)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
