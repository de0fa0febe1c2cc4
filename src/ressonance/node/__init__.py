"""Orchestration of one node: sockets, channels, presence, and the actions sessions ask for."""
