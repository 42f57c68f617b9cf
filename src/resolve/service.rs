//! Services: kind, image, placement, ports, networks, health, resources, hardening,
//! exposure.

use super::cx::{Cx, RefTo};
use crate::diag::shortlist;
use crate::diag::{Diagnostic, Loc, did_you_mean};
use crate::load::schema::*;
use crate::model::values::{self, Image, NameKind, PortSpec, ValueError};
use crate::model::*;

impl Cx<'_, '_> {
    pub(super) fn service(&mut self, name: &str, loc: Loc, s: &RawService, defaults: &Defaults) -> Service {
        let kind_written = s.kind.is_some();
        let kind = match &s.kind {
            Some(k) => {
                let all: Vec<(&str, ServiceKind)> = kinds::KINDS.iter().map(|k| (k.name, k.kind)).collect();
                self.vocabulary(k, "service kind", &all)
            }
            None => None,
        };
        let kind_known = kind.is_some() || !kind_written;
        let kind = kind.unwrap_or(At { value: ServiceKind::Container, loc: loc.clone() });
        let info = kind.value.info();
        let image = s.image.as_ref().and_then(|v| self.value(v, Image::parse));
        if s.image.is_none() && info.container && kind_known {
            self.diags.push(
                Diagnostic::error("missing-key", format!("container service `{name}` has no image"), loc.clone())
                    .help("add `image = \"registry/repository:tag\"` with a pinned tag"),
            );
        }
        let hosts: Vec<At<HostId>> = s
            .hosts
            .iter()
            .filter_map(|h| self.reference_str(RefTo::Host, h))
            .map(|a| At { value: HostId(a.value), loc: a.loc })
            .collect();
        let replicas =
            s.replicas.as_ref().and_then(|v| self.int(v, 1, 1000, "replica count")).map(|a| a.value).unwrap_or(1);
        let version = s.version.as_ref().and_then(|v| {
            let text = match v.get_ref() {
                IntOrStr::Int(n) => n.to_string(),
                IntOrStr::Str(s) => s.clone(),
            };
            let loc = self.loc(v.span());
            let ok = !text.is_empty()
                && text.len() <= 32
                && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
            if !ok {
                self.bad(
                    loc,
                    ValueError {
                        code: "bad-value",
                        message: format!("`{}` is not a version", values::printable(&text)),
                        help: "write a version such as `16` or `\"2.8.1\"`".into(),
                    },
                );
                return None;
            }
            Some(text)
        });

        let (ports, port_errors) = self.ports(s, kind.value);
        let networks = self.networks(s);
        let user = s.user.as_ref().and_then(|v| self.value(v, values::user));
        let health = self.health(s, &ports, port_errors, defaults, kind.value);
        let resources = match &s.resources {
            Some(r) => self.resources(r.get_ref(), &defaults.resources),
            None => defaults.resources.clone(),
        };
        let secrets = s.secrets.iter().filter_map(|v| self.value(v, |x| values::name(x, NameKind::Secret))).collect();
        let mut env = Vec::new();
        for (k, v) in &s.env {
            let kloc = self.loc(k.span());
            let key = match values::name(k.get_ref(), NameKind::Env) {
                Ok(key) => At { value: key, loc: kloc },
                Err(e) => {
                    self.bad(kloc, e);
                    continue;
                }
            };
            // A credential in an env value is named by its variable.
            let typed = self.value(v, |x| {
                values::text(x).map_err(|e| match e.code {
                    "secret-value" => {
                        ValueError { message: format!("the value of `{}` looks like a credential", key.value), ..e }
                    }
                    _ => e,
                })
            });
            if let Some(val) = typed {
                env.push((key, val));
            }
        }
        let mut volumes = Vec::new();
        for (vname, target) in &s.volumes {
            let vloc = self.loc(vname.span());
            if let Err(e) = values::name(vname.get_ref(), NameKind::Ident) {
                self.bad(vloc.clone(), e);
            }
            if let Some(t) = self.value(target, values::abs_path) {
                volumes.push(Volume { name: vname.get_ref().clone(), target: t.value, loc: vloc });
            }
        }
        let tmpfs = s.tmpfs.iter().filter_map(|v| self.value(v, values::abs_path)).collect();
        let expose = self.exposures(name, s, &ports);
        let depends_on = s
            .depends_on
            .iter()
            .filter_map(|d| self.reference_str(RefTo::Service, d))
            .map(|a| At { value: ServiceId(a.value), loc: a.loc })
            .collect();
        let cap_add = self.capabilities(s);
        let read_only = match &s.read_only {
            Some(b) => At { value: *b.get_ref(), loc: self.loc(b.span()) },
            None => At { value: true, loc: loc.clone() },
        };
        let stateful = match &s.stateful {
            Some(b) => *b.get_ref(),
            None => info.stateful || !volumes.is_empty(),
        };
        let exceptions = self.exceptions(s);
        Service {
            name: name.to_string(),
            kind,
            image,
            hosts,
            replicas,
            version,
            ports,
            networks,
            user,
            health,
            resources,
            secrets,
            env,
            volumes,
            tmpfs,
            expose,
            depends_on,
            cap_add,
            read_only,
            stateful,
            exceptions,
            description: self.opt_text(&s.description),
            declared: Declared { kind_known, health: s.health.is_some(), hosts: !s.hosts.is_empty() },
            loc,
        }
    }

