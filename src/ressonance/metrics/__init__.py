"""Metrics: the node's figures in the Prometheus exposition format (docs/observability.md)."""
