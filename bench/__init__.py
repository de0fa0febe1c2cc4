"""Benchmarks that speak only the public Pusher protocol, run side by side with Soketi."""
