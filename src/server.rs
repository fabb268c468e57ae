//! The tokio shell: sockets, clocks and the database around the sans-IO cores.
