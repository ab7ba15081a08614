//! Every request of the control API: its method, path and typed query, one
//! [`Route`] each. The server parses requests into routes
//! ([`Route::parse`]) and the client writes them ([`Route::method`],
//! [`Route::target`]), so neither spells a path or a parameter again.
//!
//! | method and path | body | answer |
//! |---|---|---|
//! | `GET /v1/status` | | [`Status`](crate::Status) |
//! | `GET /v1/stats` | | [`Stats`](crate::Stats) (the `--stats-json` document) |
//! | `GET /v1/telemetry?top=N` | | [`Snapshot`](rstwall_engine::telemetry::Snapshot): top lists, per-second history, alerts |
//! | `GET /v1/flows?state=S&limit=N` | | [`Flows`](crate::Flows) |
//! | `GET /v1/alerts` | | [`Alerts`](crate::Alerts) |
//! | `GET /v1/policy` | | [`PolicyShow`](crate::PolicyShow) |
//! | `PUT /v1/policy` | [`PolicyBody`](crate::PolicyBody) | [`PolicyChange`](crate::PolicyChange) |
//! | `POST /v1/policy/set` | [`PolicySet`](crate::PolicySet) | [`PolicyChange`](crate::PolicyChange) |
//! | `POST /v1/policy/diff` | [`PolicyBody`](crate::PolicyBody) | [`PolicyDiff`](crate::PolicyDiff) |
//! | `GET /v1/blocks` | | [`BlockList`](crate::BlockList) |
//! | `POST /v1/blocks` | [`BlockAdd`](crate::BlockAdd) | [`BlockAdded`](crate::BlockAdded) |
//! | `DELETE /v1/blocks?cidr=C` | | [`BlockRemoved`](crate::BlockRemoved) |
//! | `GET /v1/capture?class=C,..&count=N&timeout_s=S` | | a pcap stream |
//!
//! A path that is none of these is 404, a method a path does not take 405,
//! a parameter it does not take or a value out of its range 400.

use std::fmt::Write as _;
use std::ops::RangeInclusive;
use std::str::FromStr;

use ipnet::IpNet;
use rstwall_engine::flow::FlowState;
use rstwall_engine::RstClass;

use crate::http::{percent_encode, Request};
use crate::ApiError;

/// The most flows one request returns.
pub const MAX_FLOWS: usize = 100_000;
/// The most rows of a top list.
pub const MAX_TOP: usize = 1000;
/// The most frames one capture takes.
pub const MAX_CAPTURE: u64 = 10_000_000;
/// The longest a capture runs, in seconds.
pub const MAX_CAPTURE_SECONDS: u64 = 86_400;

/// One request of the control API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Status,
    Stats,
    /// Top lists of `top` rows.
    Telemetry {
        top: usize,
    },
    Flows(FlowsQuery),
    Alerts,
    Policy,
    /// Replace the policy.
    PolicyApply,
    /// Change keys of the policy.
    PolicySet,
    /// What [`Route::PolicyApply`] would change.
    PolicyDiff,
    Blocks,
    /// Add or renew a block.
    BlockAdd,
    BlockDel {
        cidr: IpNet,
    },
    Capture(CaptureQuery),
}

/// Which flows `GET /v1/flows` returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowsQuery {
    /// Only flows in this state.
    pub state: Option<FlowState>,
    /// At most this many (1 to [`MAX_FLOWS`]).
    pub limit: usize,
}

impl Default for FlowsQuery {
    fn default() -> Self {
        FlowsQuery {
            state: None,
            limit: 100,
        }
    }
}

/// What `GET /v1/capture` takes and for how long.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureQuery {
    pub class: CaptureClass,
    /// Frames to write (1 to [`MAX_CAPTURE`]).
    pub count: u64,
    /// Seconds before the capture ends by itself; 0: no limit.
    pub timeout_s: u64,
}

impl Default for CaptureQuery {
    fn default() -> Self {
        CaptureQuery {
            class: CaptureClass::Rst,
            count: 100,
            timeout_s: 0,
        }
    }
}

