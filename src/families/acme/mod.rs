//! Family **acme**: certificates obtained and renewed by ACME on the edge hosts, for every
//! `[certificates.<name>]` with `acme = true` (keys of family edge).
//!
//! Why HTTP-01 from every edge, and lego: each edge obtains its own certificate (its own
//! key; nothing is copied between hosts), but the public name points at the floating
//! address, so the ACME server's challenge reaches whichever edge holds it. That edge's
//! HAProxy passes `/.well-known/acme-challenge/` to the `acme` backend, which holds every
//! edge's client (family haproxy): a client that did not ask answers 404 or is not
//! listening, and HAProxy retries the next one. DNS-01 would need the public zone's DNS
//! to take updates from the site; the site's PowerDNS serves only its internal zone, and
//! opening it to the internet for the challenge is worse than one more backend. lego is
//! Debian's (`lego`, bookworm main), one static binary with a built-in HTTP-01 server.
//!
//! Per edge host and certificate:
//! - `/etc/medianest/acme/<cert>.sh`: `lego run` the first time, `lego renew` (30 days
//!   before expiry) after; when the certificate changed, the chain and key are written to
//!   the certificate's `file` in one rename and HAProxy reloads (no connection lost);
//! - `medianest-acme-<cert>.service` and `.timer` (daily, a random hour, and soon after
//!   boot, so a first deploy gets its certificate within minutes).
//!
//! Until then HAProxy serves the placeholder the bootstrap made (family delivery):
//! `haproxy -c` refuses a crt-list whose file is missing, so without it the first apply
//! would fail. The placeholder is only made where no file exists, so it never replaces a
//! real certificate.
//!
//! Templates: `templates/acme/`.

use serde::Serialize;

use super::provenance::Src;
use super::{Family, Lowering, edge};
use crate::artifact::ArtifactMeta;
use crate::diag::Diagnostics;
use crate::model::{ServiceKind, Site};

/// Where the scripts are.
pub const DIR: &str = "/etc/medianest/acme";
/// lego's state: the ACME account and the certificates it obtained.
pub const STATE: &str = "/var/lib/medianest/acme";
/// The days before expiry at which a certificate is renewed.
pub const RENEW_DAYS: u8 = 30;

/// The acme family.
pub struct Acme;

/// Context of the script and the units of one certificate on one edge host.
#[derive(Serialize)]
pub struct AcmeContext {
    /// The host.
    pub host: Src<String>,
    /// The certificate's name.
    pub certificate: Src<String>,
    /// Its domains (the first names lego's files).
    pub domains: Vec<Src<String>>,
    /// lego's file name for the certificate (the first domain, `*` as `_`).
    pub lego_name: String,
    /// The PEM file HAProxy serves.
    pub file: Src<String>,
    /// Its directory.
    pub file_dir: String,
    /// The account's contact.
    pub email: Src<String>,
    /// The ACME directory.
    pub directory: Src<String>,
    /// Where lego's HTTP-01 server listens: the host's address and the edge's `acme` port.
    pub listen: Src<String>,
    /// The script's path.
    pub script: String,
    /// The unit's name (without `.service`).
    pub unit: String,
    /// lego's state directory.
    pub state: &'static str,
    /// Days before expiry to renew.
    pub renew_days: u8,
}

/// The unit of a certificate.
pub fn unit(cert: &str) -> String {
    format!("medianest-acme-{cert}")
}

impl Family for Acme {
    fn name(&self) -> &'static str {
        "acme"
    }

    fn lower(&self, site: &Site, out: &mut Lowering) {
        for c in edge::edge(site).certificates.iter().filter(|c| c.acme) {
            let Some(email) = &c.acme_email else { continue };
            for (_, svc) in edge::services_of(site, ServiceKind::Haproxy) {
                let port = edge::port_src(svc, "acme", 8888);
                for h in &svc.hosts {
                    let host = site.host(h.value);
                    let Some(addr) = edge::host_address(site, h.value) else { continue };
                    let cx = AcmeContext {
                        host: Src::at(host.name.clone(), "host", &host.loc),
                        certificate: Src::at(c.name.clone(), "certificate", &c.loc),
                        domains: c.domains.iter().map(|d| Src::at(d.value.clone(), "domain", &d.loc)).collect(),
                        lego_name: c.domains.first().map(|d| d.value.replace('*', "_")).unwrap_or_default(),
                        file: Src::at(c.file.clone(), "certificate file", &c.loc),
                        file_dir: c
                            .file
                            .rsplit_once('/')
                            .map(|(d, _)| d)
                            .filter(|d| !d.is_empty())
                            .unwrap_or("/")
                            .to_string(),
                        email: Src::at(email.value.clone(), "ACME contact", &email.loc),
                        directory: Src::at(c.acme_directory.value.clone(), "ACME directory", &c.acme_directory.loc),
                        listen: port.clone().map(|p| super::socket_text(addr.value, p)),
                        script: format!("{DIR}/{}.sh", c.name),
                        unit: unit(&c.name),
                        state: STATE,
                        renew_days: RENEW_DAYS,
                    };
                    let origin = Some(c.loc.clone());
                    let meta = ArtifactMeta::host_file(self.name(), &host.name, &cx.script, 0o750, "root:root");
                    out.add("acme/acme.sh.j2", &cx, meta, origin.clone());
                    for (suffix, template, start) in
                        [("service", "acme/acme.service.j2", false), ("timer", "acme/acme.timer.j2", true)]
                    {
                        let path = format!("/etc/systemd/system/{}.{suffix}", cx.unit);
                        let mut meta = ArtifactMeta::host_file(self.name(), &host.name, &path, 0o644, "root:root");
                        if let Some(a) = meta.apply.as_mut() {
                            a.reload = Some("daemon-reload".into());
                            if start {
                                a.restart = Some(format!("{}.timer", cx.unit));
                            }
                        }
                        out.add(template, &cx, meta, origin.clone());
                    }
                }
            }
        }
    }

    fn verify(&self, site: &Site, diags: &mut Diagnostics) {
        for c in edge::edge(site).certificates.iter().filter(|c| c.acme) {
            // The edge holding the address passes each challenge to every edge's client.
            for (_, svc) in edge::services_of(site, ServiceKind::Haproxy) {
                let Some(port) = svc.port("acme").map(|p| p.spec) else { continue };
                edge::require_pair_flow(
                    site,
                    diags,
                    svc,
                    port,
                    &c.loc,
                    "ACME HTTP-01: the edge holding the address passes challenges to the edge that asked",
                    |from, to| {
                        format!(
                            "certificate `{}` is obtained by ACME on every host of `{}` (`{from}` passes challenges to `{to}`)",
                            c.name, svc.name
                        )
                    },
                );
            }
        }
    }
}
