//! The control-plane state: the running policy (its versions, persisted in
//! the state directory), the operator blocks, and every way they change —
//! SIGHUP reloads, blocks running out, and the control API's requests,
//! which the main loop answers here ([`ControlState::answer`]) so that
//! they are ordered with the reloads.

use std::time::{Duration, Instant};

use rstwall_api::blocks::Block;
use rstwall_api::status::{PolicyStatus, PortMode};
use rstwall_api::{
    ApiError, BlockAdded, BlockList, BlockRemoved, PolicyChange, PolicyDiff, PolicyShow, Status,
};
use rstwall_engine::policy::{Mode, PolicyConfig};
use rstwall_source::{sys, Source};

use crate::blocks::Blocks;
use crate::flags::Flags;
use crate::metrics::{Metrics, Reload};
use crate::monitor::Monitor;
use crate::persist::{Digest, PolicyState, StateDir};
use crate::server::{Answer, Op};
use crate::settings::Settings;
use crate::source::{Running, SourceView, StatsOf};

/// What a change of policy touches besides the control state: the running
/// source (its workers and its kernel side) and the monitor.
pub struct Ctx<'a, R: Running> {
    pub running: &'a mut R,
    pub monitor: &'a mut Monitor<StatsOf<R>>,
}

/// The running policy and the operator blocks, and every way they change:
/// SIGHUP reloads and the control API.
///
/// SIGHUP: the config file (if any) and the policy file are read and
/// validated again, exactly as at start-up (`--policy`/`--mode` given on
/// the command line still override them). Invalid → an error naming the
/// file, line and key is logged and the running policy stays. Settings
/// other than the policy that changed are reported as needing a restart;
/// they are not applied.
///
/// Every change, whatever its source, goes through `install`:
/// validated as a whole first, persisted (durably) next, then handed to
/// every worker at once ([`rstwall_source::Workers::set_policy`]: a
/// latest-wins slot each worker checks between batches, so no packet is
/// judged by a mix) and to the kernel side ([`Running::apply_policy`]: the
/// XDP maps). A failure before the hand-over changes nothing.
///
/// The XDP deny map is updated entry by entry after the workers have the
/// new policy, and a packet is still judged by one policy or the other,
/// never a mix: the deny list is the first rule in XDP and in the engine
/// alike, so a packet XDP drops matched an entry of the old or the new
/// list (that policy drops it too), and a packet XDP lets through gets the
/// whole verdict of the worker's policy.
pub struct ControlState {
    args: Flags,
    /// As of the start, for what a reload cannot change.
    settings: Settings,
    live: PolicyState,
    blocks: Blocks,
    state: StateDir,
    /// A SIGHUP not yet acted on.
    pending: bool,
    next_expiry_check: Instant,
}

impl ControlState {
    pub fn new(
        args: Flags,
        settings: Settings,
        live: PolicyState,
        blocks: Blocks,
        state: StateDir,
    ) -> ControlState {
        ControlState {
            args,
            settings,
            live,
            blocks,
            state,
            pending: false,
            next_expiry_check: Instant::now(),
        }
    }

    /// The settings as of the start.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The running policy.
    pub fn live(&self) -> &PolicyState {
        &self.live
    }

    /// A SIGHUP: reload at the next turn of the main loop.
    pub fn request_reload(&mut self) {
        self.pending = true;
    }

    /// Operator blocks that ran out are lifted (checked once a second), and
    /// a requested reload happens.
    pub fn reload_if_due<R: Running>(&mut self, now: Instant, ctx: &mut Ctx<R>, metrics: &Metrics) {
        if now >= self.next_expiry_check {
            self.next_expiry_check = now + Duration::from_secs(1);
            let unix = sys::now_ns() / 1_000_000_000;
            if let Some(left) = self.blocks.expired(unix) {
                let ended = self.blocks.len() - left.len();
                match self.install(self.live.clone(), left, ctx) {
                    Ok(_) => tracing::info!("{ended} operator block(s) ended"),
                    Err(e) => tracing::error!("ending expired blocks: {e:#}"),
                }
            }
        }
        if !self.pending {
            return;
        }
        self.pending = false;
        let outcome = self.reload(ctx);
        metrics.count_reload(outcome);
    }

    /// The policy the workers and XDP run: the running policy with the
    /// operator blocks on its deny list.
    pub fn effective(policy: &PolicyConfig, blocks: &Blocks) -> PolicyConfig {
        policy.with_extra_deny(blocks.nets())
    }

