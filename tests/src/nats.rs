//! Real `nats-server`s for the fleet tests: a JetStream cluster on
//! loopback, with unique ports and its own directory, stopped on drop.
//!
//! The servers are Debian's `nats-server` (scripts/setup installs it);
//! without it the tests fail loudly. A cluster can run in a network
//! namespace (the lab's appliance), so that a daemon there reaches it on
//! its own loopback.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rstwall_netlab::Netns;

/// One server: its client port and its process while it runs.
pub struct Server {
    pub name: String,
    pub port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// A cluster of servers with JetStream.
pub struct Cluster<'a> {
    pub servers: Vec<Server>,
    netns: Option<&'a Netns>,
}

/// Ports free on this loopback now (bound then released; the servers take
/// them right after, and a clash fails the start loudly).
fn free_ports(n: usize, netns: Option<&Netns>) -> Vec<u16> {
    let pick = || -> Vec<u16> {
        let listeners: Vec<TcpListener> = (0..n)
            .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port"))
            .collect();
        listeners
            .iter()
            .map(|l| l.local_addr().expect("bound").port())
            .collect()
    };
    match netns {
        None => pick(),
        Some(ns) => ns.run(pick).expect("enter the namespace"),
    }
}

impl<'a> Cluster<'a> {
    /// `n` servers under `dir` (one store each), all started and ready.
    pub fn start(dir: &Path, n: usize, netns: Option<&'a Netns>) -> Cluster<'a> {
        Cluster::start_with(dir, n, netns, "")
    }

    /// The same, with `extra` (server configuration: `tls {...}`,
    /// `authorization {...}`) in every server's file.
    pub fn start_with(dir: &Path, n: usize, netns: Option<&'a Netns>, extra: &str) -> Cluster<'a> {
        assert!(
            Path::new("/usr/sbin/nats-server").is_file()
                || Command::new("nats-server")
                    .arg("--version")
                    .output()
                    .is_ok(),
            "nats-server is not installed (scripts/setup installs it)"
        );
        std::fs::create_dir_all(dir).expect("cluster dir");
        let ports = free_ports(2 * n, netns);
        let (clients, routes) = ports.split_at(n);
        let route_list: Vec<String> = routes
            .iter()
            .map(|p| format!("nats-route://127.0.0.1:{p}"))
            .collect();
        let servers = (0..n)
            .map(|i| {
                let name = format!("n{}", i + 1);
                let store = dir.join(&name);
                let config = dir.join(format!("{name}.conf"));
                let mut text = format!(
                    "server_name: {name}\nlisten: 127.0.0.1:{port}\n\
                     jetstream {{\n  store_dir: {store:?}\n  max_memory_store: 64MB\n  max_file_store: 1GB\n}}\n",
                    port = clients[i],
                    store = store.display().to_string(),
                );
                // One server is a standalone JetStream: a cluster of one
                // never has its meta group, and refuses streams.
                if n > 1 {
                    text += &format!(
                        "cluster {{\n  name: rstwall-test\n  listen: 127.0.0.1:{route}\n  routes: [{routes}]\n}}\n",
                        route = routes[i],
                        routes = route_list.join(", "),
                    );
                }
                text += extra;
                std::fs::write(&config, text).expect("server config");
                Server {
                    log: dir.join(format!("{name}.log")),
                    name,
                    port: clients[i],
                    config,
                    child: None,
                }
            })
            .collect();
        let mut cluster = Cluster { servers, netns };
        for i in 0..n {
            cluster.start_one(i);
        }
        cluster
    }

    /// `nats://127.0.0.1:PORT` of every server.
    pub fn urls(&self) -> Vec<String> {
        self.servers
            .iter()
            .map(|s| format!("nats://127.0.0.1:{}", s.port))
            .collect()
    }

    /// Start server `i` (again), and wait until it listens.
    pub fn start_one(&mut self, i: usize) {
        let s = &mut self.servers[i];
        assert!(s.child.is_none(), "{} runs already", s.name);
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&s.log)
            .expect("server log");
        let mut cmd = match self.netns {
            Some(ns) => ns.command("nats-server"),
            None => Command::new("nats-server"),
        };
        cmd.arg("-c")
            .arg(&s.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        s.child = Some(cmd.spawn().expect("start nats-server"));
        let port = s.port;
        let deadline = Instant::now() + Duration::from_secs(10);
        let listening = || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        loop {
            let up = match self.netns {
                Some(ns) => ns.run(listening).expect("enter the namespace"),
                None => listening(),
            };
            if up {
                return;
            }
            let s = &mut self.servers[i];
            if let Some(st) = s.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                s.child = None;
                let name = s.name.clone();
                panic!("{name} exited at start ({st}):\n{}", self.log(i));
            }
            assert!(
                Instant::now() < deadline,
                "{} does not listen after 10 s:\n{}",
                self.servers[i].name,
                self.log(i)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stop server `i` (SIGKILL: a crash, not a goodbye) and wait for it.
    pub fn kill_one(&mut self, i: usize) {
        if let Some(mut c) = self.servers[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.servers[i].log).unwrap_or_default()
    }

    /// Every server's log, for a failure message.
    pub fn logs(&self) -> String {
        (0..self.servers.len())
            .map(|i| {
                let log = self.log(i);
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                format!(
                    "--- {}:\n{}",
                    self.servers[i].name,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Cluster<'_> {
    fn drop(&mut self) {
        for i in 0..self.servers.len() {
            self.kill_one(i);
        }
    }
}

/// One message of a stream: its subject and its JSON.
#[derive(Clone, Debug)]
pub struct Stored {
    pub sequence: u64,
    pub subject: String,
    pub json: serde_json::Value,
}

/// Every message of `stream`, in stream order, read from the servers at
/// `urls` (from this thread's namespace). Retries for up to `patience`
/// while the cluster elects a leader or a message is not yet there.
pub fn read_stream(urls: &[String], stream: &str, patience: Duration) -> Vec<Stored> {
    read_stream_as(urls, async_nats::ConnectOptions::new(), stream, patience)
}

/// [`read_stream`], connecting with `opts` (TLS, a user).
pub fn read_stream_as(
    urls: &[String],
    opts: async_nats::ConnectOptions,
    stream: &str,
    patience: Duration,
) -> Vec<Stored> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let deadline = Instant::now() + patience;
        let client = opts
            .connect(urls.to_vec())
            .await
            .expect("connect to the cluster");
        let js = async_nats::jetstream::new(client);
        // Leader elections and recoveries answer with errors for a while.
        macro_rules! patiently {
            ($what:expr, $op:expr) => {
                loop {
                    match $op {
                        Ok(v) => break v,
                        Err(e) if Instant::now() < deadline => {
                            let _ = e;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(e) => panic!("stream {stream}: {}: {e}", $what),
                    }
                }
            };
        }
        let mut st = patiently!("get", js.get_stream(stream).await);
        let (first, last) = patiently!(
            "info",
            st.info()
                .await
                .map(|i| (i.state.first_sequence, i.state.last_sequence))
        );
        let mut out = Vec::new();
        for seq in first.max(1)..=last {
            let m = patiently!(seq, st.get_raw_message(seq).await);
            let json = serde_json::from_slice(&m.payload)
                .unwrap_or_else(|e| panic!("message {seq} is not JSON: {e}"));
            out.push(Stored {
                sequence: m.sequence,
                subject: m.subject.to_string(),
                json,
            });
        }
        out
    })
}

/// One JetStream operation against the servers at `urls` (from this
/// thread's namespace), on a runtime of its own.
fn with_jetstream<T>(
    urls: &[String],
    op: impl AsyncFnOnce(&async_nats::jetstream::Context) -> T,
) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let client = async_nats::ConnectOptions::new()
            .connect(urls.to_vec())
            .await
            .expect("connect to the cluster");
        let js = async_nats::jetstream::new(client.clone());
        let out = op(&js).await;
        client.flush().await.expect("flush");
        out
    })
}

/// Create `stream` (empty, one replica, file storage) taking `subjects`,
/// as an operator would with `nats stream add`.
pub fn create_stream(urls: &[String], stream: &str, subjects: &str) {
    with_jetstream(urls, async |js| {
        js.create_stream(async_nats::jetstream::stream::Config {
            name: stream.to_string(),
            subjects: vec![subjects.to_string()],
            storage: async_nats::jetstream::stream::StorageType::File,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("create stream {stream}: {e}"));
    })
}

/// Delete `stream` and everything it holds, as `nats stream rm` does.
pub fn delete_stream(urls: &[String], stream: &str) {
    with_jetstream(urls, async |js| {
        let deleted = js
            .delete_stream(stream)
            .await
            .unwrap_or_else(|e| panic!("delete stream {stream}: {e}"));
        assert!(deleted.success, "stream {stream} not deleted");
    })
}

/// A test PKI made with `openssl` (scripts/setup installs it): a CA, a
/// server certificate for 127.0.0.1 and a client certificate, all signed
/// by the CA, valid for a day, PEM files in one directory.
pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Pki {
    pub fn make(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).expect("pki dir");
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .unwrap_or_else(|e| panic!("openssl (scripts/setup installs it): {e}"));
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"],
                &key[..],
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-days",
                    "1",
                    "-subj",
                    "/CN=rstwall test CA",
                ],
            ]
            .concat(),
        );
        std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\n").expect("ext");
        std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").expect("ext");
        for (who, subject) in [("server", "/CN=127.0.0.1"), ("client", "/CN=rstwall-node")] {
            let (k, csr, pem, ext) = (
                format!("{who}.key"),
                format!("{who}.csr"),
                format!("{who}.pem"),
                format!("{who}.ext"),
            );
            openssl(
                &[
                    &["req"],
                    &key[..],
                    &["-keyout", &k, "-out", &csr, "-subj", subject],
                ]
                .concat(),
            );
            openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "1",
                "-extfile",
                &ext,
            ]);
        }
        Pki {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        }
    }
}
