//! apus-server (being written).

pub mod account;
pub mod container;
pub mod db_common;