/// The frames a capture takes: `rst` (every RST), `all` or `tcp` (every
/// TCP frame), or a comma-separated list of RST classes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaptureClass {
    Rst,
    AllTcp,
    Classes(Vec<RstClass>),
}

impl FromStr for CaptureClass {
    type Err = String;
    fn from_str(s: &str) -> Result<CaptureClass, String> {
        match s.trim() {
            "rst" => Ok(CaptureClass::Rst),
            "all" | "tcp" => Ok(CaptureClass::AllTcp),
            list => list
                .split(',')
                .map(|c| c.trim().parse::<RstClass>())
                .collect::<Result<Vec<_>, _>>()
                .map(CaptureClass::Classes)
                .map_err(String::from),
        }
    }
}

impl std::fmt::Display for CaptureClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CaptureClass::Rst => f.write_str("rst"),
            CaptureClass::AllTcp => f.write_str("all"),
            CaptureClass::Classes(list) => {
                let names: Vec<&str> = list.iter().map(|c| c.as_str()).collect();
                f.write_str(&names.join(","))
            }
        }
    }
}

/// The paths and the methods each takes, in the order errors list them.
const PATHS: &[(&str, &[&str])] = &[
    ("/v1/status", &["GET"]),
    ("/v1/stats", &["GET"]),
    ("/v1/telemetry", &["GET"]),
    ("/v1/flows", &["GET"]),
    ("/v1/alerts", &["GET"]),
    ("/v1/policy", &["GET", "PUT"]),
    ("/v1/policy/set", &["POST"]),
    ("/v1/policy/diff", &["POST"]),
    ("/v1/blocks", &["GET", "POST", "DELETE"]),
    ("/v1/capture", &["GET"]),
];

