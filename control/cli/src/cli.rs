//! Command-line definitions (clap). Raw arguments only: each command turns
//! them into validated settings itself.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

const ABOUT: &str = "\
rstwall: a TCP-reset firewall and telemetry appliance.

rstwall judges every TCP RST the way the receiving Linux kernel would
(RFC 5961) and puts it in one class:

  refused           answers a SYN with ack=ISN+1: closed port, connection refused
  abort             exact-sequence RST in a live flow: a real abort
  teardown          acceptable RST after a FIN: data after close
  in_window         in window but not exact: challenge-ACKed; blind injection?
  out_of_window     outside the receiver's window: ignored; spoofed or stale
  syn_sent_bad_ack  answers a SYN without acknowledging it: spoofed
  no_flow           no state for this 5-tuple: backscatter, scan, old flow
  invalid_flags     RST with SYN or FIN: impossible flag combination";

#[derive(Debug, Parser)]
#[command(name = "rstwall", version, about = ABOUT, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Analyze pcap/pcapng captures offline with the live engine.
    #[command(long_about = ANALYZE_ABOUT)]
    Analyze(AnalyzeArgs),
    /// Watch this server's own TCP resets, with the process behind each
    /// and netstat's counters explained (no config, no daemon).
    #[command(long_about = HOST_ABOUT)]
    Host(HostArgs),
    /// Run the appliance on live ports (AF_XDP): inline or on a tap.
    #[command(long_about = RUN_ABOUT)]
    Run(Box<RunArgs>),
    /// The running daemon: ports, modes, queues, uptime, policy version.
    #[command(long_about = STATUS_ABOUT)]
    Status(StatusArgs),
    /// Every counter of the running daemon, once or every few seconds.
    Stats(StatsArgs),
    /// A live view: RST rates by class, top sources and ports, alerts.
    #[command(long_about = TOP_ABOUT)]
    Top(TopArgs),
    /// The flows the workers track.
    Flows(FlowsArgs),
    /// Show or change the running policy (validated, applied to every
    /// worker at once, persisted).
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Block networks (all their TCP), optionally for a while.
    #[command(subcommand, long_about = BLOCK_ABOUT)]
    Block(BlockCommand),
    /// Capture live packets of some RST classes to a pcap file.
    #[command(long_about = CAPTURE_ABOUT)]
    Capture(CaptureArgs),
    /// Alerts: active ones, what fired and when, against which threshold.
    Alerts(AlertsArgs),
    /// A lab of network namespaces with real kernel TCP stacks, rstwall
    /// inline, and scenarios that check themselves.
    Lab(LabArgs),
}

/// How a client command finds the daemon.
#[derive(Debug, Clone, clap::Args)]
pub struct SocketArg {
    /// The daemon's control socket (its `control_socket`).
    #[arg(long, value_name = "PATH", env = "RSTWALL_SOCKET",
          default_value = rstwall_api::DEFAULT_SOCKET)]
    pub socket: PathBuf,
}

const STATUS_ABOUT: &str = "\
The running daemon: ports and how each is attached (XDP native or generic,
AF_XDP zero-copy or copy), queues, uptime, and the policy version.

Every client command (status, stats, top, flows, policy, block, capture,
alerts) talks to the daemon's control socket, by default
/run/rstwall/rstwall.sock (--socket or RSTWALL_SOCKET to change it). Root, or
a member of the daemon's control_group, may use it. When no daemon runs,
they say so in one line and exit 1; a request the daemon refuses exits 2.";

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub socket: SocketArg,
    /// Print the daemon's JSON answer.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub socket: SocketArg,
    /// Print the daemon's JSON document (every counter).
    #[arg(long)]
    pub json: bool,
    /// Repeat every SECS seconds (default 1) until interrupted, with rates.
    #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "1")]
    pub watch: Option<f64>,
}

const TOP_ABOUT: &str = "\
A live view of the running daemon, refreshed every second: packet and RST
rates by class, what was dropped, the top RST sources and destination ports,
and the alerts that are active. Fits an 80x24 terminal; q (or Ctrl-C) quits.
Without a terminal (a pipe), it prints one frame per refresh.";

