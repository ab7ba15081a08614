//! The legitimate load under the attacks: short connections and paced
//! bulk transfers, closed with FINs.

use std::io::Write;
use std::net::{Shutdown, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use anyhow::{anyhow, Context};

use crate::topology::SERVER;
use crate::traffic::{self, in_netns, join, spawn_in, Errors, Pacer, SetOnDrop};
use rstwall_netlab::rng;

use super::{connect, Ctx, Part, BULK_DOWN_PORT, BULK_UP_PORT, ECHO_PORT};

const REQUEST: usize = 512;

/// Short connections: connect, request, echo, close (client first).
pub(super) fn short_lived(ctx: &Ctx, per_sec: f64) -> anyhow::Result<Part> {
    let addr = SocketAddrV4::new(SERVER, ECHO_PORT);
    let listener = traffic::listen(&ctx.server, addr)?;
    let done = AtomicBool::new(false);
    let (attempts, ok, errors) = thread::scope(|s| {
        let server = s.spawn(|| {
            traffic::serve_until(&listener, &done, |mut conn| {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = traffic::echo_until_eof(&mut conn);
            })
        });
        let client = spawn_in(s, &ctx.client, || {
            let _done = SetOnDrop(&done);
            let mut pace = Pacer::new(per_sec, &ctx.run);
            let (mut attempts, mut ok, mut errors) = (0u64, 0u64, Errors::default());
            let mut payload = rng::seeded(ctx.seed | 7);
            while pace.wait() {
                attempts += 1;
                match connect(addr)
                    .map_err(|e| format!("connect: {e}"))
                    .and_then(|mut c| traffic::echo_round(&mut c, REQUEST, &mut payload))
                {
                    Ok(()) => ok += 1,
                    Err(e) => errors.add(e),
                }
            }
            Ok((attempts, ok, errors))
        });
        let r = join(client, "short-lived client");
        done.store(true, Ordering::Relaxed);
        join(server, "echo server")?;
        r
    })?;
    let mut p = Part::default();
    p.did(
        "legitimate",
        format!("short connections, {REQUEST} B echoed, port {ECHO_PORT}"),
        attempts,
    );
    p.syns = attempts;
    p.synacks = ok;
    p.check(
        attempts > 0 && ok == attempts,
        format!(
            "short connections completed, echo intact: {ok} of {attempts}{}",
            errors.detail()
        ),
    );
    Ok(p)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Direction {
    Upload,
    Download,
}

const CHUNK: usize = 64 * 1024;

/// A paced bulk transfer for the whole run; every byte checked.
pub(super) fn bulk(ctx: &Ctx, dir: Direction, bytes_per_sec: u64) -> anyhow::Result<Part> {
    let port = match dir {
        Direction::Upload => BULK_UP_PORT,
        Direction::Download => BULK_DOWN_PORT,
    };
    let addr = SocketAddrV4::new(SERVER, port);
    let listener = traffic::listen(&ctx.server, addr)?;
    let client = in_netns(&ctx.client, || connect(addr).context("bulk: connect"))?;
    let server = traffic::accept_within(&listener, Duration::from_secs(3))?
        .ok_or_else(|| anyhow!("bulk: the server accepted nothing"))?;
    server.set_read_timeout(Some(Duration::from_secs(10)))?;
    server.set_write_timeout(Some(Duration::from_secs(10)))?;
    let (mut sender, mut receiver) = match dir {
        Direction::Upload => (client, server),
        Direction::Download => (server, client),
    };
    let result = thread::scope(|s| {
        let rx = s.spawn(move || {
            let r = traffic::drain(&mut receiver);
            // Its FIN after the sender's: a clean close on both sides.
            drop(receiver);
            r
        });
        let mut pace = Pacer::new(bytes_per_sec as f64 / CHUNK as f64, &ctx.run);
        let mut buf = vec![0u8; CHUNK];
        let mut payload = rng::seeded(ctx.seed | 9);
        let (mut sent, mut digest) = (0u64, traffic::Digest::default());
        let mut error = None;
        while pace.wait() {
            payload.fill(&mut buf);
            if let Err(e) = sender.write_all(&buf) {
                error = Some(format!("write: {e}"));
                break;
            }
            sent += CHUNK as u64;
            digest.update(&buf);
        }
        let _ = sender.shutdown(Shutdown::Write);
        let got = rx.join().map_err(|_| anyhow!("bulk receiver panicked"))?;
        let _ = traffic::drain(&mut sender);
        anyhow::Ok((sent, digest, got, error))
    })?;
    let (sent, digest, got, error) = result;
    let what = match dir {
        Direction::Upload => "bulk upload",
        Direction::Download => "bulk download",
    };
    let mut p = Part::default();
    p.did(
        "legitimate",
        format!("{what}, port {port} (MB)"),
        format!("{:.1}", sent as f64 / 1e6),
    );
    p.syns = 1;
    p.synacks = 1;
    let (ok, detail) = match (&got, &error) {
        (Ok((n, d)), None) if *n == sent && *d == digest && sent > 0 => (true, String::new()),
        (Ok((n, d)), e) => (
            false,
            format!(
                ": {n} bytes received of {sent}{}{}",
                if *d == digest {
                    ""
                } else {
                    ", content differs"
                },
                e.as_ref()
                    .map(|e| format!(", sender: {e}"))
                    .unwrap_or_default()
            ),
        ),
        (Err(e), _) => (false, format!(": receiver: {e}")),
    };
    p.check(ok, format!("{what} intact, every byte delivered{detail}"));
    Ok(p)
}
