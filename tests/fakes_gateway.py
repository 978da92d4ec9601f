"""Fakes for the gateway's tests: the store in memory (fake of ``Registry``, whose real
methods are tested in tests/test_registry_gateway.py) and model servers answering
canned text over real HTTP from a thread (fakes of ``llmship serve``, real ones in
tests/test_gateway_process.py)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from _procs import ThreadedServer, free_port
from llmship.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    RegistryUnavailableError,
)
from llmship.flags import Flag, alternate_name
from llmship.registry.records import Endpoint, FeedbackRecord, QueryRecord
from llmship.routing import TrafficPolicy


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class FakeRollout:
    """A running rollout as the alert webhook sees it (fake of ``RolloutRecord``)."""

    id: int
    env: str
    name: str
    candidate: str


class FakeStore:
    """The registry methods the gateway uses, in memory (``GatewayStore``).

    ``production`` plays the env's production alias; ``down = True`` makes every
    call fail as a registry that cannot be reached does. ``calls`` counts calls.
    """

    def __init__(self, releases: Sequence[str], production: str | None) -> None:
        self.releases = set(releases)
        self.production = production
        self.policy = TrafficPolicy(env="dev")
        self.endpoints: dict[tuple[str, str, str], Endpoint] = {}
        self.queries: dict[str, QueryRecord] = {}
        self.feedback: dict[tuple[str, str, str], FeedbackRecord] = {}
        """By (query id, kind, user or ``""``), as the registry's primary key."""
        self.secret = b"fake-feedback-secret"
        self.flags: dict[str, Flag] = {}
        self.rollouts: list[FakeRollout] = []
        self.aborts: list[tuple[int, str]] = []
        self.abort_keys: set[str] = set()
        self.down = False
        self.calls: dict[str, int] = {}
        self.lock = threading.Lock()

    def _enter(self, method: str) -> None:
        with self.lock:
            self.calls[method] = self.calls.get(method, 0) + 1
        if self.down:
            raise RegistryUnavailableError("the registry at fake:// failed: connection refused")

    def _check_ref(self, ref: str | None, role: str) -> None:
        if ref is not None and ref not in self.releases:
            raise NotFoundError(f"{role}: no release {ref!r} is registered")

    # -- traffic ---------------------------------------------------------------

    def get_traffic(self, env: str) -> TrafficPolicy:
        self._enter("get_traffic")
        return replace(self.policy, env=env, stable=self.production)

    def set_traffic(
        self,
        env: str,
        policy: TrafficPolicy,
        *,
        actor: str,
        reason: str,
        expected_revision: int | None = None,
        force: bool = False,
    ) -> TrafficPolicy:
        self._enter("set_traffic")
        if expected_revision is not None and expected_revision != self.policy.revision:
            raise ConflictError(f"the policy is at revision {self.policy.revision}")
        for ref in policy.releases():
            self._check_ref(ref, "traffic")
        stored = replace(policy, env=env, stable=None, revision=self.policy.revision + 1)
        replace(stored, stable=self.production).validate()
        self.policy = stored
        return self.get_traffic(env)

    def promote_preview(
        self, env: str, *, actor: str, reason: str, force: bool = False
    ) -> TrafficPolicy:
        self._enter("promote_preview")
        if self.policy.preview is None:
            raise InvalidRequestError("no preview is set", param="preview")
        self.production = self.policy.preview
        self.policy = replace(self.policy, preview=None, revision=self.policy.revision + 1)
        return self.get_traffic(env)

    def reset_traffic(self, env: str, *, actor: str, reason: str) -> TrafficPolicy:
        self._enter("reset_traffic")
        self.policy = TrafficPolicy(env=env, revision=self.policy.revision + 1)
        return self.get_traffic(env)

    # -- endpoints -------------------------------------------------------------

    def register_endpoint(self, env: str, ref: str, url: str, *, pid: int | None) -> Endpoint:
        now = _now()
        endpoint = Endpoint(env, ref, url, pid, now, now)
        self.endpoints[(env, ref, url)] = endpoint
        return endpoint

    def age_endpoint(self, ref: str, seconds: float) -> None:
        """Make every endpoint of ``ref`` look ``seconds`` older."""
        for key, e in list(self.endpoints.items()):
            if e.ref == ref:
                self.endpoints[key] = replace(
                    e, heartbeat_at=e.heartbeat_at - timedelta(0, seconds)
                )

    def remove_endpoint(self, env: str, ref: str, url: str) -> None:
        self.endpoints.pop((env, ref, url), None)

    def list_endpoints(self, env: str, *, max_age_s: float | None = None) -> list[Endpoint]:
        self._enter("list_endpoints")
        now = _now()
        live = [
            e
            for e in self.endpoints.values()
            if e.env == env
            and (max_age_s is None or (now - e.heartbeat_at).total_seconds() <= max_age_s)
        ]
        return sorted(live, key=lambda e: e.heartbeat_at, reverse=True)

    # -- queries and feedback --------------------------------------------------

    def record_queries(self, rows: Sequence[QueryRecord]) -> None:
        self._enter("record_queries")
        for row in rows:
            if len(row.variant) > 64 or len(row.query_id) > 64:
                raise InvalidRequestError(f"query {row.query_id!r}: a field is too long")
        for row in rows:
            self.queries.setdefault(row.query_id, row)

    def get_query(self, query_id: str) -> QueryRecord:
        self._enter("get_query")
        try:
            return self.queries[query_id]
        except KeyError:
            raise NotFoundError(f"no query {query_id!r}") from None

    def add_feedback(
        self,
        query_id: str,
        *,
        rating: int | None = None,
        thumbs: str | None = None,
        comment: str | None = None,
        actor: str | None = None,
        user: str | None = None,
    ) -> list[FeedbackRecord]:
        self._enter("add_feedback")
        if rating is None and thumbs is None:
            raise InvalidRequestError("give a rating or a thumbs")
        if rating is not None and not 1 <= rating <= 5:
            raise InvalidRequestError("rating must be 1..5", param="rating")
        if thumbs is not None and thumbs not in ("up", "down"):
            raise InvalidRequestError("thumbs must be up or down", param="thumbs")
        if user is not None and not 1 <= len(user.strip()) <= 255:
            raise InvalidRequestError("user must be 1-255 characters", param="user")
        query = self.get_query(query_id)
        rater = user if user is not None else query.user_key or ""
        out = []
        for kind, value in (("rating", rating), ("thumbs", thumbs)):
            if value is None:
                continue
            number = value if isinstance(value, int) else int(value == "up")
            record = FeedbackRecord(
                query_id, query.env, query.ref, kind, number, comment, _now(), rater or None
            )
            self.feedback[(query_id, kind, rater)] = record
            out.append(record)
        return out

    def feedback_secret(self) -> bytes:
        self._enter("feedback_secret")
        return self.secret

    def list_feedback(
        self, env: str, ref: str, *, since: datetime | None = None
    ) -> list[FeedbackRecord]:
        self._enter("list_feedback")
        found = [
            f
            for f in self.feedback.values()
            if f.env == env and f.ref == ref and (since is None or f.at >= since)
        ]
        return sorted(found, key=lambda f: f.at)  # oldest first, as the registry

    # -- rollouts (what the alert webhook needs) --------------------------------

    def list_rollouts(
        self, env: str | None = None, *, active_only: bool = False, limit: int = 50
    ) -> list[FakeRollout]:
        self._enter("list_rollouts")
        return [r for r in self.rollouts if (env is None or r.env == env)][:limit]

    def request_rollout_abort(
        self, env: str, rollout_id: int, *, reason: str, dedupe_key: str
    ) -> bool:
        self._enter("request_rollout_abort")
        if dedupe_key in self.abort_keys:
            return False
        self.abort_keys.add(dedupe_key)
        self.aborts.append((rollout_id, reason))
        return True

    # -- flags -----------------------------------------------------------------

    def set_flag(self, env: str, flag: Flag, *, actor: str) -> Flag:
        self._enter("set_flag")
        flag.validate()
        self._check_ref(flag.release, f"flag {flag.name}")
        self.flags[flag.name] = flag
        return flag

    def toggle_flag(self, env: str, name: str, *, actor: str) -> Flag:
        self._enter("toggle_flag")
        found = next((n for n in (name, alternate_name(name)) if n in self.flags), None)
        current = self.flags[found] if found else Flag(name=name, enabled=False)
        current.validate()
        flag = replace(current, enabled=not current.enabled)
        self.flags[flag.name] = flag
        return flag

    def get_flag(self, env: str, name: str) -> Flag:
        self._enter("get_flag")
        try:
            return self.flags[name]
        except KeyError:
            raise NotFoundError(f"no flag named {name!r}") from None

    def list_flags(self, env: str) -> list[Flag]:
        self._enter("list_flags")
        return [self.flags[name] for name in sorted(self.flags)]

    def delete_flag(self, env: str, name: str, *, actor: str) -> None:
        self._enter("delete_flag")
        self.get_flag(env, name)
        del self.flags[name]


