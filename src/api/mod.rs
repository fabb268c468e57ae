//! HTTP API (axum): health, metrics, consoles.
