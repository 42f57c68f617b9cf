//! Family **delivery**: how each Linux host gets and keeps its configuration, when the
//! site has an `[agent]` table. Per host:
//!
//! - `bootstrap.sh` (in the host's folder, not applied by the agent): POSIX sh, idempotent;
//!   checks the OS, installs the packages the host's roles and services need, creates the
//!   agent's directories and the container volume directories, applies the sysctl
//!   hardening, installs the `medianest` binary from a path or URL, writes the agent's
//!   configuration and systemd units, enables the timer and runs the first pull;
//! - the files the agent then keeps up to date itself: `/etc/medianest/agent.toml`,
//!   `/etc/medianest/allowed_signers`, the hardened `medianest-pull.service` and its
//!   timer (randomised delay; the agent's own lock keeps runs single), and
//!   `/etc/sysctl.d/90-medianest.conf`.
//!
//! Templates: `templates/delivery/`.

use std::collections::BTreeSet;

use serde::Serialize;

pub mod keys;

use std::any::Any;

use super::{Family, Lowering, Part, edge, sources_of};
use crate::artifact::{Apply, ArtifactMeta, Trace};
use crate::diag::Diagnostics;
use crate::load::keys::KeySet;
use crate::model::facts::{Fact, Val};
use crate::model::{Role, ServiceKind, Site};

/// The delivery family.
pub struct Delivery;

/// Context shared by every delivery template.
#[derive(Serialize, Clone)]
pub struct DeliveryContext {
    /// Site name.
    pub site: String,
    /// Host name.
    pub host: String,
    /// Repository URL.
    pub repository: String,
    /// Branch.
    pub branch: String,
    /// Drift policy.
    pub drift: String,
    /// Interval, e.g. `5m`.
    pub interval: String,
    /// Interval in seconds.
    pub interval_seconds: u64,
    /// Splay, e.g. `1m`.
    pub splay: String,
    /// Splay in seconds.
    pub splay_seconds: u64,
    /// Allowed signers' keys.
    pub signers: Vec<String>,
    /// Debian packages, sorted.
    pub packages: Vec<String>,
    /// Directories to create.
    pub directories: Vec<DirView>,
    /// Whether the host forwards IP (Docker).
    pub forwarding: bool,
    /// Whether the host binds addresses it may not hold yet (keepalived).
    pub nonlocal_bind: bool,
}

/// A directory the bootstrap creates.
#[derive(Serialize, Clone)]
pub struct DirView {
    /// Absolute path.
    pub path: String,
    /// Octal mode without a leading zero, as `stat -c %a` prints it.
    pub mode: String,
    /// `uid:gid`.
    pub owner: String,
}

fn packages(site: &Site, host: crate::model::HostId) -> Vec<String> {
    let h = site.host(host);
    let mut p: BTreeSet<String> = ["ca-certificates", "openssh-client"].iter().map(|s| s.to_string()).collect();
    for r in &h.roles {
        if let Some(pkg) = match r.value {
            Role::Docker | Role::SwarmManager | Role::SwarmWorker => Some("docker.io"),
            Role::Zfs => Some("zfsutils-linux"),
            Role::NfsServer => Some("nfs-kernel-server"),
            Role::Proxmox => None,
        } {
            p.insert(pkg.into());
        }
    }
    for s in site.services_on(host) {
        let svc = site.service(s);
        if let Some(pkg) = svc.kind.value.info().package {
            p.insert(pkg.into());
        }
        if svc.kind.value == ServiceKind::Nginx {
            p.insert("libnginx-mod-http-modsecurity".into());
            p.insert("modsecurity-crs".into());
        }
    }
    p.into_iter().collect()
}

