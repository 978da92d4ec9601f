"""`llmship gateway` as a real process in front of real `llmship serve` processes with the
real SmolLM2 model, talked to by the official `openai` client and plain HTTP."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import psycopg
import pytest
from psycopg import sql

from _postgres import PostgresServer
from _procs import GatewayProcess, ModelServer
from llmship.registry import Registry
from llmship.release.bundled import bundled_spec
from llmship.release.spec import ReleaseSpec, parse_spec

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("gateway_process")]  # one stack, one worker

TOKEN = "process-test-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
V1, V2, V3 = "smollm2-chat@1.0.0", "smollm2-chat@1.1.0", "smollm2-chat@1.2.0"
GATEWAY_ENV = {"LLMSHIP_ADMIN_TOKEN": TOKEN, "LLMSHIP_ENDPOINT_MAX_AGE": "3600"}


def release(version: str, system: str) -> ReleaseSpec:
    """The bundled release with test-friendly settings (1 thread, small context, greedy)."""
    data = bundled_spec().to_dict()
    data["version"] = version
    data["runtime"] |= {"n_threads": 1, "n_ctx": 512}
    data["params"] |= {"temperature": 0.0}
    data["prompt"] = {**data.get("prompt", {}), "system": system}
    return parse_spec(data)


@dataclass
class Stack:
    workdir: Path
    registry: Registry
    servers: dict[str, ModelServer]
    gateway: GatewayProcess
    second: GatewayProcess
    """Another gateway of the same environment."""

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        r = httpx.request(method, f"{self.gateway.url}{path}", headers=ADMIN, timeout=30, **kwargs)
        assert r.status_code == 200, r.text
        return r

    def set_traffic(self, **policy: object) -> int:
        """Replace the policy through the admin API; wait until both gateways follow it."""
        r = self.admin("PUT", "/api/v1/traffic", json={**policy, "reason": "test"})
        revision: int = r.json()["revision"]
        for gw in (self.gateway, self.second):
            deadline = time.monotonic() + 5
            while httpx.get(f"{gw.url}/readyz").json().get("revision") != revision:
                assert time.monotonic() < deadline, "a gateway did not pick the policy up"
                time.sleep(0.05)
        return revision


def wait_until(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def warm_up(url: str) -> None:
    r = httpx.post(f"{url}/predict", json={"prompt": "Hi", "max_new_tokens": 2}, timeout=120)
    assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Three model servers (V3 is killed by the last test) and two gateways of env dev,
    all started at once."""
    workdir = tmp_path_factory.mktemp("gateway")
    home = workdir / ".llmship"
    registry = Registry.open(f"sqlite:///{home / 'registry.db'}", home=home)
    prompts = {V1: "You are a helpful assistant.", V2: "Be brief.", V3: "Be kind."}
    for ref, system in prompts.items():
        registry.register(release(ref.partition("@")[2], system), actor="test")
    registry.set_alias("dev", "production", V1, actor="test", reason="first")
    servers = {ref: ModelServer(workdir, "--release", ref, "--env", "dev") for ref in prompts}
    stack = Stack(
        workdir,
        registry,
        servers,
        GatewayProcess(workdir, env=GATEWAY_ENV),
        GatewayProcess(workdir, env=GATEWAY_ENV),
    )
    try:
        for ref, server in servers.items():
            server.wait_ready()
            # `llmship serve --release` announces itself; registering here too is harmless
            registry.register_endpoint("dev", ref, server.url, pid=server.proc.pid)
        with ThreadPoolExecutor() as pool:  # a model's first answer is slow: warm all at once
            list(pool.map(warm_up, [server.url for server in servers.values()]))
        stack.gateway.wait_ready()
        stack.second.wait_ready()
        yield stack
    finally:
        for proc in (stack.gateway, stack.second, *servers.values()):
            proc.stop()
        registry.close()


@pytest.fixture
def reset(stack: Stack) -> Iterator[Stack]:
    yield stack
    stack.admin("DELETE", "/api/v1/traffic", params={"reason": "test done"})


