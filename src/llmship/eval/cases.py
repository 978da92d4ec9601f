"""The data of a golden dataset: its cases, their chat messages and assertions.

The lowest module of :mod:`llmship.eval`: it imports nothing else of the package, so the
loaders (``dataset``), the checks (``assertions``) and the metrics can all name these
types. Loading and validation live in :mod:`llmship.eval.dataset` and
:mod:`llmship.eval.assertions`, which re-export these names.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Assertion", "Case", "Dataset", "Message"]


@dataclass(frozen=True)
class Assertion:
    """One validated assertion of a case."""

    type: str
    """The canonical type name (``not_contains``, ``rouge_l``, ``llm_rubric``, ...)."""
    value: Any = field(default=None, hash=False)
    threshold: float | None = None
    """As written; :meth:`effective_threshold` applies the type's default."""
    weight: float = 1.0
    description: str | None = None
    default_threshold: float | None = field(default=None, compare=False)
    """The type's default threshold, filled in from the registry when the assertion is parsed."""

    @property
    def effective_threshold(self) -> float | None:
        """The threshold in force: the one written, else the type's default."""
        return self.threshold if self.threshold is not None else self.default_threshold


@dataclass(frozen=True)
class Message:
    """One chat message of a case given as ``messages``."""

    role: str
    content: str

    def to_dict(self) -> dict[str, str]:
        """The OpenAI wire shape ``{"role", "content"}``."""
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class Case:
    """One golden case. Exactly one of ``input`` and ``messages`` is set.

    ``{{name}}`` placeholders in the input and the message contents are already
    filled from ``vars`` (placeholders naming no var are left as they are).
    """

    id: str
    """Given in the file, else ``<file name>:<line>``; unique within a dataset."""
    line: int
    """The line in the file where the case starts (1-based)."""
    input: str | None = None
    """The prompt, for a completion-style or single-turn chat request."""
    messages: tuple[Message, ...] | None = None
    """A whole chat, instead of ``input``."""
    references: tuple[str, ...] = ()
    """Reference answers (``reference`` is one); metrics take the best match."""
    asserts: tuple[Assertion, ...] = ()
    """What the output must satisfy (the ``assert`` field)."""
    tags: tuple[str, ...] = ()
    threshold: float | None = None
    """Pass when the weighted mean assertion score reaches this; else all must pass."""
    description: str | None = None
    vars: Mapping[str, Any] = field(default_factory=dict, hash=False)
    metadata: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def reference(self) -> str | None:
        """The first reference, or None."""
        return self.references[0] if self.references else None

    def prompt_messages(self) -> list[dict[str, str]]:
        """The chat to send: ``messages``, or ``input`` as one user message."""
        if self.messages is not None:
            return [m.to_dict() for m in self.messages]
        return [{"role": "user", "content": self.input or ""}]

    def prompt_text(self) -> str:
        """The text to send to a completion endpoint: ``input``, or the last user message."""
        if self.input is not None:
            return self.input
        users = [m.content for m in self.messages or () if m.role == "user"]
        return users[-1] if users else ""


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset: where it came from, its cases in file order, and its content hash."""

    path: str
    cases: tuple[Case, ...]
    digest: str
    """sha256 (hex) of the file's bytes: changes whenever the file does."""

    def __len__(self) -> int:
        return len(self.cases)

    def __iter__(self) -> Iterator[Case]:
        return iter(self.cases)

    @property
    def assertion_types(self) -> frozenset[str]:
        """The canonical assertion types used by any case (``llm_rubric``, ``similar``, ...)."""
        return frozenset(a.type for case in self.cases for a in case.asserts)

    @property
    def tags(self) -> tuple[str, ...]:
        """Every tag used, sorted."""
        return tuple(sorted({t for case in self.cases for t in case.tags}))

    def with_tags(self, *tags: str) -> Dataset:
        """The cases carrying any of ``tags`` (all cases when none are given)."""
        if not tags:
            return self
        wanted = set(tags)
        cases = tuple(c for c in self.cases if wanted.intersection(c.tags))
        return Dataset(path=self.path, cases=cases, digest=self.digest)
