//! The log shipping keys on `[services.<name>]` of the service that receives the logs.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::diag::Diagnostics;
use crate::families::{Part, parts_of, service_keys};
use crate::load::schema::{Named, Str};
use crate::model::values::{Duration, PortSpec, Proto, ValueError};
use crate::model::{At, ServiceId, Site};
use crate::resolve::cx::Cx;

crate::keys! {
    /// Log shipping keys in one site file.
    #[derive(Debug, Default, Deserialize)]
    pub struct LogshipFile {
        /// Log shipping keys on services.
        #[serde(default)]
        pub services: Named<LogshipService>,
    }
}

crate::keys! {
    /// Log shipping keys of `[services.<name>]` (the service that receives the logs).
    #[derive(Debug, Deserialize)]
    pub struct LogshipService {
        /// The port (by name, TCP) on which this service receives every Linux host's logs, as RFC 5424 syslog with octet-counted framing (Logstash's `tcp` input with the `syslog` codec, or any syslog server): each host's rsyslog forwards its journal and, on Docker hosts, its container logs there, with a disk queue while the receiver is away. A flow must let each host reach it.
        pub log_input: Option<Str>,
        /// How long operational logs are kept (default `90d`, at least `1d`): the delete phase of the `medianest-operational` index lifecycle policy.
        pub log_retention: Option<Str>,
        /// How long security logs are kept (default `365d`, at least `log_retention`): authentication, sudo, firewall drops and the pull agent, in the `medianest-security` policy.
        pub security_log_retention: Option<Str>,
    }
}

/// Operational retention when none is written.
pub const DEFAULT_RETENTION: Duration = Duration(90 * 86400);
/// Security retention when none is written.
pub const DEFAULT_SECURITY_RETENTION: Duration = Duration(365 * 86400);

/// A receiving service.
#[derive(Debug, Clone)]
pub struct Receiver {
    /// The port, where named.
    pub port: At<PortSpec>,
    /// Operational retention.
    pub retention: At<Duration>,
    /// Security retention.
    pub security_retention: At<Duration>,
}

/// The logship family's model.
#[derive(Debug, Default)]
pub struct Model {
    /// By service.
    pub receivers: BTreeMap<ServiceId, Receiver>,
}

/// A retention of at least a day.
fn retention(s: &str) -> Result<Duration, ValueError> {
    let d = Duration::parse(s)?;
    if d.0 < 86400 {
        return Err(ValueError {
            code: "bad-value",
            message: format!("logs kept {s} are gone before anyone reads them"),
            help: "keep logs at least `1d` (90 days is usual for operational logs)".into(),
        });
    }
    Ok(d)
}

/// Types the keys of every file.
pub fn resolve(parts: &[Part], site: &Site, diags: &mut Diagnostics) -> Model {
    let files = parts_of::<LogshipFile>(parts);
    let services: Vec<_> = files.iter().map(|(f, x)| (*f, &x.services)).collect();
    let mut out = Model::default();
    for (file, id, k) in service_keys(site, &services) {
        let svc = site.service(id);
        let mut cx = Cx::new(file, site, diags);
        let ret = k.log_retention.as_ref().and_then(|v| cx.value(v, retention));
        let sec = k.security_log_retention.as_ref().and_then(|v| cx.value(v, retention));
        let Some(input) = &k.log_input else {
            for v in [&k.log_retention, &k.security_log_retention].into_iter().flatten() {
                let loc = cx.loc(v.span());
                cx.bad(
                    loc,
                    ValueError {
                        code: "missing-key",
                        message: format!("`{}` keeps logs but receives none", svc.name),
                        help: "name the port the logs arrive on: `log_input = \"<port>\"`".into(),
                    },
                );
            }
            continue;
        };
        let loc = cx.loc(input.span());
        let port = match svc.port(input.get_ref()) {
            Some(p) if p.spec.proto == Proto::Tcp => p.spec,
            found => {
                let tcp: Vec<String> =
                    svc.ports.iter().filter(|p| p.spec.proto == Proto::Tcp).map(|p| format!("`{}`", p.name)).collect();
                cx.bad(
                    loc,
                    ValueError {
                        code: if found.is_some() { "bad-value" } else { "unknown-name" },
                        message: match found {
                            Some(p) => format!("`{}` is {}: logs are shipped over TCP, with a queue", p.name, p.spec),
                            None => format!(
                                "`{}` has no port `{}`",
                                svc.name,
                                crate::model::values::printable(input.get_ref())
                            ),
                        },
                        help: format!("name one of its TCP ports: {}", tcp.join(", ")),
                    },
                );
                continue;
            }
        };
        let retention = ret.unwrap_or(At { value: DEFAULT_RETENTION, loc: loc.clone() });
        let security_retention = sec.unwrap_or(At { value: DEFAULT_SECURITY_RETENTION, loc: loc.clone() });
        if security_retention.value < retention.value {
            cx.bad(
                security_retention.loc.clone(),
                ValueError {
                    code: "bad-value",
                    message: format!(
                        "security logs kept {}, less than the {} operational logs are kept",
                        security_retention.value, retention.value
                    ),
                    help: "keep security logs at least as long as the others (a year is usual)".into(),
                },
            );
        }
        out.receivers.insert(id, Receiver { port: At { value: port, loc }, retention, security_retention });
    }
    out
}
