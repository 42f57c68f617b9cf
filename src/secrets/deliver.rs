//! What each host receives: for every secret its services list, the ciphertext (copied
//! into `generated/hosts/<host>/secrets/<name>.age`, so the host's tree and manifest are
//! self-contained) and where the agent decrypts it: one file per service,
//! `/run/medianest/secrets/<service>/<name>`, mode 0400, owned by the service's user,
//! with the unit that must re-read it.

use crate::artifact::{Artifact, ArtifactMeta, SecretDelivery, SecretMeta};
use crate::families::{self, secret_file};
use crate::model::{ServiceId, ServiceKind, Site};

/// The ciphertext artifacts of every host (none when the site does not deliver
/// secrets, or a secret has no ciphertext: the checks report that).
pub fn artifacts(site: &Site) -> Vec<Artifact> {
    if !site.delivers_secrets() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (name, need) in site.secret_needs() {
        let Some(file) = site.secrets.file(name) else { continue };
        for h in &need.hosts {
            let host = site.host(*h);
            let users = need.services_on(site, *h);
            let deliveries = users.iter().map(|s| delivery(site, *s, name)).collect();
            let sources = families::sources_of(
                site,
                std::iter::once(&file.loc).chain(users.iter().map(|s| &site.service(*s).loc)).chain([&host.loc]),
            );
            let mut meta = ArtifactMeta::shared("secrets", format!("hosts/{}/secrets/{name}.age", host.name), sources);
            meta.host = Some(host.name.clone());
            meta.secret = Some(SecretMeta { name: name.to_string(), deliveries });
            out.push(Artifact::new(file.bytes.to_vec(), meta));
        }
    }
    out
}

/// Where service `id` reads secret `name`, as whom, and what re-reads it.
fn delivery(site: &Site, id: ServiceId, name: &str) -> SecretDelivery {
    let svc = site.service(id);
    let unit = |u: &str| Some(u.to_string());
    // (owner, reload, restart): the user the native service runs as (Debian's
    // packages), and how it picks up a new value. A container reads the file through
    // Compose, as root; its restart is the container runtime's.
    let (owner, reload, restart) = match svc.kind.value {
        ServiceKind::Postgres => {
            let u = format!("postgresql@{}-main.service", families::postgres::version(site, id));
            ("postgres:postgres", Some(u), None)
        }
        ServiceKind::Pgbouncer => ("postgres:postgres", unit(families::pgbouncer::UNIT), None),
        ServiceKind::Redis => ("redis:redis", None, unit(families::redis::UNIT)),
        ServiceKind::Alertmanager => ("prometheus:prometheus", unit(families::alertmanager::UNIT), None),
        ServiceKind::Prometheus => ("prometheus:prometheus", unit(families::prometheus::UNIT), None),
        ServiceKind::Powerdns => ("pdns:pdns", None, unit("pdns.service")),
        _ => ("root:root", None, None),
    };
    // Compose bind-mounts the file itself into the container, owner and mode as they
    // are (it ignores a secret's uid and mode outside Swarm): a container that runs as
    // a numeric user must own its copy, or it cannot read a 0400 file.
    let owner = match svc.user.as_ref().map(|u| u.value.split_once(':').unwrap_or((&u.value, &u.value))) {
        Some((u, g)) if owner == "root:root" && u.parse::<u32>().is_ok() && g.parse::<u32>().is_ok() => {
            format!("{u}:{g}")
        }
        _ => owner.to_string(),
    };
    SecretDelivery { service: svc.name.clone(), target: secret_file(&svc.name, name), owner, reload, restart }
}
