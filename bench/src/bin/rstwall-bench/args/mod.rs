//! One module per subcommand: its arguments as typed (clap), and their
//! check into the library's options. Every error names its option, in one
//! line ([`rstwall_bench::BadArg`]).

pub mod engine;
pub mod gen;
pub mod host;
pub mod run;
pub mod soak;
mod values;
