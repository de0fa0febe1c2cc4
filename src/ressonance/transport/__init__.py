"""The WebSocket and HTTP edge: asyncio protocols, framing, handshakes, write coalescing."""
