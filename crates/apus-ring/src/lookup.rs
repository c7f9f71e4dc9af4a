//! Lookups (being written).