    /// Named ports (the kind's defaults when none are written); `true` when some port
    /// failed to resolve.
    fn ports(&mut self, s: &RawService, kind: ServiceKind) -> (Vec<Port>, bool) {
        let mut ports = Vec::new();
        let mut port_errors = false;
        if s.ports.is_empty() {
            for (n, spec) in kind.default_ports() {
                ports.push(Port { name: n, spec, loc: None });
            }
        }
        for (pname, pval) in &s.ports {
            let ploc = self.loc(pname.span());
            if let Err(e) = values::name(pname.get_ref(), NameKind::Ident) {
                self.bad(ploc.clone(), e);
                port_errors = true;
                continue;
            }
            let vloc = self.loc(pval.span());
            let spec = match pval.get_ref() {
                IntOrStr::Int(n) => PortSpec::parse_int(*n),
                IntOrStr::Str(st) => PortSpec::parse_str(st).unwrap_or_else(|| {
                    Err(ValueError {
                        code: "bad-value",
                        message: format!("`{}` is not a port", values::printable(st)),
                        help: "write a number (`4000`) or `tcp/N` / `udp/N`".into(),
                    })
                }),
            };
            match spec {
                Ok(spec) => ports.push(Port {
                    name: pname.get_ref().clone(),
                    spec,
                    loc: Some(Loc::new(self.file, ploc.span.start..vloc.span.end)),
                }),
                Err(e) => {
                    self.bad(vloc, e);
                    port_errors = true;
                }
            }
        }

        (ports, port_errors)
    }

    /// Docker network attachments with their static addresses (`"auto"`: the driver
    /// assigns one).
    fn networks(&mut self, s: &RawService) -> Vec<(NetId, At<Option<std::net::IpAddr>>)> {
        let mut networks = Vec::new();
        for (nname, addr) in &s.networks {
            let nloc = self.loc(nname.span());
            let net = self.reference(RefTo::Network, nname.get_ref(), nloc);
            let addr = if addr.get_ref() == "auto" {
                Some(At { value: None, loc: self.loc(addr.span()) })
            } else {
                self.value(addr, |a| values::address(a).map(Some))
            };
            if let (Some(net), Some(addr)) = (net, addr) {
                networks.push((NetId(net), addr));
            }
        }

        networks
    }