impl Family for Delivery {
    fn name(&self) -> &'static str {
        "delivery"
    }

    fn keys(&self) -> Option<KeySet> {
        Some(KeySet::of::<keys::DeliveryFile>())
    }

    fn resolve(&self, parts: &[Part], site: &Site, diags: &mut Diagnostics) -> Option<Box<dyn Any + Send + Sync>> {
        keys::resolve(parts, site, diags).map(|a| Box::new(a) as Box<dyn Any + Send + Sync>)
    }

    fn facts(&self, site: &Site) -> Vec<Fact> {
        let Some(a) = site.ext.get::<keys::AgentSettings>() else { return Vec::new() };
        let fact = |field, value: Val| Fact { category: "agent", subject: "[agent]".into(), field, value };
        vec![
            fact("repository", a.repository.clone().into()),
            fact("branch", a.branch.clone().into()),
            fact("interval", a.interval.to_string().into()),
            fact("splay", a.splay.to_string().into()),
            fact("signers", Val::many(&a.signers)),
            fact("drift", a.drift.clone().into()),
        ]
    }

    fn lower(&self, site: &Site, out: &mut Lowering) {
        let Some(agent) = site.ext.get::<keys::AgentSettings>() else { return };
        for (i, h) in site.hosts.iter().enumerate().filter(|(_, h)| h.kind.value.is_linux()) {
            let id = crate::model::HostId(i);
            let on_host = site.services_on(id);
            let directories = on_host
                .iter()
                .map(|s| site.service(*s))
                .filter(|s| s.kind.value.info().container)
                .flat_map(|s| {
                    let owner = s
                        .user
                        .as_ref()
                        .map(|u| if u.value.contains(':') { u.value.clone() } else { format!("{0}:{0}", u.value) })
                        .unwrap_or_else(|| "0:0".into());
                    s.volumes.iter().map(move |v| DirView {
                        path: format!("/srv/medianest/{}/{}", s.name, v.name),
                        mode: "750".into(),
                        owner: owner.clone(),
                    })
                })
                .collect();
            let ctx = DeliveryContext {
                site: site.settings.name.clone(),
                host: h.name.clone(),
                repository: agent.repository.clone(),
                branch: agent.branch.clone(),
                drift: agent.drift.clone(),
                interval: agent.interval.to_string(),
                interval_seconds: agent.interval.0,
                splay: agent.splay.to_string(),
                splay_seconds: agent.splay.0,
                signers: agent.signers.clone(),
                packages: packages(site, id),
                directories,
                forwarding: h.has_role(Role::Docker),
                nonlocal_bind: edge::services_of(site, ServiceKind::Keepalived)
                    .any(|(_, s)| s.hosts.iter().any(|x| x.value == id)),
            };
            let mut locs = vec![&agent.loc, &h.loc];
            locs.extend(on_host.iter().map(|s| &site.service(*s).loc));
            let sources = sources_of(site, locs);
            let traces = vec![Trace { what: "host", name: h.name.clone(), loc: h.loc.clone() }];
            let file = |target: &str, reload: Option<&str>, restart: Option<&str>| {
                let mut m = ArtifactMeta::host_file(self.name(), &h.name, target, 0o644, "root:root", sources.clone())
                    .traced(traces.clone());
                m.apply = Some(Apply {
                    target: target.into(),
                    validate: None,
                    reload: reload.map(Into::into),
                    restart: restart.map(Into::into),
                });
                m
            };
            let origin = Some(h.loc.clone());
            out.add("delivery/agent.toml.j2", &ctx, file("/etc/medianest/agent.toml", None, None), origin.clone());
            out.add(
                "delivery/allowed_signers.j2",
                &ctx,
                file("/etc/medianest/allowed_signers", None, None),
                origin.clone(),
            );
            out.add(
                "delivery/medianest-pull.service.j2",
                &ctx,
                file("/etc/systemd/system/medianest-pull.service", Some("daemon-reload"), None),
                origin.clone(),
            );
            out.add(
                "delivery/medianest-pull.timer.j2",
                &ctx,
                file("/etc/systemd/system/medianest-pull.timer", Some("daemon-reload"), None),
                origin.clone(),
            );
            out.add(
                "delivery/sysctl.conf.j2",
                &ctx,
                file("/etc/sysctl.d/90-medianest.conf", None, Some("systemd-sysctl.service")),
                origin.clone(),
            );
            let mut meta = ArtifactMeta::shared(self.name(), format!("hosts/{}/bootstrap.sh", h.name), sources.clone())
                .traced(traces.clone());
            meta.host = Some(h.name.clone());
            meta.mode = 0o755;
            out.add("delivery/bootstrap.sh.j2", &ctx, meta, origin);
        }
    }
}
