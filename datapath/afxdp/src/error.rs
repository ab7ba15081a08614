//! What can go wrong opening and running the AF_XDP source.

use rstwall_source::WorkerError;

#[derive(Debug, thiserror::Error)]
pub enum AfXdpError {
    #[error("{0}")]
    Config(String),
    #[error("UMEM for queue {queue}: {reason}")]
    Umem { queue: u32, reason: String },
    #[error("AF_XDP socket on {ifname} queue {queue}: {source}")]
    Socket {
        ifname: String,
        queue: u32,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Workers(#[from] WorkerError),
}
