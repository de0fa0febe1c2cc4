"""Where apps (tenants) come from."""
