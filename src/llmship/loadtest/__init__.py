"""``llmship loadtest``: load tests of LLM services against SLOs, with Locust.

The pure core (plans, measurements, statistics, SLOs, arrival schedules) is
importable anywhere. Locust itself runs in a separate process
(``llmship.loadtest.worker``), because it monkey-patches the process with gevent;
:mod:`llmship.loadtest.user` (the Locust users) is imported only there and by
locustfiles. Nothing imported here may import ``ssl``: the worker imports this
package before Locust patches it. The workflow (serve, measure, write, record) is
:mod:`llmship.loadtest.ops`; the report is :mod:`llmship.loadtest.report_model`.
"""

from llmship.loadtest.arrivals import arrivals, arrivals_until
from llmship.loadtest.measure import RequestRecord, StreamParser
from llmship.loadtest.plan import ENDPOINTS, LoadPlan, Prompt, load_prompts, parse_duration
from llmship.loadtest.report_model import LoadTestReport, parse_report
from llmship.loadtest.slo import SLO_KEYS, SloVerdict, evaluate, parse_slo, parse_slos
from llmship.loadtest.stats import Distribution, LoadTestStats, percentile, summarize, timeline

__all__ = [
    "ENDPOINTS",
    "SLO_KEYS",
    "Distribution",
    "LoadPlan",
    "LoadTestReport",
    "LoadTestStats",
    "Prompt",
    "RequestRecord",
    "SloVerdict",
    "StreamParser",
    "arrivals",
    "arrivals_until",
    "evaluate",
    "load_prompts",
    "parse_duration",
    "parse_report",
    "parse_slo",
    "parse_slos",
    "percentile",
    "summarize",
    "timeline",
]
