//! tmp
pub mod plan;
