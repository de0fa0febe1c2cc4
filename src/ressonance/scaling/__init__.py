"""Fan-out between nodes behind small role interfaces (ARCHITECTURE.md "Layers")."""
