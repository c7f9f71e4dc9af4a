//! apus-http (being written).
