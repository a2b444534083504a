//! The parts of meshca's benchmark that are arithmetic rather than measurement, so that they
//! are tested with the rest of the workspace.

// Not a member of the workspace lints (its own unsafe_code rule): missing_docs is asked here.
#![warn(missing_docs)]

pub mod cost;
