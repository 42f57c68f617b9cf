//! The containers family's own keys: `[containers]` (logging), `[nfs_volumes.<name>]`
//! (volumes shared over NFS) and, on container services, `publish`, `binds` and
//! `command`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Deserialize;
use toml::Spanned;

use crate::diag::{Diagnostic, Diagnostics, Loc};
use crate::families::{Part, parts_of, service_keys};
use crate::load::schema::{Named, Str};
use crate::model::values::{self, PortSpec, Size, ValueError};
use crate::model::{At, HostId, ServiceId, Site};
use crate::resolve::cx::{Cx, RefTo};

crate::keys! {
    /// The containers family's keys in one site file.
    #[derive(Debug, Default, Deserialize)]
    pub struct ContainersFile {
        /// Settings every container shares (Compose and Swarm).
        pub containers: Option<Spanned<RawContainers>>,
        /// Volumes shared over NFS: a service's `volumes` entry of the same name mounts the export instead of a local volume.
        #[serde(default)]
        pub nfs_volumes: Named<Spanned<RawNfsVolume>>,
        /// The containers family's keys on services.
        #[serde(default)]
        pub services: Named<ContainerService>,
    }
}

crate::keys! {
    /// `[containers]`: what every generated Compose and stack file sets for its containers.
    #[derive(Debug, Deserialize)]
    pub struct RawContainers {
        /// Largest container log file before Docker rotates it (json-file `max-size`, default `10m`, from `1m` to `1g`).
        pub log_max_size: Option<Str>,
        /// Rotated container log files kept (json-file `max-file`, default `3`, from 1 to 100).
        pub log_max_file: Option<Spanned<i64>>,
    }
}

crate::keys! {
    /// `[nfs_volumes.<name>]`: an NFSv4 export mounted by the containers that list a volume of this name.
    #[derive(Debug, Deserialize)]
    pub struct RawNfsVolume {
        /// Required. The host that exports it (role `nfs-server`); it gets `/etc/exports.d/medianest.exports`.
        pub server: Option<Str>,
        /// Required. The exported directory on the server, e.g. `/tank/medianest/uploads`.
        pub export: Option<Str>,
    }
}

crate::keys! {
    /// The containers family's keys of `[services.<name>]` (container services only).
    #[derive(Debug, Deserialize)]
    pub struct ContainerService {
        /// Extra published ports: `[{ port = "http", bind = "127.0.0.1" }]`. Every port a flow reaches is published already, on the host addresses the flows arrive at; an entry adds a bind address (`127.0.0.1`, or an address every host of the service has). The host port is the container port: flows and the host firewall speak of that number.
        #[serde(default)]
        pub publish: Vec<Spanned<RawPublish>>,
        /// Host directories mounted into the container, read-only unless `writable = true`: `[{ source = "/sys", target = "/sys" }]`. A writable `/` is refused.
        #[serde(default)]
        pub binds: Vec<Spanned<RawBind>>,
        /// The container's command (argv, no shell), replacing the image's `CMD`.
        pub command: Option<Spanned<Vec<Str>>>,
        /// Run in the host's network namespace (Compose `network_mode: host`, default `false`): for an exporter that reads a daemon's loopback-only endpoint, such as Nginx's `stub_status` on 127.0.0.1. It then takes no `networks` and publishes nothing (its ports are the host's, opened by the flows as any host port); Compose only (Swarm stacks cannot).
        pub host_network: Option<Spanned<bool>>,
    }
}

crate::keys! {
    /// One `publish` entry.
    #[derive(Debug, Deserialize)]
    pub struct RawPublish {
        /// Required. The service's named port.
        pub port: Option<Str>,
        /// The host address it is published on (default `127.0.0.1`).
        pub bind: Option<Str>,
    }
}

crate::keys! {
    /// One `binds` entry.
    #[derive(Debug, Deserialize)]
    pub struct RawBind {
        /// Required. Absolute path on the host.
        pub source: Option<Str>,
        /// Required. Absolute path in the container.
        pub target: Option<Str>,
        /// Mount it writable (default `false`: read-only).
        pub writable: Option<Spanned<bool>>,
    }
}

/// The log size when the site sets none.
pub const DEFAULT_LOG_MAX_SIZE: Size = Size(10 << 20);
/// The rotated log files kept when the site sets none.
pub const DEFAULT_LOG_MAX_FILE: u32 = 3;