def test_openai_client_through_the_gateway(reset: Stack) -> None:
    stack = reset
    client = openai.OpenAI(base_url=f"{stack.gateway.url}/v1", api_key="unused", max_retries=0)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    raw = client.chat.completions.with_raw_response.create(
        model="smollm2-chat",
        messages=messages,  # type: ignore[arg-type]
        max_tokens=10,
    )
    assert raw.headers["x-llmship-version"] == V1
    whole = raw.parse()
    assert "Paris" in (whole.choices[0].message.content or "")
    direct = httpx.post(
        f"{stack.servers[V1].url}/v1/chat/completions",
        json={"messages": messages, "max_tokens": 10},
        timeout=60,
    ).json()
    assert whole.choices[0].message.content == direct["choices"][0]["message"]["content"]
    stream = client.chat.completions.create(
        model="smollm2-chat",
        messages=messages,  # type: ignore[arg-type]
        max_tokens=10,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, usage = [], None
    for chunk in stream:
        usage = chunk.usage or usage
        pieces += [choice.delta.content or "" for choice in chunk.choices]
    assert len([p for p in pieces if p]) > 2
    assert "".join(pieces) == whole.choices[0].message.content
    assert usage is not None and whole.usage is not None
    assert usage.completion_tokens == whole.usage.completion_tokens
    assert [m.id for m in client.models.list().data] == ["smollm2-chat"]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4", messages=messages)  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError):  # the model server's own check, passed on
        client.chat.completions.create(model="smollm2-chat", messages=messages, max_tokens=0)  # type: ignore[arg-type]


def test_predict_and_feedback_land_on_the_release_that_answered(reset: Stack) -> None:
    stack = reset
    stack.set_traffic(canary={"release": V2, "weight": 100})
    r = httpx.post(
        f"{stack.gateway.url}/predict",
        json={"prompt": "What is a canary release?", "max_new_tokens": 4},
        timeout=60,
    )
    assert r.status_code == 200
    body = r.json()
    assert body["response"].strip()
    assert body["version"] == V2 == r.headers["x-llmship-version"]
    assert body["query_id"] == r.headers["x-request-id"]
    fb = httpx.post(
        f"{stack.gateway.url}/feedback", json={"query_id": body["query_id"], "thumbs": "up"}
    )
    assert fb.json() == {"status": "ok", "query_id": body["query_id"], "version": V2}
    [summary] = stack.registry.feedback_summary("dev", V2)
    assert summary.thumbs_up == 1
    assert stack.registry.get_query(body["query_id"]).variant == "canary"
    bad = httpx.post(
        f"{stack.gateway.url}/feedback", json={"query_id": body["query_id"], "rating": 9}
    )
    assert bad.status_code == 422


def test_two_gateways_agree_on_ab_assignment(reset: Stack) -> None:
    stack = reset
    variants = [
        {"name": "A", "release": V1, "weight": 50},
        {"name": "B", "release": V2, "weight": 50},
    ]
    stack.set_traffic(experiment={"name": "prompt-test", "variants": variants})
    seen: dict[str, set[tuple[str, str]]] = {}
    for n in range(12):
        user = f"user-{n}"
        for gw in (stack.gateway, stack.second, stack.gateway):
            r = httpx.post(
                f"{gw.url}/predict",
                json={"prompt": "Hi", "max_new_tokens": 1},
                headers={"X-User-Id": user},
                timeout=60,
            )
            assert r.status_code == 200, r.text
            answer = (r.headers["x-llmship-variant"], r.headers["x-llmship-version"])
            seen.setdefault(user, set()).add(answer)
    assert all(len(v) == 1 for v in seen.values()), seen
    assert {v for s in seen.values() for v in s} == {("A", V1), ("B", V2)}


def test_client_disconnect_stops_the_generation(reset: Stack) -> None:
    stack = reset
    body = {
        "messages": [{"role": "user", "content": "Write a long story."}],
        "max_tokens": 400,
        "stream": True,
    }
    with httpx.stream(
        "POST", f"{stack.gateway.url}/v1/chat/completions", json=body, timeout=60
    ) as response:
        assert next(response.iter_lines()).startswith("data: ")
    deadline = time.monotonic() + 5
    metrics_url = f"{stack.servers[V1].url}/metrics"
    while (
        'llm_requests_in_flight{version="smollm2-chat@1.0.0"} 0.0'
        not in httpx.get(metrics_url).text
    ):
        assert time.monotonic() < deadline, "the model server kept generating for a gone client"
        time.sleep(0.05)


def test_a_client_that_leaves_a_non_streamed_request_stops_the_generation(reset: Stack) -> None:
    stack = reset
    metrics_url = f"{stack.servers[V1].url}/metrics"
    stopped = 'llm_generations_stopped_total{version="smollm2-chat@1.0.0"}'

    def stopped_count() -> float:
        line = next(x for x in httpx.get(metrics_url).text.splitlines() if x.startswith(stopped))
        return float(line.rsplit(" ", 1)[1])

    before = stopped_count()
    # Given a long non-streamed answer, when the client gives up after half a second
    body = {"messages": [{"role": "user", "content": "Write a long story."}], "max_tokens": 400}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{stack.gateway.url}/v1/chat/completions",
            json=body,
            timeout=httpx.Timeout(60, read=0.5),
        )
    # Then the gateway drops its request and the model server stops generating
    wait_until(lambda: stopped_count() == before + 1, timeout=30)
    in_flight = 'llm_requests_in_flight{version="smollm2-chat@1.0.0"} 0.0'
    wait_until(lambda: in_flight in httpx.get(metrics_url).text, timeout=10)
    # (the gateway writes its access line once the cancelled request has unwound)
    wait_until(lambda: "client_disconnected=true" in stack.gateway.output(), timeout=10)


