"""Where apps live as data: the :class:`~ressonance.storage.base.Database` port, its SQLite
(embedded, the default) and PostgreSQL (a cluster) engines, and the versioned migrations."""