/// An extra published port.
#[derive(Debug, Clone)]
pub struct Publish {
    /// The port's name.
    pub port: String,
    /// Its protocol and number.
    pub spec: PortSpec,
    /// The host address.
    pub bind: At<IpAddr>,
    /// Where the entry is written.
    pub loc: Loc,
}

/// A host directory mounted into a container.
#[derive(Debug, Clone)]
pub struct Bind {
    /// Path on the host.
    pub source: At<String>,
    /// Path in the container.
    pub target: At<String>,
    /// Writable (else read-only).
    pub writable: bool,
    /// Where the entry is written.
    pub loc: Loc,
}

/// A volume shared over NFS.
#[derive(Debug, Clone)]
pub struct NfsVolume {
    /// Its name (what services list in `volumes`).
    pub name: String,
    /// The exporting host.
    pub server: At<HostId>,
    /// The exported directory.
    pub export: At<String>,
    /// Where it is defined.
    pub loc: Loc,
}

/// The containers family's model.
#[derive(Debug, Default)]
pub struct Model {
    /// `[containers] log_max_size`.
    pub log_max_size: Option<At<Size>>,
    /// `[containers] log_max_file`.
    pub log_max_file: Option<At<u32>>,
    /// NFS volumes by name.
    pub nfs: BTreeMap<String, NfsVolume>,
    /// Extra published ports.
    pub publish: BTreeMap<ServiceId, Vec<Publish>>,
    /// Host bind mounts.
    pub binds: BTreeMap<ServiceId, Vec<Bind>>,
    /// Commands.
    pub command: BTreeMap<ServiceId, At<Vec<String>>>,
    /// Services in the host's network namespace, where `host_network` is written.
    pub host_network: BTreeMap<ServiceId, crate::diag::Loc>,
}

/// A log size from 1m to 1g.
fn log_size(s: &str) -> Result<Size, ValueError> {
    let v = Size::parse(s)?;
    if v.0 < 1 << 20 || v.0 > 1 << 30 {
        return Err(ValueError {
            code: "bad-value",
            message: format!("a log file of {v} is out of range"),
            help: "use a size from `1m` to `1g` (`10m` is usual)".into(),
        });
    }
    Ok(v)
}

/// One word of a command: printable text on one line.
fn arg(s: &str) -> Result<String, ValueError> {
    if s.is_empty() || s.len() > 1000 || s.chars().any(|c| c.is_control()) {
        return Err(ValueError {
            code: "bad-value",
            message: format!("`{}` is not a command argument", values::printable(s)),
            help: "write each argument as one non-empty line of printable text".into(),
        });
    }
    if values::looks_like_secret_value(s) {
        return Err(ValueError {
            code: "secret-value",
            message: "this argument holds what looks like a credential".into(),
            help: "list the secret in `secrets` and let the program read it from /run/secrets/<name>".into(),
        });
    }
    Ok(s.to_string())
}

