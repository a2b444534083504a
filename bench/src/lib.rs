//! The parts of meshca's benchmark that are arithmetic rather than measurement, so that they
//! are tested with the rest of the workspace.

pub mod cost;