#[derive(Debug, clap::Args)]
pub struct TopArgs {
    #[command(flatten)]
    pub socket: SocketArg,
    /// Seconds between refreshes.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub interval: f64,
    /// Quit by itself after SECS seconds.
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
}

#[derive(Debug, clap::Args)]
pub struct FlowsArgs {
    #[command(flatten)]
    pub socket: SocketArg,
    /// Only flows in this state: syn_sent, syn_received, established,
    /// midstream, fin_wait, close_wait, last_ack, time_wait, closed.
    #[arg(long, value_name = "STATE")]
    pub state: Option<String>,
    /// At most N flows.
    #[arg(long, value_name = "N", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub limit: u32,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print the running policy (a policy file), its version and digest.
    Show {
        #[command(flatten)]
        socket: SocketArg,
        #[arg(long)]
        json: bool,
    },
    /// Change keys: mode, actions.<class>, ratelimit.<field>, lists.allow,
    /// lists.deny (comma-separated CIDRs). All or nothing.
    Set {
        #[command(flatten)]
        socket: SocketArg,
        /// KEY=VALUE, e.g. mode=enforce actions.no_flow=ratelimit
        #[arg(required = true, value_name = "KEY=VALUE")]
        assignments: Vec<String>,
    },
    /// Replace the running policy with a policy file (validated first).
    Apply {
        #[command(flatten)]
        socket: SocketArg,
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Show how a policy file differs from the running policy.
    Diff {
        #[command(flatten)]
        socket: SocketArg,
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

const BLOCK_ABOUT: &str = "\
Operator blocks: networks whose TCP packets are all dropped (in XDP, before
they reach rstwall's workers) while the policy is in enforce mode; in monitor
mode they are counted as would-drop. Blocks are kept apart from the policy,
survive a restart, and end by themselves after --ttl.

Examples:
  rstwall block add 198.18.99.0/24 --ttl 10m
  rstwall block del 198.18.99.0/24
  rstwall block list";

#[derive(Debug, Subcommand)]
pub enum BlockCommand {
    /// Block a network (or renew its block with a new TTL).
    Add {
        #[command(flatten)]
        socket: SocketArg,
        /// CIDR or address.
        #[arg(value_name = "CIDR")]
        cidr: String,
        /// How long: 90s, 10m, 2h, 1d... (default: until removed).
        #[arg(long, value_name = "DURATION")]
        ttl: Option<String>,
    },
    /// Remove a block.
    Del {
        #[command(flatten)]
        socket: SocketArg,
        #[arg(value_name = "CIDR")]
        cidr: String,
    },
    /// List the blocks.
    List {
        #[command(flatten)]
        socket: SocketArg,
        #[arg(long)]
        json: bool,
    },
}

const CAPTURE_ABOUT: &str = "\
Capture live packets from the running daemon's workers into a pcap file that
tcpdump and Wireshark open: RSTs of the given classes (default: every RST), or
every TCP packet (--class all). Frames are copied as the workers see them
(up to 2048 bytes each); the capture ends after --count packets, after
--timeout, or on Ctrl-C, always leaving a valid file. One capture at a time.

Examples:
  rstwall capture -w /tmp/spoofed.pcap --class in_window,out_of_window --count 100
  rstwall capture -w /tmp/all.pcap --class all --count 1000 --timeout 30s";

#[derive(Debug, clap::Args)]
pub struct CaptureArgs {
    #[command(flatten)]
    pub socket: SocketArg,
    /// The pcap file to write.
    #[arg(short = 'w', long = "write", value_name = "FILE", required = true)]
    pub write: PathBuf,
    /// RST classes, comma-separated, or `rst` (every RST) or `all` (every
    /// TCP packet).
    #[arg(long, value_name = "CLASS", default_value = "rst")]
    pub class: String,
    /// Stop after N packets.
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub count: u64,
    /// Stop after this long (90s, 10m...) even with fewer packets.
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct AlertsArgs {
    #[command(flatten)]
    pub socket: SocketArg,
    #[arg(long)]
    pub json: bool,
}

const ANALYZE_ABOUT: &str = "\
Analyze pcap/pcapng captures offline with the same engine the datapath runs.

Reads Ethernet (with up to two VLAN tags), Linux cooked v1/v2 (tcpdump -i any),
BSD loopback/NULL and raw IPv4/IPv6 captures. Several files are read in the
order given, as one stream. A truncated or corrupt file is read up to the
damage and the report says where it stopped.

Exit status: 0 on success (also when a file was damaged), 1 when writing
output failed, 2 for bad arguments or files that are not captures.

Examples:
  rstwall analyze capture.pcap
  rstwall analyze --events - capture.pcap | jq .class
  rstwall analyze --write spoofed.pcap --class in_window,out_of_window capture.pcap
  rstwall analyze --policy policy.toml --mode enforce --json capture.pcapng";

const HOST_ABOUT: &str = "\
Watch the TCP resets (RSTs) of the server this runs on, on every network
interface (lo included, and interfaces that appear later), and say for each
one what it means, what the kernel did with it, and which program was
involved. No configuration, no daemon; it never drops, delays or changes a
packet. Needs root.

On a terminal it shows a live view (q or Ctrl-C ends it); at the end, or
after --duration, it prints a report:
  - RSTs by class and direction (in: received, out: sent, local: on lo),
    by service port and by process (pid, command, systemd unit/container);
  - the alerts that fired (e.g. failed_connects: 2 failed connects/s);
  - netstat's TCP counters over the same time, explained: \"failed
    connection attempts\" (AttemptFails), \"connection resets received\"
    (EstabResets: connections closed, not RSTs received), \"resets sent\"
    (OutRsts) by reason, with the connects, ports and processes behind them.

Examples:
  rstwall host                               # live view, report on q
  rstwall host --duration 30s                # 30 seconds, then the report
  rstwall host --iface lo --duration 1m --json > report.json
  rstwall host --events - | jq 'select(.class == \"refused\")'";

#[derive(Debug, clap::Args)]
pub struct HostArgs {
    /// Interfaces to watch, comma-separated (default: all of them, lo
    /// included, and any that appear while it runs).
    #[arg(long, value_name = "IFACE", value_delimiter = ',')]
    pub iface: Vec<String>,

    /// Stop after this long (30s, 10m, 1h...) and print the report
    /// (default: until q, Ctrl-C or SIGTERM).
    #[arg(long, value_name = "DURATION")]
    pub duration: Option<String>,

    /// Print the report as JSON (no live view).
    #[arg(long)]
    pub json: bool,

    /// Write one JSON line per RST to FILE ("-" for standard output, then
    /// no live view and the report goes to standard error): time, iface,
    /// direction, 5-tuple, seq, ack, class, the kernel's verdict, pid,
    /// comm, cgroup.
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,

    /// Rows in each list of the report.
    #[arg(long, default_value_t = 10, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub top: u16,
}

#[derive(Debug, clap::Args)]
pub struct AnalyzeArgs {
    /// Capture files (pcap or pcapng).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Print the report as JSON instead of text.
    #[arg(long)]
    pub json: bool,

    /// Write one JSON line per RST to FILE ("-" for standard output): frame,
    /// timestamp, 5-tuple, seq, ack, class, with_data, verdict.
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,

    /// Write the RSTs matching --class to FILE as a pcap (tcpdump and
    /// Wireshark open it).
    #[arg(long, value_name = "FILE")]
    pub write: Option<PathBuf>,

    /// With --write: RST classes to keep, comma-separated (default: all).
    #[arg(long, value_name = "CLASS", value_delimiter = ',', requires = "write")]
    pub class: Vec<String>,

    /// Apply a policy file (TOML; see the README) to compute verdicts.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,

    /// Override the policy's mode: monitor (count only) or enforce.
    #[arg(long, value_name = "MODE")]
    pub mode: Option<String>,

    /// Rows in each top list.
    #[arg(long, default_value_t = 10, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub top: u16,

    /// Flows tracked at once (oldest evicted beyond that).
    #[arg(long, value_name = "N")]
    pub flow_capacity: Option<usize>,
}

const RUN_ABOUT: &str = "\
Run the appliance on live network ports, or on this host's own TCP.

Three ways to connect it:

  --inline PORT_A,PORT_B   bump in the wire. Frames arriving on one port leave
                           on the other, unchanged. TCP goes through rstwall's
                           engine, which judges every RST; in enforce mode the
                           RSTs the policy drops are not forwarded. Everything
                           else (ARP, ICMP, UDP...) is forwarded in the kernel.
                           The ports need no IP address and should not be in a
                           bridge.
  --host [IFACE,...]       this host's own TCP (every interface by default, lo
                           included): host mode, the service form of `rstwall
                           host`. tc programs pass every packet as it is and
                           copy its TCP headers; each RST gets the kernel's own
                           verdict and the process behind it. Observes only:
                           the policy runs in monitor mode.
  --tap PORT               a mirror/SPAN port or a network tap. Frames are
                           judged and counted, never forwarded. Not for one of
                           this host's own interfaces (it would cut the host's
                           TCP there; refused unless --tap-host-interface):
                           `rstwall host` watches this host's own resets.

How it works: an XDP program on each port hands TCP to an AF_XDP socket per
RX queue, served by one worker thread per queue (pinned to a CPU). If rstwall
stops or crashes, the XDP program stays and an inline port keeps forwarding
everything in the kernel (fail-open) until rstwall starts again and takes over.
A clean stop (SIGINT, SIGTERM) removes the XDP programs: an inline pair then
no longer forwards. Host mode (--host) attaches tc and tracing programs
instead, which pass every packet; they go with rstwall however it ends.

With several queues, configure identical, symmetric RSS on both inline ports
(e.g. ethtool -X/-N), so that both directions of a connection reach the same
queue index: rstwall needs to see both to judge a RST.

Settings: --config FILE reads them from a TOML file whose keys are the long
options below (xdp_mode for --xdp-mode; inline = [\"eth1\", \"eth2\"]); an option
given on the command line overrides its key. Unknown keys are errors.
dist/rstwall.toml is a commented example.

Policy: the running policy is kept in STATE_DIR/policy.toml, rewritten
atomically whenever it changes, with a version number that counts the
changes. At start-up rstwall runs, in this order of precedence:
  1. the policy file with --mode applied, if --policy or --mode is given;
  2. the persisted policy, unless the configured policy file changed since
     rstwall last loaded it (then that file);
  3. the configured policy file (config key `policy`), else the default
     policy (monitor mode).
SIGHUP (systemctl reload) re-reads the config file and its policy file and
applies the policy if it is valid; an invalid one is logged (file, line, key)
and the running policy stays. A policy changed through the control API stays
until the configured policy itself changes (as across a restart). Other
changed settings need a restart.

Control: a control API (HTTP with JSON bodies) on the Unix socket
--control-socket (default /run/rstwall/rstwall.sock, mode 0600; `off`
disables it) serves `rstwall status`, `stats`, `top`, `flows`, `policy`,
`block`, `capture` and `alerts`. Root may use it, and with --control-group
the members of that group. Policy changes made through it are persisted
like reloads and survive a restart; operator blocks (`rstwall block`) are
kept in STATE_DIR/blocks.json.

Metrics: Prometheus/OpenMetrics at http://METRICS_LISTEN/metrics (default
127.0.0.1:9717; `off` disables it). Statistics are also logged every
--stats-interval seconds (RUST_LOG, when set, overrides --log-level with
tracing's filter syntax); --stats-json keeps a JSON snapshot up to date.

Needs root (CAP_NET_ADMIN, CAP_BPF, CAP_SYS_ADMIN, CAP_NET_RAW, CAP_IPC_LOCK).

Exit status: 0 after a clean stop, 1 when starting or running failed, 2 for
bad arguments, a bad config or policy file, or an invalid persisted state.

Examples:
  rstwall run --config /etc/rstwall/rstwall.toml
  rstwall run --inline eth1,eth2
  rstwall run --inline eth1,eth2 --policy /etc/rstwall/policy.toml --mode enforce
  rstwall run --tap eth3 --stats-interval 1 --stats-json /run/rstwall/stats.json";

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("ports").args(["inline", "tap", "host"])))]
pub struct RunArgs {
    /// Read settings from a TOML file (keys: the long options; flags given
    /// here override them). SIGHUP re-reads it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Sit inline between two ports (bump in the wire).
    #[arg(long, value_name = "PORT_A,PORT_B")]
    pub inline: Option<String>,

