//! `rstwall lab`: a namespace lab with real kernel TCP stacks (being built).

use crate::Failure;

/// Arguments of `rstwall lab`.
#[derive(Debug, clap::Args)]
pub struct LabArgs {}

pub fn run(_args: LabArgs) -> Result<(), Failure> {
    Err(Failure::runtime(anyhow::anyhow!("rstwall lab: not built yet")))
}
