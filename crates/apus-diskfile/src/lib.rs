//! apus-diskfile (being written).