impl Route {
    pub fn method(&self) -> &'static str {
        match self {
            Route::PolicyApply => "PUT",
            Route::PolicySet | Route::PolicyDiff | Route::BlockAdd => "POST",
            Route::BlockDel { .. } => "DELETE",
            _ => "GET",
        }
    }

    pub fn path(&self) -> &'static str {
        match self {
            Route::Status => "/v1/status",
            Route::Stats => "/v1/stats",
            Route::Telemetry { .. } => "/v1/telemetry",
            Route::Flows(_) => "/v1/flows",
            Route::Alerts => "/v1/alerts",
            Route::Policy | Route::PolicyApply => "/v1/policy",
            Route::PolicySet => "/v1/policy/set",
            Route::PolicyDiff => "/v1/policy/diff",
            Route::Blocks | Route::BlockAdd | Route::BlockDel { .. } => "/v1/blocks",
            Route::Capture(_) => "/v1/capture",
        }
    }

    /// Whether the request carries a JSON body.
    pub fn takes_body(&self) -> bool {
        matches!(
            self,
            Route::PolicyApply | Route::PolicySet | Route::PolicyDiff | Route::BlockAdd
        )
    }

    /// The request target: the path and the query string.
    pub fn target(&self) -> String {
        let mut t = self.path().to_string();
        let mut param = |name: &str, value: &str| {
            let sep = if t.contains('?') { '&' } else { '?' };
            let _ = write!(t, "{sep}{name}={}", percent_encode(value));
        };
        match self {
            Route::Telemetry { top } => param("top", &top.to_string()),
            Route::Flows(q) => {
                param("limit", &q.limit.to_string());
                if let Some(s) = q.state {
                    param("state", s.as_str());
                }
            }
            Route::BlockDel { cidr } => param("cidr", &cidr.to_string()),
            Route::Capture(q) => {
                param("class", &q.class.to_string());
                param("count", &q.count.to_string());
                if q.timeout_s > 0 {
                    param("timeout_s", &q.timeout_s.to_string());
                }
            }
            _ => {}
        }
        t
    }

    /// The route of a request, or the refusal it gets: 404 for an unknown
    /// path, 405 for a method the path does not take, 400 for a parameter
    /// it does not take or a bad value. The body is the caller's.
    pub fn parse(req: &Request) -> Result<Route, ApiError> {
        let (method, path) = (req.method.as_str(), req.path.as_str());
        let Some((_, methods)) = PATHS.iter().find(|(p, _)| *p == path) else {
            return Err(ApiError::new(
                404,
                format!("no such endpoint: {path} (see `rstwall --help`)"),
            ));
        };
        let not_allowed = ApiError::new(
            405,
            format!(
                "method {method} not allowed on {path} (allowed: {})",
                methods.join(", ")
            ),
        );
        if !methods.contains(&method) {
            return Err(not_allowed);
        }
        let q = Query(req);
        let route = match (method, path) {
            ("GET", "/v1/status") => q.only(&[]).map(|()| Route::Status)?,
            ("GET", "/v1/stats") => q.only(&[]).map(|()| Route::Stats)?,
            ("GET", "/v1/alerts") => q.only(&[]).map(|()| Route::Alerts)?,
            ("GET", "/v1/telemetry") => {
                q.only(&["top"])?;
                Route::Telemetry {
                    top: q.number("top", 10, 1..=MAX_TOP)?,
                }
            }
            ("GET", "/v1/flows") => {
                q.only(&["state", "limit"])?;
                Route::Flows(FlowsQuery {
                    state: req
                        .param("state")
                        .map(|s| s.parse::<FlowState>().map_err(ApiError::bad))
                        .transpose()?,
                    limit: q.number("limit", FlowsQuery::default().limit, 1..=MAX_FLOWS)?,
                })
            }
            ("GET", "/v1/policy") => q.only(&[]).map(|()| Route::Policy)?,
            ("PUT", "/v1/policy") => q.only(&[]).map(|()| Route::PolicyApply)?,
            ("POST", "/v1/policy/set") => q.only(&[]).map(|()| Route::PolicySet)?,
            ("POST", "/v1/policy/diff") => q.only(&[]).map(|()| Route::PolicyDiff)?,
            ("GET", "/v1/blocks") => q.only(&[]).map(|()| Route::Blocks)?,
            ("POST", "/v1/blocks") => q.only(&[]).map(|()| Route::BlockAdd)?,
            ("DELETE", "/v1/blocks") => {
                q.only(&["cidr"])?;
                let c = req
                    .param("cidr")
                    .ok_or_else(|| ApiError::bad("DELETE /v1/blocks needs ?cidr=CIDR"))?;
                Route::BlockDel {
                    cidr: crate::parse_cidr(c).map_err(ApiError::bad)?,
                }
            }
            ("GET", "/v1/capture") => {
                q.only(&["class", "count", "timeout_s"])?;
                let defaults = CaptureQuery::default();
                Route::Capture(CaptureQuery {
                    class: match req.param("class") {
                        None => defaults.class,
                        Some(c) => c
                            .parse()
                            .map_err(|e| ApiError::bad(format!("class: {e}")))?,
                    },
                    count: q.number("count", defaults.count, 1..=MAX_CAPTURE)?,
                    timeout_s: q.number("timeout_s", 0, 0..=MAX_CAPTURE_SECONDS)?,
                })
            }
            // PATHS and this match list the same pairs.
            _ => return Err(not_allowed),
        };
        Ok(route)
    }
}

/// A request's query string, checked against what its route takes.
struct Query<'a>(&'a Request);

