//! Repairs: rebuild what can be rebuilt from what the repository still holds. Each repair is
//! planned first (a value that can be printed and tested without a backend) and then
//! executed in a crash-safe order (docs/FORMAT.md §18). No repair deletes an object a newer
//! cista wrote, or a pack.

pub mod index;
