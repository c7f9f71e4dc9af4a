//! apus: the single binary.
fn main() {}
