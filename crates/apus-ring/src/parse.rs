//! Device argument parsing (being written).
