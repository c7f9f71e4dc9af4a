//! apus-db (being written).
