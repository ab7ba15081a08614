//! One integration-test binary; each module is one area.

mod classes;
mod corpus;
mod linux_fixtures;
