"""The HTTP API (Pusher REST: /apps/{id}/...) and the operational endpoints (/health)."""
