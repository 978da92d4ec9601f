"""``llmship k8s``: take what runs on one machine to a Kubernetes cluster.

``chart`` writes the Helm chart, ``render`` turns a rollout spec into manifests
(Argo Rollouts, or values for the chart's own controller), ``validate`` checks a
folder of manifests or a chart with the real schemas and tools. Each subcommand
lives in its own module and adds itself here.
"""

from __future__ import annotations

from llmship.cli import k8s_chart, k8s_render, k8s_validate
from llmship.cli._help import App

__all__ = ["app"]

app = App(
    name="k8s",
    help="Kubernetes: the Helm chart, Argo Rollouts from rollout specs, validation.",
    no_args_is_help=True,
)

k8s_chart.register(app)
k8s_render.register(app)
k8s_validate.register(app)
