//! Persistence: one Store trait, SQLite and PostgreSQL implementations.
