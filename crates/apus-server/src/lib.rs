//! apus-server (being written).
