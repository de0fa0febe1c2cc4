"""Fan-out between nodes behind small role interfaces (docs/design.md)."""