    /// Watch a mirror/tap port: count only, forward nothing.
    #[arg(long, value_name = "PORT")]
    pub tap: Option<String>,

    /// Host mode: watch this host's own TCP on these interfaces (default:
    /// every interface, lo included, and later ones), as `rstwall host`
    /// does, as a service. Observes only: nothing is dropped, the policy
    /// runs in monitor mode.
    #[arg(long, value_name = "IFACE,...", num_args = 0..=1, default_missing_value = "all")]
    pub host: Option<String>,

    /// How to attach XDP: native (in the driver; fastest), generic (works
    /// on any interface, slower), auto (native, else generic) [default: auto].
    #[arg(long, value_name = "MODE")]
    pub xdp_mode: Option<String>,

    /// AF_XDP bind mode: zerocopy (the driver DMAs into rstwall's memory),
    /// copy, or auto (zero-copy where the driver supports it, else copy)
    /// [default: auto].
    #[arg(long, value_name = "MODE")]
    pub xsk_mode: Option<String>,

    /// How the AF_XDP workers wait for frames: wakeup (spin briefly, then
    /// sleep until frames arrive), spin (never sleep: one CPU per worker
    /// at 100%), or busy (spin and busy-poll the driver's NAPI:
    /// SO_PREFER_BUSY_POLL; set the ports' napi_defer_hard_irqs and
    /// gro_flush_timeout for it) [default: wakeup].
    #[arg(long, value_name = "MODE")]
    pub poll: Option<String>,