impl Query<'_> {
    /// Parameters a route does not take are errors: a typo is one.
    fn only(&self, known: &[&str]) -> Result<(), ApiError> {
        for (k, _) in &self.0.query {
            if !known.contains(&k.as_str()) {
                return Err(ApiError::bad(if known.is_empty() {
                    format!("unknown parameter `{k}`: {} takes none", self.0.path)
                } else {
                    format!("unknown parameter `{k}` (expected: {})", known.join(", "))
                }));
            }
        }
        Ok(())
    }

    fn number<T>(&self, name: &str, default: T, range: RangeInclusive<T>) -> Result<T, ApiError>
    where
        T: FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        match self.0.param(name) {
            None => Ok(default),
            Some(v) => match v.parse::<T>() {
                Ok(n) if range.contains(&n) => Ok(n),
                _ => Err(ApiError::bad(format!(
                    "{name}: must be a number from {} to {}, not {v:?}",
                    range.start(),
                    range.end()
                ))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, target: &str) -> Request {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Request {
            method: method.into(),
            path: path.into(),
            query: query
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (
                        crate::http::percent_decode(k).unwrap(),
                        crate::http::percent_decode(v).unwrap(),
                    )
                })
                .collect(),
            ..Request::default()
        }
    }

    fn parse(method: &str, target: &str) -> Result<Route, ApiError> {
        Route::parse(&request(method, target))
    }

    #[test]
    fn what_the_client_writes_the_server_reads() {
        let routes = [
            Route::Status,
            Route::Stats,
            Route::Telemetry { top: 10 },
            Route::Flows(FlowsQuery::default()),
            Route::Flows(FlowsQuery {
                state: Some(FlowState::Established),
                limit: 3,
            }),
            Route::Alerts,
            Route::Policy,
            Route::PolicyApply,
            Route::PolicySet,
            Route::PolicyDiff,
            Route::Blocks,
            Route::BlockAdd,
            Route::BlockDel {
                cidr: "198.18.0.0/24".parse().unwrap(),
            },
            Route::BlockDel {
                cidr: "2001:db8::/32".parse().unwrap(),
            },
            Route::Capture(CaptureQuery::default()),
            Route::Capture(CaptureQuery {
                class: CaptureClass::Classes(vec![RstClass::InWindow, RstClass::OutOfWindow]),
                count: 3,
                timeout_s: 20,
            }),
            Route::Capture(CaptureQuery {
                class: CaptureClass::AllTcp,
                ..CaptureQuery::default()
            }),
        ];
        for r in routes {
            assert_eq!(parse(r.method(), &r.target()), Ok(r.clone()), "{r:?}");
        }
        assert_eq!(
            Route::Capture(CaptureQuery {
                class: CaptureClass::Classes(vec![RstClass::Refused]),
                count: 3,
                timeout_s: 20,
            })
            .target(),
            "/v1/capture?class=refused&count=3&timeout_s=20"
        );
        assert_eq!(
            parse("GET", "/v1/capture?class=tcp").unwrap(),
            Route::Capture(CaptureQuery {
                class: CaptureClass::AllTcp,
                ..CaptureQuery::default()
            })
        );
    }

    #[test]
    fn refusals_say_what_is_wrong() {
        let refused = |m: &str, t: &str| parse(m, t).unwrap_err();
        let e = refused("GET", "/v1/nothing");
        assert_eq!(e.status, 404);
        assert_eq!(
            e.message,
            "no such endpoint: /v1/nothing (see `rstwall --help`)"
        );
        let e = refused("DELETE", "/v1/policy");
        assert_eq!(e.status, 405);
        assert_eq!(
            e.message,
            "method DELETE not allowed on /v1/policy (allowed: GET, PUT)"
        );
        assert_eq!(refused("PATCH", "/v1/capture").status, 405);
        let e = refused("GET", "/v1/stats?verbose=1");
        assert_eq!(
            (e.status, e.message.as_str()),
            (400, "unknown parameter `verbose`: /v1/stats takes none")
        );
        let e = refused("GET", "/v1/flows?top=1");
        assert_eq!(
            e.message,
            "unknown parameter `top` (expected: state, limit)"
        );
        let e = refused("GET", "/v1/flows?limit=0");
        assert_eq!(
            e.message,
            "limit: must be a number from 1 to 100000, not \"0\""
        );
        assert!(refused("GET", "/v1/flows?state=fresh")
            .message
            .contains("unknown flow state"));
        assert_eq!(
            refused("GET", "/v1/telemetry?top=1001").message,
            "top: must be a number from 1 to 1000, not \"1001\""
        );
        assert!(refused("DELETE", "/v1/blocks")
            .message
            .contains("?cidr=CIDR"));
        assert!(refused("DELETE", "/v1/blocks?cidr=banana")
            .message
            .contains("invalid CIDR"));
        assert!(refused("GET", "/v1/capture?class=nope")
            .message
            .starts_with("class: unknown RST class `nope`"));
        assert!(refused("GET", "/v1/capture?count=0")
            .message
            .starts_with("count: "));
    }
}
