//! What the command line says, before it is merged with the config file
//! and checked ([`crate::Settings`]). Every field is an override of
//! the config file's key of the same name; `None` (or `false`) leaves the
//! file's value, or the default, in place. The CLI fills it from its own
//! arguments; kept whole because SIGHUP merges it again with the re-read
//! file.

use std::path::PathBuf;

#[derive(Clone, Debug, Default)]
pub struct Flags {
    pub config: Option<PathBuf>,
    pub inline: Option<String>,
    pub tap: Option<String>,
    /// Host mode: interfaces, comma-separated; empty: every interface.
    pub host: Option<String>,
    pub xdp_mode: Option<String>,
    pub xsk_mode: Option<String>,
    pub poll: Option<String>,
    pub busy_poll_usecs: Option<u32>,
    pub busy_poll_budget: Option<u32>,
    pub queues: Option<u32>,
    pub policy: Option<PathBuf>,
    pub mode: Option<String>,
    pub flow_capacity: Option<usize>,
    pub stats_interval: Option<f64>,
    pub stats_json: Option<PathBuf>,
    pub metrics_listen: Option<String>,
    pub control_socket: Option<String>,
    pub control_group: Option<String>,
    pub state_dir: Option<PathBuf>,
    pub log_level: Option<String>,
    pub replace_foreign_xdp: bool,
    pub rst_guard: bool,
    pub tap_host_interface: bool,
}