    /// Busy polling: SO_BUSY_POLL, microseconds [default: 20].
    #[arg(long, value_name = "USECS")]
    pub busy_poll_usecs: Option<u32>,

    /// Busy polling: SO_BUSY_POLL_BUDGET, frames per NAPI poll
    /// [default: 64].
    #[arg(long, value_name = "N")]
    pub busy_poll_budget: Option<u32>,

    /// RX queues to serve, 0..N (default: all of the port's RX queues).
    /// Queues beyond N are forwarded (inline) or ignored (tap) by the kernel.
    #[arg(long, value_name = "N")]
    pub queues: Option<u32>,

    /// Policy file (TOML; see the README). Default: the config's `policy`,
    /// else monitor mode. Given here, it wins over the persisted policy.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,

    /// Override the policy's mode: monitor (count only) or enforce. Given
    /// here, it wins over the persisted policy, and over reloads.
    #[arg(long, value_name = "MODE")]
    pub mode: Option<String>,

    /// Flows tracked at once per worker (oldest evicted beyond that).
    #[arg(long, value_name = "N")]
    pub flow_capacity: Option<usize>,

    /// Seconds between statistics lines (fractions allowed; 0: none)
    /// [default: 10].
    #[arg(long, value_name = "SECS")]
    pub stats_interval: Option<f64>,

