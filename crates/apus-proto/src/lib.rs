//! apus-proto (being written).
