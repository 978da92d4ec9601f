"""The routes the gateway forwards to a release, declared once.

``GatewayMiddleware`` answers a POST to one of these paths itself (the hot path);
``api_router`` registers a FastAPI handler for each, for the OpenAPI document and
for an app that mounts the router without that middleware. The Prometheus queries
that count generation requests (``llmship.k8s.promql.GENERATION_ROUTES``) name the
same paths.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from llmship.gateway.protocol import GatewayPredictResponse


@dataclass(frozen=True)
class ProxiedRoute:
    """One forwarded route: its path (also its metrics ``route`` label), whether its
    body is an OpenAI request, and what its OpenAPI entry says."""

    path: str
    openai: bool
    name: str
    body: str
    summary: str
    tag: str
    description: str
    response: type[BaseModel] | None = None


ROUTES = (
    ProxiedRoute(
        path="/v1/chat/completions",
        openai=True,
        name="chat_completions",
        body="ChatCompletionRequest",
        summary="Chat completion (OpenAI-compatible), routed",
        tag="openai",
        description="Routed to a release by the traffic policy; `stream: true` gives "
        "server-sent events\nending in `data: [DONE]`. `X-User-Id` (or `user`) keeps a "
        "user on one A/B variant;\n`X-Llmship-Variant: preview` asks for the blue-green "
        "preview.",
    ),
    ProxiedRoute(
        path="/v1/completions",
        openai=True,
        name="completions",
        body="CompletionRequest",
        summary="Text completion (OpenAI-compatible), routed",
        tag="openai",
        description="Routed like chat completions.",
    ),
    ProxiedRoute(
        path="/predict",
        openai=False,
        name="predict",
        body="PredictRequest",
        summary="Generate an answer (the seed's API), routed",
        tag="llmship",
        description='`{"prompt", "max_new_tokens"}` -> `{"response", "query_id", '
        '"feedback_token", "version", ...}`.',
        response=GatewayPredictResponse,
    ),
)

PROXIED: dict[str, ProxiedRoute] = {route.path: route for route in ROUTES}
"""The forwarded routes by path."""
