//! `rstwall run`: the daemon ([`rstwall_daemon`]) with this command line.

use rstwall_api::Failure;
use rstwall_daemon::Flags;

use crate::cli::RunArgs;

pub fn run(args: RunArgs) -> Result<(), Failure> {
    rstwall_daemon::run(flags(args))
}

/// The command line as the daemon takes it (it merges it with the config
/// file at start-up and at every SIGHUP).
fn flags(a: RunArgs) -> Flags {
    Flags {
        config: a.config,
        inline: a.inline,
        tap: a.tap,
        host: a.host,
        xdp_mode: a.xdp_mode,
        xsk_mode: a.xsk_mode,
        poll: a.poll,
        busy_poll_usecs: a.busy_poll_usecs,
        busy_poll_budget: a.busy_poll_budget,
        queues: a.queues,
        policy: a.policy,
        mode: a.mode,
        flow_capacity: a.flow_capacity,
        stats_interval: a.stats_interval,
        stats_json: a.stats_json,
        metrics_listen: a.metrics_listen,
        control_socket: a.control_socket,
        control_group: a.control_group,
        state_dir: a.state_dir,
        log_level: a.log_level,
        replace_foreign_xdp: a.replace_foreign_xdp,
        rst_guard: a.rst_guard,
        tap_host_interface: a.tap_host_interface,
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use anyhow::anyhow;
    use clap::Parser;
    use rstwall_afxdp::{BindMode, Poll, Topology};
    use rstwall_bpf::XdpMode;
    use rstwall_daemon::config::{LogLevel, MetricsListen};
    use rstwall_daemon::settings::Frames;
    use rstwall_daemon::Settings;
    use rstwall_engine::policy::{Mode, PolicyConfig};
    use rstwall_engine::RstClass;

    use super::*;
    use crate::cli::{Cli, Command};

    fn settings(args: &[&str]) -> anyhow::Result<Settings> {
        let cli = Cli::try_parse_from(["rstwall", "run"].iter().chain(args))
            .map_err(|e| anyhow!("{e}"))?;
        match cli.command {
            Command::Run(a) => Settings::from_args(&flags(*a)),
            _ => unreachable!(),
        }
    }

    fn err(args: &[&str]) -> String {
        format!("{:#}", settings(args).expect_err("should be rejected"))
    }

    #[test]
    fn inline_and_tap_topologies() {
        let s = settings(&["--inline", "eth1, eth2"]).unwrap();
        assert_eq!(
            s.frames,
            Frames::Ports(Topology::Inline {
                a: "eth1".into(),
                b: "eth2".into()
            })
        );
        assert_eq!(s.xdp_mode, XdpMode::Auto);
        assert_eq!(s.bind, BindMode::Auto);
        assert_eq!(s.stats_interval, Some(Duration::from_secs(10)));
        let s = settings(&["--tap", "eth3", "--stats-interval", "0"]).unwrap();
        assert_eq!(
            s.frames,
            Frames::Ports(Topology::Tap {
                port: "eth3".into()
            })
        );
        assert_eq!(s.stats_interval, None);
    }

    #[test]
    fn host_mode_on_every_interface_or_some() {
        assert_eq!(settings(&["--host"]).unwrap().frames, Frames::Host(vec![]));
        assert_eq!(
            settings(&["--host", "all"]).unwrap().frames,
            Frames::Host(vec![])
        );
        assert_eq!(
            settings(&["--host", "lo, eth0"]).unwrap().frames,
            Frames::Host(vec!["lo".into(), "eth0".into()])
        );
        assert!(err(&["--host", "lo,,eth0"]).contains("--host"));
        assert!(err(&["--host", "lo", "--tap", "eth1"]).contains("cannot be used with"));
    }

    #[test]
    fn the_poll_mode_and_busy_polling_parameters() {
        assert_eq!(settings(&["--tap", "a"]).unwrap().poll, Poll::Wakeup);
        assert_eq!(
            settings(&["--tap", "a", "--poll", "spin"]).unwrap().poll,
            Poll::Spin
        );
        assert_eq!(
            settings(&["--tap", "a", "--poll", "busy"]).unwrap().poll,
            Poll::Busy {
                usecs: Poll::BUSY_USECS,
                budget: Poll::BUSY_BUDGET
            }
        );
        assert_eq!(
            settings(&[
                "--tap",
                "a",
                "--poll",
                "busy",
                "--busy-poll-usecs",
                "50",
                "--busy-poll-budget",
                "16"
            ])
            .unwrap()
            .poll,
            Poll::Busy {
                usecs: 50,
                budget: 16
            }
        );
        assert!(err(&["--tap", "a", "--poll", "fast"])
            .contains("--poll: unknown poll mode `fast` (expected wakeup, spin or busy)"));
        assert!(
            err(&["--tap", "a", "--poll", "busy", "--busy-poll-budget", "0"])
                .contains("--busy-poll-budget: 1..=1024")
        );
        assert!(err(&["--tap", "a", "--busy-poll-usecs", "50"]).contains("need poll = \"busy\""));
        // Host mode has no AF_XDP sockets, like it has no RST guard.
        assert!(
            err(&["--host", "--poll", "busy"]).contains("poll: host mode has no AF_XDP sockets")
        );
        assert!(err(&["--host", "lo", "--poll", "wakeup"]).contains("host mode"));
    }

    #[test]
    fn bad_arguments_are_named() {
        assert!(err(&["--inline", "eth1"]).contains("--inline"));
        assert!(err(&["--inline", "eth1,eth1"]).contains("two different ports"));
        assert!(err(&["--inline", "a,b", "--tap", "c"]).contains("cannot be used with"));
        assert!(err(&["--tap", "a", "--xdp-mode", "fast"]).contains("--xdp-mode"));
        assert!(err(&["--tap", "a", "--xsk-mode", "fast"]).contains("--xsk-mode"));
        assert!(err(&["--tap", "a", "--queues", "0"]).contains("--queues"));
        assert!(err(&["--tap", "a", "--mode", "block"]).contains("--mode"));
        assert!(err(&["--tap", "a", "--flow-capacity", "0"]).contains("--flow-capacity"));
        assert!(err(&["--tap", "a", "--stats-interval=-1"]).contains("--stats-interval"));
        assert!(err(&["--tap", "a", "--policy", "/nonexistent.toml"]).contains("policy file"));
    }

    #[test]
    fn mode_overrides_the_policy() {
        let s = settings(&["--tap", "a", "--mode", "enforce"]).unwrap();
        assert_eq!(s.engine.policy.mode().as_str(), "enforce");
        assert!(s.policy_from_flags);
        assert!(!settings(&["--tap", "a"]).unwrap().policy_from_flags);
    }

    /// A scratch directory with a config file and a policy file.
    struct Files(PathBuf);

    impl Files {
        fn new(tag: &str, config: &str, policy: &str) -> Files {
            let dir =
                std::env::temp_dir().join(format!("rstwall-run-{tag}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("rstwall.toml"), config).unwrap();
            std::fs::write(dir.join("policy.toml"), policy).unwrap();
            Files(dir)
        }
        fn config(&self) -> String {
            self.0.join("rstwall.toml").display().to_string()
        }
    }

    impl Drop for Files {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn defaults_without_a_config_file() {
        let s = settings(&["--tap", "a"]).unwrap();
        assert_eq!(
            s.metrics_listen,
            MetricsListen::On("127.0.0.1:9717".parse().unwrap())
        );
        assert_eq!(s.state_dir, Path::new("/var/lib/rstwall"));
        assert_eq!(s.log_level, LogLevel::Info);
        assert_eq!(s.policy_file, None);
        assert_eq!(s.engine.policy, PolicyConfig::default());
        assert!(err(&[]).contains("give the ports"));
        let s = settings(&[
            "--tap",
            "a",
            "--metrics-listen",
            "off",
            "--log-level",
            "warn",
        ])
        .unwrap();
        assert_eq!(s.metrics_listen, MetricsListen::Off);
        assert_eq!(s.log_level, LogLevel::Warn);
        assert!(err(&["--tap", "a", "--metrics-listen", "9717"]).contains("--metrics-listen"));
        assert!(err(&["--tap", "a", "--log-level", "loud"]).contains("--log-level"));
        assert!(err(&["--tap", "a", "--state-dir", ""]).contains("--state-dir"));
    }

    #[test]
    fn the_config_file_sets_and_flags_override() {
        let f = Files::new(
            "merge",
            "inline = [\"eth1\", \"eth2\"]\nxsk_mode = \"copy\"\nqueues = 2\n\
             stats_interval = 0\nmetrics_listen = \"127.0.0.1:9900\"\nstate_dir = \"state\"\n\
             log_level = \"debug\"\npolicy = \"policy.toml\"\nflow_capacity = 500\n",
            "mode = \"enforce\"\n[actions]\nno_flow = \"drop\"\n",
        );
        let c = f.config();
        let s = settings(&["--config", &c]).unwrap();
        assert_eq!(
            s.frames,
            Frames::Ports(Topology::Inline {
                a: "eth1".into(),
                b: "eth2".into()
            })
        );
        assert_eq!(
            (s.bind, s.queues, s.stats_interval),
            (BindMode::Copy, Some(2), None)
        );
        assert_eq!(s.engine.flow_capacity, 500);
        assert_eq!(s.state_dir, f.0.join("state"));
        assert_eq!(s.policy_file, Some(f.0.join("policy.toml")));
        assert_eq!(s.engine.policy.mode(), Mode::Enforce);
        assert_eq!(s.engine.policy.action(RstClass::NoFlow).as_str(), "drop");
        assert!(!s.policy_from_flags, "the policy came from the file");
        assert_eq!(s.config_file.as_deref(), Some(Path::new(&c)));

        let s = settings(&[
            "--config",
            &c,
            "--tap",
            "eth9",
            "--xsk-mode",
            "auto",
            "--queues",
            "1",
            "--stats-interval",
            "2",
            "--metrics-listen",
            "off",
            "--state-dir",
            "/tmp/x",
            "--log-level",
            "error",
            "--mode",
            "monitor",
            "--flow-capacity",
            "7",
        ])
        .unwrap();
        assert_eq!(
            s.frames,
            Frames::Ports(Topology::Tap {
                port: "eth9".into()
            })
        );
        assert_eq!((s.bind, s.queues), (BindMode::Auto, Some(1)));
        assert_eq!(s.stats_interval, Some(Duration::from_secs(2)));
        assert_eq!(s.metrics_listen, MetricsListen::Off);
        assert_eq!(s.state_dir, Path::new("/tmp/x"));
        assert_eq!(s.log_level, LogLevel::Error);
        assert_eq!(s.engine.flow_capacity, 7);
        // --mode applies to the configured file's policy.
        assert_eq!(s.engine.policy.mode(), Mode::Monitor);
        assert_eq!(s.engine.policy.action(RstClass::NoFlow).as_str(), "drop");
        assert!(s.policy_from_flags);
    }

    #[test]
    fn config_and_policy_errors_name_file_line_and_key() {
        let f = Files::new("errors", "tap = \"a\"\nqueus = 2\n", "mode = \"enforce\"\n");
        let e = err(&["--config", &f.config()]);
        assert!(
            e.contains(&f.config()) && e.contains("line 2, column 1"),
            "{e}"
        );
        assert!(e.contains("unknown field `queus`"), "{e}");

        let f = Files::new(
            "policy-errors",
            "tap = \"a\"\npolicy = \"policy.toml\"\n",
            "mode = \"enforce\"\n[actions]\nno_flow = \"maybe\"\n",
        );
        let e = err(&["--config", &f.config()]);
        assert!(
            e.contains("policy.toml") && e.contains("line 3, column 11"),
            "{e}"
        );
        assert!(e.contains("actions.no_flow: unknown action"), "{e}");
        let e = err(&["--config", "/nonexistent/rstwall.toml", "--tap", "a"]);
        assert!(
            e.contains("config file /nonexistent/rstwall.toml: cannot read it"),
            "{e}"
        );
    }

    #[test]
    fn a_reload_tells_which_settings_wait_for_a_restart() {
        let a = settings(&["--tap", "a"]).unwrap();
        assert!(a
            .needing_restart(&settings(&["--tap", "a", "--mode", "enforce"]).unwrap())
            .is_empty());
        let b = settings(&["--tap", "b", "--queues", "2", "--metrics-listen", "off"]).unwrap();
        assert_eq!(
            a.needing_restart(&b),
            ["inline/tap", "queues", "metrics_listen"]
        );
    }
}
