//! The traffic generator: what `rstwall-bench gen` sends, and the sending
//! thread the suite drives too.
//!
//! * [`spec`] — crafted frames: a [`Spec`] of header-field [`Pick`]s and
//!   the table of frames it builds;
//! * [`generator`](mod@generator) — the sending thread: first frames (handshakes), then
//!   the main ones paced, flat out or stamped, until a limit or a stop;
//! * `xsk` — the AF_XDP sender and the latency [`Stamps`];
//! * [`live`] — the kernel's XDP live-frames runner, flat out;
//! * `plan` — [`Plan`]: what `rstwall-bench gen` was asked to send;
//! * `send` — [`run`]: `rstwall-bench gen`, a [`Plan`] sent out of an
//!   interface with a rate line each second;
//! * `shared` — [`GenShared`]: what the sending thread and its driver
//!   share.

pub mod generator;
pub mod live;
mod plan;
mod send;
mod shared;
pub mod spec;
mod xsk;

pub use generator::{generator, GenConfig, Rate};
pub use plan::{Plan, Via, What};
pub use send::run;
pub use shared::GenShared;
pub use spec::{Family, Pick, Spec};
pub use xsk::Stamps;
