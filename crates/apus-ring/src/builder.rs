//! The ring builder (being written).