    pub(super) fn health(
        &mut self,
        s: &RawService,
        ports: &[Port],
        port_errors: bool,
        defaults: &Defaults,
        kind: ServiceKind,
    ) -> Option<Health> {
        let mut h = Health {
            check: HealthCheck::Exec(Vec::new()),
            interval: defaults.health_interval,
            timeout: defaults.health_timeout,
            retries: defaults.health_retries,
            start_period: defaults.health_start_period,
            loc: None,
        };
        let Some(raw) = &s.health else {
            // Native kinds are checked on their first port; containers must say how.
            if kind.info().container {
                return None;
            }
            // A TCP connect says nothing about a UDP-only service, and an appliance is
            // watched by its own means.
            if kind == ServiceKind::Pfsense {
                return None;
            }
            let tcp = ports.iter().find(|p| p.spec.proto == values::Proto::Tcp)?;
            h.check = HealthCheck::Tcp { port: tcp.name.clone() };
            return Some(h);
        };
        let hloc = self.loc(raw.span());
        h.loc = Some(hloc.clone());
        let r = raw.get_ref();
        self.timing(
            &r.interval,
            &r.timeout,
            &r.retries,
            &r.start_period,
            &mut h.interval,
            &mut h.timeout,
            &mut h.retries,
            &mut h.start_period,
        );
        let port = match &r.port {
            Some(p) => {
                let ploc = self.loc(p.span());
                if ports.iter().any(|x| &x.name == p.get_ref()) {
                    Some(p.get_ref().clone())
                } else {
                    let names: Vec<&str> = ports.iter().map(|x| x.name.as_str()).collect();
                    let mut d = Diagnostic::error(
                        "unknown-port",
                        format!("the service has no port named `{}`", values::printable(p.get_ref())),
                        ploc,
                    );
                    d = match did_you_mean(p.get_ref(), names.iter().copied()) {
                        Some(s) => d.help(format!("did you mean `{s}`?")),
                        None if names.is_empty() => d.help("declare it in `ports`, e.g. `ports = { http = 8080 }`"),
                        None => d.help(format!("its ports are {}", shortlist(&names))),
                    };
                    self.diags.push(d);
                    None
                }
            }
            None => ports.first().map(|p| p.name.clone()),
        };
        // A port that failed to parse was reported already; do not report it as missing.
        let port = if port.is_none() && port_errors { return None } else { port };
        let forms = [r.http.is_some(), r.tcp.is_some(), r.exec.is_some()].iter().filter(|b| **b).count();
        if forms != 1 {
            self.diags.push(
                Diagnostic::error(
                    "bad-health",
                    "a health check needs exactly one of `http`, `tcp` or `exec`",
                    hloc.clone(),
                )
                .help("e.g. `health = { http = \"/api/health\" }`"),
            );
            return None;
        }
        h.check = if let Some(path) = &r.http {
            let path = self.value(path, values::abs_path)?.value;
            let status = match &r.status {
                Some(st) => self.int(st, 100, 599, "HTTP status")?.value,
                None => 200,
            };
            HealthCheck::Http { path, port: port.or_else(|| self.no_port(&hloc))?, status }
        } else if r.tcp.is_some() {
            HealthCheck::Tcp { port: port.or_else(|| self.no_port(&hloc))? }
        } else {
            let argv = r.exec.as_ref()?;
            let words: Vec<String> =
                argv.get_ref().iter().filter_map(|w| self.value(w, values::word)).map(|a| a.value).collect();
            if words.len() != argv.get_ref().len() {
                return None;
            }
            if words.is_empty() {
                let loc = self.loc(argv.span());
                self.bad(
                    loc,
                    ValueError {
                        code: "bad-value",
                        message: "empty health command".into(),
                        help: "write the command as a list, e.g. `exec = [\"pg_isready\", \"-q\"]`".into(),
                    },
                );
                return None;
            }
            HealthCheck::Exec(words)
        };
        Some(h)
    }

    pub(super) fn no_port(&mut self, loc: &Loc) -> Option<String> {
        self.diags.push(
            Diagnostic::error(
                "unknown-port",
                "the health check needs a port but the service declares none",
                loc.clone(),
            )
            .help("declare one in `ports`"),
        );
        None
    }
}
