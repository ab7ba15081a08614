//! One integration-test binary; each module is one area.

mod classes;
mod cli;
mod corpus;
mod linux_fixtures;