    /// Rewrite a JSON statistics snapshot to FILE every interval and at exit
    /// (atomically: readers never see a partial file).
    #[arg(long, value_name = "FILE")]
    pub stats_json: Option<PathBuf>,

    /// Serve Prometheus metrics at http://ADDR/metrics, or `off`
    /// [default: 127.0.0.1:9717].
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,

    /// The control API's Unix socket (the CLI's `status`, `stats`, `policy`
    /// ... talk to it), or `off` [default: /run/rstwall/rstwall.sock].
    #[arg(long, value_name = "PATH")]
    pub control_socket: Option<String>,

    /// Besides root, members of this group may use the control API (the
    /// socket is then mode 0660, group GROUP; else 0600, root only).
    #[arg(long, value_name = "GROUP")]
    pub control_group: Option<String>,

    /// Where the running policy is persisted (locked: one rstwall per
    /// directory) [default: /var/lib/rstwall].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Log level: off, error, warn, info, debug or trace [default: info].
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Replace an XDP program that is not rstwall's on the ports. Without
    /// it, rstwall refuses to start on a port that has one.
    #[arg(long)]
    pub replace_foreign_xdp: bool,

    /// Inline, enforce: drop spoofed RSTs (the classes the policy drops:
    /// in_window, out_of_window, syn_sent_bad_ack) in XDP, without a copy
    /// to the workers, for the flows under attack. The workers keep the
    /// per-flow state the kernel judges by; counts stay exact.
    #[arg(long)]
    pub rst_guard: bool,
    /// Allow --tap on an interface that carries one of this host's
    /// addresses (a mirror port that also has one). Without it, rstwall
    /// refuses: tap mode would cut the host's own TCP on that interface
    /// (`rstwall host` watches the host's own resets without touching them).
    #[arg(long)]
    pub tap_host_interface: bool,
}

// ---------------------------------------------------------------------------
// rstwall lab
// ---------------------------------------------------------------------------

const LAB_ABOUT: &str = "\
A lab of network namespaces with real Linux TCP stacks on either side of
rstwall, and scenarios that produce each kind of TCP reset and check that
rstwall counted (and, in enforce mode, dropped) exactly what was sent.