# -- model servers ---------------------------------------------------------------------


@dataclass
class SeenRequest:
    """What a fake model server received."""

    path: str
    headers: dict[str, str]
    content: bytes


@dataclass
class FakeServer:
    """One fake model server of ``ref``. ``mode``: ok, 500, 503, 429, 400, timeout (answers
    after ``FakeModelServers.hang`` seconds) or die (a stream breaks off after two
    events). ``gate``, when given, holds every answer until it is set."""

    ref: str
    words: list[str] = field(default_factory=lambda: ["the", " quick", " brown", " fox"])
    mode: str = "ok"
    gate: threading.Event | None = None
    on_request: Any = None
    """Called with the request before answering (tests use it to act mid-request)."""
    requests: list[SeenRequest] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.ref.partition("@")[0]

    def text(self) -> str:
        return "".join(self.words)


class FakeModelServers:
    """Fake model servers behind one real HTTP server (uvicorn in a thread): server
    ``slug`` answers under ``http://127.0.0.1:PORT/<slug>``. ``dead_url`` is a port
    nothing listens on (connection refused)."""

    def __init__(self, hang: float = 2.0) -> None:
        self.servers: dict[str, FakeServer] = {}
        self.hang = hang
        self.dead_url = f"http://127.0.0.1:{free_port()}"
        self._stopping = threading.Event()
        self._http = ThreadedServer(self.app, "the fake model servers")
        self.port = self._http.port

    def __enter__(self) -> FakeModelServers:
        self._http.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._http.stop()

    def url(self, slug: str) -> str:
        return f"http://127.0.0.1:{self.port}/{slug}"

    async def _wait(self, seconds: float | None, gate: threading.Event | None) -> None:
        deadline = time.monotonic() + (seconds or 0)
        while not self._stopping.is_set():
            if gate is not None and not gate.is_set():
                await asyncio.sleep(0.005)
                continue
            if time.monotonic() >= deadline:
                return
            await asyncio.sleep(0.01)

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        slug, _, route = scope["path"].lstrip("/").partition("/")
        server = self.servers[slug]
        route = "/" + route
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        seen = SeenRequest(route, headers, b"".join(chunks))
        server.requests.append(seen)
        if server.on_request is not None:
            server.on_request(seen)
        await self._wait(self.hang if server.mode == "timeout" else None, server.gate)
        status, content_type, body_chunks = self._answer(server, route, seen)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", content_type),
                    (b"x-llmship-version", server.ref.encode()),
                ],
            }
        )
        for chunk in body_chunks[:-1]:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await asyncio.sleep(0)
        if server.mode == "die" and content_type == b"text/event-stream":
            raise RuntimeError("the fake model server dies mid-stream")
        await send({"type": "http.response.body", "body": body_chunks[-1]})

    def _answer(
        self, server: FakeServer, route: str, seen: SeenRequest
    ) -> tuple[int, bytes, list[bytes]]:
        mode = server.mode
        if mode in ("500", "503", "400", "429"):
            error = {"error": {"message": f"{server.ref} says {mode}", "type": "x"}}
            return int(mode), b"application/json", [json.dumps(error).encode()]
        body = json.loads(seen.content)
        if body.get("stream"):
            events = [self._event(server, route, word) for word in server.words]
            usage = {"prompt_tokens": 3, "completion_tokens": len(server.words), "total_tokens": 0}
            last = self._event(server, route, "")
            last["usage"] = usage
            chunks = [b"data: " + json.dumps(e).encode() + b"\n\n" for e in [*events, last]]
            chunks.append(b"data: [DONE]\n\n")
            if mode == "die":
                chunks = chunks[:3]
            return 200, b"text/event-stream", chunks
        usage = {"prompt_tokens": 3, "completion_tokens": len(server.words), "total_tokens": 7}
        answer: dict[str, Any]
        if route == "/predict":
            answer = {
                "response": server.text(),
                "query_id": seen.headers.get("x-request-id", ""),
                "version": server.ref,
                "finish_reason": "stop",
                "usage": usage,
            }
        elif route == "/v1/completions":
            answer = {"choices": [{"index": 0, "text": server.text()}], "usage": usage}
        else:
            message = {"role": "assistant", "content": server.text()}
            answer = {"choices": [{"index": 0, "message": message}], "usage": usage}
        answer.setdefault("model", server.name)
        return 200, b"application/json", [json.dumps(answer).encode()]

    @staticmethod
    def _event(server: FakeServer, route: str, word: str) -> dict[str, Any]:
        if route == "/v1/completions":
            choice: dict[str, Any] = {"index": 0, "text": word}
        else:
            choice = {"index": 0, "delta": {"content": word}}
        return {"model": server.name, "choices": [choice]}