    /// Persist and apply `next` and `blocks`; the workers' policy
    /// generation.
    fn install<R: Running>(
        &mut self,
        next: PolicyState,
        blocks: Blocks,
        ctx: &mut Ctx<R>,
    ) -> anyhow::Result<u64> {
        if next != self.live {
            self.state.save_policy(&next)?;
        }
        if blocks != self.blocks {
            blocks.save(self.state.path())?;
        }
        let old = ControlState::effective(&self.live.policy, &self.blocks);
        let new = ControlState::effective(&next.policy, &blocks);
        let generation = if new != old {
            let for_workers = ctx.running.workers_policy(&new);
            let g = ctx.running.source().workers().set_policy(&for_workers);
            ctx.running.apply_policy(&new);
            g
        } else {
            ctx.running.source().workers().policy_generation()
        };
        ctx.monitor.set_policy(&next);
        self.live = next;
        self.blocks = blocks;
        Ok(generation)
    }

    fn reload<R: Running>(&mut self, ctx: &mut Ctx<R>) -> Reload {
        let running = self.live.version;
        let new = match Settings::from_args(&self.args) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(
                    "SIGHUP: reload rejected, policy version {running} keeps running: {e:#}"
                );
                return Reload::Rejected;
            }
        };
        let restart = self.settings.needing_restart(&new);
        if !restart.is_empty() {
            tracing::warn!(
                "SIGHUP: {} changed: not applied until rstwall restarts (a reload applies \
                 the policy only)",
                restart.join(", ")
            );
        }
        // A policy changed at run time (the control API) stays until the
        // configured policy itself changes, as it does across a restart.
        if Digest::of(&new.engine.policy) == self.live.configured
            && new.engine.policy != self.live.policy
        {
            tracing::info!(
                "SIGHUP: {} is unchanged since it was loaded: the running policy, version \
                 {running} (changed at run time), stays",
                new.policy_source()
            );
            return Reload::Unchanged;
        }
        let next = PolicyState::adopt(Some(&self.live), &new.engine.policy);
        if next == self.live {
            tracing::info!(
                "SIGHUP: policy version {running} (digest {}) unchanged ({})",
                next.digest(),
                new.policy_source()
            );
            return Reload::Unchanged;
        }
        let changed = next.policy != self.live.policy;
        let (version, digest, mode) = (next.version, next.digest(), next.policy.mode());
        if let Err(e) = self.install(next, self.blocks.clone(), ctx) {
            tracing::error!(
                "SIGHUP: reload rejected, policy version {running} keeps running: {e:#}"
            );
            return Reload::Rejected;
        }
        tracing::info!(
            "SIGHUP: policy version {version} (digest {digest}): {mode}, {}",
            if changed {
                format!("reloaded from {}", new.policy_source())
            } else {
                format!("unchanged ({})", new.policy_source())
            }
        );
        if changed {
            Reload::Applied
        } else {
            Reload::Unchanged
        }
    }

    /// A control API call.
    pub fn answer<R: Running>(&mut self, op: Op, ctx: &mut Ctx<R>) -> Result<Answer, ApiError> {
        let internal = |e: anyhow::Error| ApiError::internal(format!("{e:#}"));
        let unix = sys::now_ns() / 1_000_000_000;
        match op {
            Op::Status => Ok(Answer::Status(Box::new(self.status(ctx)))),
            Op::Stats => {
                let m = &*ctx.monitor;
                let doc = m.stats_document(&m.totals(), &ctx.running.kernel(), false);
                Ok(Answer::Stats(Box::new(doc)))
            }
            Op::Alerts => Ok(Answer::Alerts(ctx.monitor.alerts_document())),
            Op::PolicyShow => Ok(Answer::Policy(PolicyShow {
                version: self.live.version,
                digest: self.live.digest().to_string(),
                mode: self.live.policy.mode(),
                toml: self.live.policy.to_toml_string(),
                blocks: self.blocks.len(),
            })),
            Op::PolicySet(assignments) => {
                let mut policy = self.live.policy.clone();
                for a in &assignments {
                    policy
                        .set_assignment(a)
                        .map_err(|e| ApiError::bad(e.to_string()))?;
                }
                self.change_policy(policy, &format!("set {}", assignments.join(" ")), ctx)
            }
            Op::PolicyApply(text) => {
                let policy = PolicyConfig::from_toml_str(&text)
                    .map_err(|e| ApiError::bad(format!("policy: {e}")))?;
                self.change_policy(policy, "applied over the control API", ctx)
            }
            Op::PolicyDiff(text) => {
                let policy = PolicyConfig::from_toml_str(&text)
                    .map_err(|e| ApiError::bad(format!("policy: {e}")))?;
                let (old, new) = (self.live.policy.to_toml_string(), policy.to_toml_string());
                Ok(Answer::PolicyDiff(PolicyDiff {
                    version: self.live.version,
                    changed: old != new,
                    diff: unified_diff(&old, &new, "running", "file"),
                }))
            }
            Op::BlockList => Ok(Answer::Blocks(self.blocks_document(unix))),
            Op::BlockAdd { cidr, ttl_s } => {
                let blocks = self
                    .blocks
                    .with_added(cidr, ttl_s, unix)
                    .map_err(ApiError::bad)?;
                let generation = self
                    .install(self.live.clone(), blocks, ctx)
                    .map_err(internal)?;
                tracing::info!(
                    "block {cidr} added{} over the control API",
                    ttl_s.map_or(String::new(), |t| format!(" for {t} s"))
                );
                Ok(Answer::BlockAdded(BlockAdded {
                    cidr,
                    until: ttl_s.map(|t| unix + t),
                    enforced: self.live.policy.mode() == Mode::Enforce,
                    generation,
                }))
            }
            Op::BlockDel { cidr } => {
                let Some(blocks) = self.blocks.without(cidr) else {
                    return Err(ApiError::new(404, format!("{cidr} is not blocked")));
                };
                let generation = self
                    .install(self.live.clone(), blocks, ctx)
                    .map_err(internal)?;
                tracing::info!("block {cidr} removed over the control API");
                Ok(Answer::BlockRemoved(BlockRemoved { cidr, generation }))
            }
        }
    }

    fn change_policy<R: Running>(
        &mut self,
        policy: PolicyConfig,
        what: &str,
        ctx: &mut Ctx<R>,
    ) -> Result<Answer, ApiError> {
        if policy == self.live.policy {
            return Ok(Answer::PolicyChange(PolicyChange {
                changed: false,
                version: self.live.version,
                digest: self.live.digest().to_string(),
                mode: None,
                generation: ctx.running.source().workers().policy_generation(),
            }));
        }
        // A change made at run time: the configured digest stays, so a
        // restart with an unchanged configuration keeps this policy.
        let next = PolicyState {
            version: self.live.version + 1,
            policy,
            configured: self.live.configured,
        };
        let generation = self
            .install(next, self.blocks.clone(), ctx)
            .map_err(|e| ApiError::internal(format!("{e:#}")))?;
        tracing::info!(
            "policy version {} (digest {}): {}, {what}",
            self.live.version,
            self.live.digest(),
            self.live.policy.mode()
        );
        Ok(Answer::PolicyChange(PolicyChange {
            changed: true,
            version: self.live.version,
            digest: self.live.digest().to_string(),
            mode: Some(self.live.policy.mode()),
            generation,
        }))
    }

    fn blocks_document(&self, unix: u64) -> BlockList {
        BlockList {
            blocks: self
                .blocks
                .list()
                .map(|b| Block {
                    cidr: b.cidr,
                    added: b.added,
                    until: b.until,
                    ttl_left_s: b.until.map(|u| u.saturating_sub(unix)),
                })
                .collect(),
            enforced: self.live.policy.mode() == Mode::Enforce,
        }
    }

    /// The status document (`GET /v1/status`).
    fn status<R: Running>(&self, ctx: &Ctx<R>) -> Status {
        let m = &*ctx.monitor;
        let total = m.totals();
        let workers = ctx.running.source().workers();
        let topology = self.settings.frames.document();
        Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            mode: topology.mode().to_string(),
            topology,
            ports: ctx
                .running
                .kernel()
                .ports
                .into_iter()
                .map(|p| PortMode {
                    port: p.port,
                    xdp_mode: p.xdp_mode,
                })
                .collect(),
            queues: m.queues(),
            workers_running: total.workers,
            xsk_mode: StatsOf::<R>::mode(&total.source),
            sockets: ctx.running.sockets(),
            uptime_s: m.uptime().as_secs_f64(),
            started_at: m.started_unix(),
            policy: PolicyStatus {
                version: self.live.version,
                digest: self.live.digest().to_string(),
                mode: self.live.policy.mode(),
                generation: workers.policy_generation(),
                workers_generation_min: total.policy_generation_min,
            },
            blocks: self.blocks.len(),
            state_dir: self.state.path().to_path_buf(),
            host: ctx.running.host_status(),
            export: m.export().cloned(),
        }
    }
}

/// The unified diff of two texts (for `policy diff`).
fn unified_diff(old: &str, new: &str, old_name: &str, new_name: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(old_name, new_name)
        .to_string()
}
