"""Webhooks (docs/webhooks.md): jobs made from the node's webhook events, kept in a durable
queue, posted with retries by the cluster's leader, dead letters after five minutes."""
