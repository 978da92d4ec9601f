"""Kubernetes: the Helm chart, Argo Rollouts rendered from rollout specs, and validation
of what is rendered by the real schemas and tools."""