/// Types the containers family's keys of every file.
pub fn resolve(parts: &[Part], site: &Site, diags: &mut Diagnostics) -> Model {
    let files = parts_of::<ContainersFile>(parts);
    let mut out = Model::default();
    for (file, f) in &files {
        let mut cx = Cx::new(*file, site, diags);
        if let Some(c) = &f.containers {
            let c = c.get_ref();
            if let Some(v) = c.log_max_size.as_ref().and_then(|v| cx.value(v, log_size)) {
                out.log_max_size = Some(v);
            }
            if let Some(v) = c.log_max_file.as_ref().and_then(|v| cx.int(v, 1, 100, "log_max_file")) {
                out.log_max_file = Some(v);
            }
        }
        for (name, v) in &f.nfs_volumes {
            let loc = cx.loc(name.span());
            if let Err(e) = values::name(name.get_ref(), values::NameKind::Ident) {
                cx.bad(loc.clone(), e);
                continue;
            }
            let table = format!("[nfs_volumes.{}]", name.get_ref());
            let at = cx.loc(v.span());
            let r = v.get_ref();
            let server = cx
                .required(&r.server, &at, "server", &table)
                .and_then(|s| cx.reference_str(RefTo::Host, s))
                .map(|a| At { value: HostId(a.value), loc: a.loc });
            let export = cx.required(&r.export, &at, "export", &table).and_then(|e| cx.value(e, values::abs_path));
            if let (Some(server), Some(export)) = (server, export) {
                out.nfs.insert(name.get_ref().clone(), NfsVolume { name: name.get_ref().clone(), server, export, loc });
            }
        }
    }
    let services: Vec<_> = files.iter().map(|(f, x)| (*f, &x.services)).collect();
    for (file, id, k) in service_keys(site, &services) {
        let svc = site.service(id);
        let mut cx = Cx::new(file, site, diags);
        if svc.declared.kind_known && !svc.kind.value.info().container {
            let spans = [
                ("publish", k.publish.first().map(|v| v.span())),
                ("binds", k.binds.first().map(|v| v.span())),
                ("command", k.command.as_ref().map(|v| v.span())),
                ("host_network", k.host_network.as_ref().map(|v| v.span())),
            ];
            for (key, span) in spans {
                if let Some(span) = span {
                    cx.not_for_kind(key, "containers", svc, span);
                }
            }
            continue;
        }
        for p in &k.publish {
            let at = cx.loc(p.span());
            let r = p.get_ref();
            let Some(port) = cx.required(&r.port, &at, "port", "publish") else { continue };
            let Some(named) = svc.port(port.get_ref()) else {
                let names: Vec<&str> = svc.ports.iter().map(|x| x.name.as_str()).collect();
                let loc = cx.loc(port.span());
                cx.diags.push(
                    Diagnostic::error(
                        "unknown-port",
                        format!("`{}` has no port `{}`", svc.name, values::printable(port.get_ref())),
                        loc,
                    )
                    .help(format!("use one of its ports: {}", names.join(", "))),
                );
                continue;
            };
            let bind = match &r.bind {
                Some(b) => cx.value(b, values::address),
                None => Some(At { value: IpAddr::from([127, 0, 0, 1]), loc: at.clone() }),
            };
            if let Some(bind) = bind {
                out.publish.entry(id).or_default().push(Publish {
                    port: named.name.clone(),
                    spec: named.spec,
                    bind,
                    loc: at,
                });
            }
        }
        for b in &k.binds {
            let at = cx.loc(b.span());
            let r = b.get_ref();
            let source = cx.required(&r.source, &at, "source", "binds").and_then(|s| cx.value(s, values::abs_path));
            let target = cx.required(&r.target, &at, "target", "binds").and_then(|s| cx.value(s, values::abs_path));
            if let (Some(source), Some(target)) = (source, target) {
                let writable = r.writable.as_ref().is_some_and(|w| *w.get_ref());
                out.binds.entry(id).or_default().push(Bind { source, target, writable, loc: at });
            }
        }
        if let Some(h) = k.host_network.as_ref().filter(|h| *h.get_ref()) {
            let loc = cx.loc(h.span());
            if let Some((net, _)) = svc.networks.first() {
                cx.diags.push(
                    Diagnostic::error(
                        "bad-value",
                        format!(
                            "`{}` runs in the host's network and is attached to `{}`: a container has one or the other",
                            svc.name,
                            site.network(*net).name
                        ),
                        loc.clone(),
                    )
                    .help("remove `networks`, or `host_network`"),
                );
            } else if let Some(p) = k.publish.first() {
                let ploc = cx.loc(p.span());
                cx.diags.push(
                    Diagnostic::error(
                        "bad-value",
                        format!(
                            "`{}` runs in the host's network, where ports are not published: they are the host's",
                            svc.name
                        ),
                        ploc,
                    )
                    .help("remove `publish`: a flow to the port opens it on the host"),
                );
            } else {
                out.host_network.insert(id, loc);
            }
        }
        if let Some(c) = &k.command {
            let loc = cx.loc(c.span());
            let argv: Option<Vec<String>> = c.get_ref().iter().map(|a| cx.value(a, arg).map(|x| x.value)).collect();
            match argv {
                Some(v) if !v.is_empty() => {
                    out.command.insert(id, At { value: v, loc });
                }
                Some(_) => cx.diags.push(
                    Diagnostic::error("bad-value", format!("`{}` has an empty `command`", svc.name), loc)
                        .help("write the program and its arguments, or remove `command` to keep the image's"),
                ),
                None => {}
            }
        }
    }
    out
}
