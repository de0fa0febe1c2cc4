"""The sans-I/O Pusher protocol core: no asyncio, no sockets, no clock (callers pass ``now``)."""
