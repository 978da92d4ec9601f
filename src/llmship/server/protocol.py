"""Wire models of the model server's own endpoints: the served release in ``/v1/models``.

The request, response and error models it shares with the gateway are in
:mod:`llmship.wire`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ModelCard(BaseModel):
    id: str = Field(description="Release name.")
    object: Literal["model"] = Field("model", description="Always `model`.")
    created: int = Field(description="Unix time the release was loaded.")
    owned_by: str = Field("llmship", description="Always `llmship`.")
    version: str = Field(description="NAME@VERSION of the release.")
    context_length: int | None = Field(None, description="Context window in tokens.")


class ModelList(BaseModel):
    object: Literal["list"] = Field("list", description="Always `list`.")
    data: list[ModelCard] = Field(description="The served release.")
