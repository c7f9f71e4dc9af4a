//! Account and container info, cached briefly.
