"""Load-test an llmship gateway or model server — or any OpenAI-compatible service —
with plain Locust (web UI, headless, distributed), like the seed's example::

    locust -f locustfile.py --host http://127.0.0.1:8000            # web UI at :8089
    locust -f locustfile.py --host http://127.0.0.1:8000 --headless -u 4 -r 2 -t 1m
    locust -f locustfile.py --host http://127.0.0.1:8000 --endpoint predict   # the seed's call
    locust -f locustfile.py --master ...   /   locust -f locustfile.py --worker ...

It uses the user class of ``llmship loadtest`` (``llmship.loadtest.user.LLMUser``):
each answer is streamed and measured. Locust's table shows two rows per endpoint:
``POST`` (end-to-end latency, failures) and ``TTFT`` (time to the first token).
``llmship loadtest`` adds TPOT/ITL, goodput, open-loop arrivals, SLO gates and reports.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from locust import between, events

from llmship.loadtest.plan import DEFAULT_PROMPT, ENDPOINTS, Prompt, load_prompts
from llmship.loadtest.user import LLMUser


@events.init_command_line_parser.add_listener  # type: ignore[untyped-decorator]
def _options(parser: Any) -> None:
    parser.add_argument(
        "--endpoint",
        choices=list(ENDPOINTS),
        default="chat",
        help="chat (/v1/chat/completions), completions or predict (the seed's /predict)",
    )
    parser.add_argument("--max-tokens", type=int, default=100, help="most tokens per answer")
    parser.add_argument("--model", default="", help="`model` of requests (default: /v1/models)")
    parser.add_argument(
        "--prompts", default="", help="JSONL (prompt/input/messages) or text file of prompts"
    )


@cache
def _prompts(path: str) -> tuple[Prompt, ...]:
    return load_prompts(Path(path)) if path else (Prompt(text=DEFAULT_PROMPT),)


class ModelUser(LLMUser):
    """The seed's ``ModelUser``: a short think time between requests."""

    wait_time = between(0.1, 0.5)

    def on_start(self) -> None:
        # read here, not at init: in distributed mode the master sends its options
        options = self.environment.parsed_options
        if options is None:
            return
        cls = type(self)
        cls.endpoint = options.endpoint
        cls.max_tokens = options.max_tokens
        cls.model = options.model or cls.model
        cls.prompts = _prompts(options.prompts)