  client   198.18.0.1 ─┐
                       ├─ switch ─ pa ══ rstwall ══ pb ─ server 198.18.0.2
  attacker 198.18.0.3 ─┘

rstwall runs as `rstwall run --inline pa,pb` in the appliance namespace.

The attacker also spoofs addresses from 198.19.0.0/16. Every address is in
198.18.0.0/15 (reserved for benchmarks): nothing leaves the machine.

  rstwall lab up                 build the lab and start rstwall in it
  rstwall lab run SCENARIO       run a scenario (builds the lab if needed)
  rstwall lab down               remove everything

Namespaces are named rwlab-NAME-ROLE (--name, default \"default\"); the
daemon's log, statistics and state are in DIR/NAME (--dir, default
/run/rstwall-lab). `lab up` first removes whatever an earlier lab of the
same name left behind.

Needs root. Exit status: 0 on success (for `run`: every check passed), 1
when a scenario failed or the lab could not be built, 2 for bad arguments.";

/// Arguments of `rstwall lab`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = LAB_ABOUT)]
pub struct LabArgs {
    #[command(subcommand)]
    pub action: LabAction,
}

#[derive(Debug, Subcommand)]
pub enum LabAction {
    /// Build the lab (clearing a previous one of the same name) and start
    /// rstwall inline in it.
    #[command(long_about = LAB_UP_ABOUT)]
    Up(UpArgs),
    /// Stop rstwall (cleanly: its XDP programs are detached) and remove
    /// the lab's namespaces and files.
    #[command(long_about = LAB_DOWN_ABOUT)]
    Down(DownArgs),
    /// Run a scenario and check it; print a report.
    #[command(long_about = LAB_RUN_ABOUT)]
    Run(LabRunArgs),
}

/// Which lab.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// The lab's name: namespaces are rwlab-NAME-ROLE. Labs with different
    /// names run side by side [default: default].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Where lab directories go (the daemon's log, statistics, state)
    /// [default: /run/rstwall-lab].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

const LAB_UP_ABOUT: &str = "\
Build the lab and start rstwall in it.

Removes whatever an earlier lab of the same name left (a crashed run's
namespaces and daemon), then creates five network namespaces — client,
attacker, a switch, the appliance and the server — and starts
`rstwall run --inline pa,pb` in the appliance namespace with the lab's own
policy, state directory and statistics file. The daemon keeps running after
this command returns; `rstwall lab down` stops it.

Examples:
  rstwall lab up
  rstwall lab up --mode enforce
  rstwall lab up --name mine --dir /tmp/labs";

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub target: Target,