def test_shadow_answers_are_compared_and_never_seen(reset: Stack) -> None:
    stack = reset
    stack.set_traffic(shadow={"release": V2, "percent": 100})
    for _ in range(3):
        r = httpx.post(
            f"{stack.gateway.url}/predict",
            json={"prompt": "Name a colour.", "max_new_tokens": 6},
            timeout=60,
        )
        assert r.status_code == 200
        assert r.headers["x-llmship-version"] == V1 == r.json()["version"]
    count = f'llmship_shadow_similarity_count{{version="{V2}"}} 3.0'
    wait_until(lambda: count in httpx.get(f"{stack.gateway.url}/metrics").text)
    metrics = httpx.get(f"{stack.gateway.url}/metrics").text
    assert f'llmship_shadow_requests_total{{outcome="ok",version="{V2}"}} 3.0' in metrics


def test_the_blue_green_switch_is_atomic_under_load(reset: Stack) -> None:
    """Clients keep sending while the preview is promoted: no request fails, and once a
    client has been answered by the new release it is never answered by the old one."""
    stack = reset
    stack.set_traffic(preview=V2)
    stop = threading.Event()
    seen: dict[int, list[str]] = {n: [] for n in range(4)}
    errors: list[str] = []

    def client(n: int) -> None:
        with httpx.Client(timeout=60) as http:
            while not stop.is_set():
                r = http.post(
                    f"{stack.gateway.url}/predict", json={"prompt": "Hi", "max_new_tokens": 1}
                )
                if r.status_code != 200:
                    errors.append(r.text)
                seen[n].append(r.headers.get("x-llmship-version", ""))

    threads = [threading.Thread(target=client, args=(n,)) for n in seen]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: all(seen.values()))  # every client has had an answer
        stack.admin("POST", "/api/v1/traffic/promote-preview", json={"reason": "switch"})
        switched = {n: len(v) for n, v in seen.items()}
        wait_until(lambda: all(len(seen[n]) > switched[n] + 1 for n in seen))
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        stack.registry.set_alias("dev", "production", V1, actor="test", reason="back")
    assert errors == []
    for versions in seen.values():
        assert versions and set(versions) <= {V1, V2}
        first_new = versions.index(V2) if V2 in versions else len(versions)
        assert set(versions[first_new:]) <= {V2}, versions
    assert any(V1 in v for v in seen.values()) and all(v[-1] == V2 for v in seen.values())
    for gw in (stack.gateway, stack.second):  # both gateways follow the alias back to V1
        deadline = time.monotonic() + 5
        while httpx.get(f"{gw.url}/readyz").json().get("stable") != V1:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_a_candidate_killed_mid_stream_then_costs_clients_nothing(reset: Stack) -> None:
    stack = reset
    doomed = stack.servers[V3]
    stack.set_traffic(canary={"release": V3, "weight": 100})
    body = {
        "messages": [{"role": "user", "content": "Write a long story about the sea."}],
        "max_tokens": 400,
        "stream": True,
    }
    data = []
    started = time.monotonic()
    with httpx.stream(
        "POST", f"{stack.gateway.url}/v1/chat/completions", json=body, timeout=60
    ) as response:
        assert response.headers["x-llmship-version"] == V3
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            data.append(line[6:])
            if len(data) == 3:
                os.kill(doomed.proc.pid, signal.SIGKILL)
    assert time.monotonic() - started < 30, "the stream hung"
    assert data[-1] == "[DONE]"
    assert "mid-stream" in json.loads(data[-2])["error"]["message"]
    doomed.proc.wait(timeout=10)
    # the dead candidate is still in the policy (and in the registry): clients see no errors
    for _ in range(3):
        r = httpx.post(
            f"{stack.gateway.url}/predict", json={"prompt": "Hi", "max_new_tokens": 2}, timeout=60
        )
        assert r.status_code == 200
        assert r.headers["x-llmship-version"] == V1
    metrics = httpx.get(f"{stack.gateway.url}/metrics").text
    failures = 'llmship_upstream_failures_total{{reason="{}",variant="canary",version="{}"}} {}'
    assert failures.format("mid_stream", V3, "1.0") in metrics
    assert failures.format("connect", V3, "3.0") in metrics


