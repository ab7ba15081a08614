//! [`BadArg`]: an option that cannot be honoured.

use std::fmt;

/// A bad option: the message names it, in one line, and `rstwall-bench`
/// exits with status 2. The binary's checks of the command line give it,
/// and so do the library's checks that need the machine (a CPU this
/// process may not use, an interface that is not there).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadArg(pub String);

impl fmt::Display for BadArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadArg {}