    /// The policy mode rstwall starts in: monitor (count only) or enforce
    /// (drop the RSTs the default policy drops) [default: monitor].
    #[arg(long, value_name = "MODE")]
    pub mode: Option<String>,
}

const LAB_DOWN_ABOUT: &str = "\
Remove the lab: stop its rstwall with SIGTERM (a clean stop detaches the XDP
programs; SIGKILL after 15 s), delete its namespaces (their veths and the
switch go with them) and its directory. Nothing to remove is not an error.";

#[derive(Debug, clap::Args)]
pub struct DownArgs {
    #[command(flatten)]
    pub target: Target,
}

const LAB_RUN_ABOUT: &str = "\
Run a scenario on the lab and check it. Real Linux TCP stacks produce the
resets (only the attacker's packets are hand-built); rstwall's counters are
compared with what was sent.

Scenarios:
  refused      the client keeps connecting to a closed port; the server's
               kernel answers every SYN with a RST: counted `refused`.
  teardown     the server closes, the client sends data anyway; the server's
               kernel answers with a RST: counted `teardown`.
  abort        the server closes with unread data: a RST with the exact
               sequence number, counted `abort`.
  blind-reset  the attacker sprays spoofed RSTs with guessed sequence numbers
               at live connections: `in_window` and `out_of_window`. The
               connections must survive; in enforce mode (the default for
               blind-reset and mixed) rstwall drops every one and none
               reaches the server.
  backscatter  RSTs for connections that do not exist, from spoofed
               addresses: `no_flow`.
  syn-flood    spoofed SYNs from random addresses and ports at a listening
               port; legitimate connections must still get through.
  mixed        all of the above at once, over legitimate bulk transfers and
               short connections.

Every scenario checks itself: the connections that must survive did, the
resets that must happen did, and rstwall counted exactly what was sent, by
class, with the verdicts the policy gives (dropped in enforce mode, `would
drop` in monitor mode). The report lists each check with its numbers.

The lab is built first if it is not up, and removed afterwards unless
--keep is given; a lab that was already up is left up. Ctrl-C stops the
scenario and removes what this command built.

Exit status: 0 when every check passed, 1 when one failed (or the lab could
not be built), 2 for bad arguments.

Examples:
  rstwall lab run refused
  rstwall lab run blind-reset --mode monitor
  rstwall lab run mixed --duration 60 --keep
  rstwall lab run mixed --json > report.json";

#[derive(Debug, clap::Args)]
pub struct LabRunArgs {
    /// refused, teardown, abort, blind-reset, backscatter, syn-flood or
    /// mixed.
    #[arg(value_name = "SCENARIO")]
    pub scenario: String,

    #[command(flatten)]
    pub target: Target,

    /// How long the scenario sends, in seconds (1 to 3600; fractions
    /// allowed) [default: 30 for mixed, 5 for the others].
    #[arg(long, value_name = "SECS")]
    pub duration: Option<String>,

    /// The policy mode for the run: monitor or enforce [default: enforce
    /// for blind-reset and mixed, monitor for the others]. The lab stays
    /// in it.
    #[arg(long, value_name = "MODE")]
    pub mode: Option<String>,

    /// Leave the lab up afterwards (for `rstwall lab down` later).
    #[arg(long)]
    pub keep: bool,

    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,

    /// Show `rstwall top` while the scenario runs (q stops watching, Ctrl-C
    /// stops the scenario); the report follows.
    #[arg(long, conflicts_with = "json")]
    pub top: bool,

    /// Run host mode on the server too (`rstwall host`, as a library) and
    /// check it: every RST's class agrees with the server kernel's
    /// verdict, and the process behind each socket a RST met is named.
    /// Monitor mode only (the server must see every RST).
    #[arg(long)]
    pub host: bool,
}