@pytest.mark.postgres
def test_routing_goes_on_while_the_registry_is_down(
    postgres: PostgresServer, postgres_url: str, tmp_path: Path
) -> None:
    """The registry (PostgreSQL) refuses every connection for a while: the gateway keeps
    routing with what it knew, says so in its metrics, and catches up afterwards."""
    database = postgres_url.rsplit("/", 1)[1]

    def allow_connections(allow: bool) -> None:
        with psycopg.connect(postgres.admin_dsn(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
                    sql.Identifier(database), sql.SQL("true" if allow else "false")
                )
            )
            if not allow:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                    (database,),
                )

    with Registry.open(postgres_url) as registry:
        registry.register(release("1.0.0", "You are a helpful assistant."), actor="test")
        registry.set_alias("dev", "production", V1, actor="test", reason="first")
    env = {"LLMSHIP_DATABASE_URL": postgres_url}
    server = ModelServer(tmp_path, "--release", V1, "--env", "dev", env=env)
    gateway = GatewayProcess(
        tmp_path, env={**GATEWAY_ENV, **env, "LLMSHIP_POLICY_REFRESH_INTERVAL": "0.1"}
    )
    try:
        server.wait_ready()
        warm_up(server.url)
        gateway.wait_ready()

        def registry_up() -> str:
            text = httpx.get(f"{gateway.url}/metrics").text
            return next(
                line for line in text.splitlines() if line.startswith("llmship_registry_up")
            )

        def predict() -> httpx.Response:
            body = {"prompt": "Hi", "max_new_tokens": 2}
            return httpx.post(f"{gateway.url}/predict", json=body, timeout=60)

        allow_connections(False)
        deadline = time.monotonic() + 10
        while registry_up() != "llmship_registry_up 0.0":
            assert time.monotonic() < deadline, "the gateway did not notice the outage"
            time.sleep(0.05)
        r = predict()
        assert r.status_code == 200 and r.headers["x-llmship-version"] == V1
        query_id = r.headers["x-request-id"]
        fb = httpx.post(f"{gateway.url}/feedback", json={"query_id": query_id, "rating": 5})
        assert fb.status_code == 503
        assert httpx.get(f"{gateway.url}/readyz").status_code == 200

        allow_connections(True)
        deadline = time.monotonic() + 10
        while registry_up() != "llmship_registry_up 1.0":
            assert time.monotonic() < deadline, "the gateway did not notice the registry is back"
            time.sleep(0.05)
        # the query answered during the outage was kept, and is written now
        fb = httpx.post(f"{gateway.url}/feedback", json={"query_id": query_id, "rating": 5})
        assert fb.status_code == 200, fb.text
        assert fb.json()["version"] == V1
        assert predict().status_code == 200
        log = gateway.output()
        assert log.count("cannot read the registry") == 1, "one warning per outage"
    finally:
        allow_connections(True)
        gateway.stop()
        server.stop()
