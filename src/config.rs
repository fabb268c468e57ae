//! Typed configuration, validated at start with clear errors.
