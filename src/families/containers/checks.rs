//! What Docker and `docker stack config` accept but would not run as the site means it:
//! placement across Swarm and plain hosts, network drivers per target, bind addresses,
//! writable bind mounts of `/`, replicas on local volumes, NFS servers and their flows.
//! (Pins, `latest`, capabilities without a reason, secret literals in env, static
//! addresses outside or reused on a network are the core's checks.)

use std::net::IpAddr;

use super::{is_swarm, manager, model, nfs_clients, on_swarm, services};
use crate::diag::{Diagnostic, Diagnostics};
use crate::model::values::{PortSpec, Proto};
use crate::model::{NetDriver, Role, ServiceKind, Site};

/// NFSv4's one port.
pub const NFS_PORT: PortSpec = PortSpec { proto: Proto::Tcp, port: 2049 };

/// Runs every check of the family.
pub fn verify(site: &Site, diags: &mut Diagnostics) {
    let m = model(site);
    for id in services(site) {
        let s = site.service(id);
        let swarm = on_swarm(site, id);
        // One target per service: a Swarm service on a plain host would never start there.
        if !swarm && s.hosts.iter().any(|h| is_swarm(site, h.value)) {
            let plain = s.hosts.iter().find(|h| !is_swarm(site, h.value)).unwrap_or(&s.hosts[0]);
            diags.push(
                Diagnostic::error(
                    "bad-placement",
                    format!(
                        "`{}` is placed on Swarm members and on `{}`, which is not one: a service runs either in the stack or in a host's Compose file",
                        s.name,
                        site.host(plain.value).name
                    ),
                    plain.loc.clone(),
                )
                .help(format!(
                    "give `{}` the role `swarm-worker`, or place the service on plain Docker hosts only",
                    site.host(plain.value).name
                )),
            );
            continue;
        }
        // Compose bind-mounts a delivered secret as it is (0400): its owner must be the
        // container's user, which the host can only know as numbers. MinIO's TLS key,
        // which its host issues, too.
        let reads = if s.kind.value == ServiceKind::Minio {
            Some("its TLS key")
        } else {
            (!swarm && !s.secrets.is_empty() && site.delivers_secrets()).then_some("delivered secrets")
        };
        if let (Some(u), Some(reads)) = (&s.user, reads)
            && !u.value.split(':').all(|x| x.parse::<u32>().is_ok())
        {
            diags.push(
                Diagnostic::error(
                    "bad-value",
                    format!(
                        "`{}` runs as `{}` and reads {reads}, but the host cannot give a file to a user it knows only by name",
                        s.name, u.value
                    ),
                    u.loc.clone(),
                )
                .help(format!("write the user as numbers (`user = \"1000:1000\"`): {} then owned by them", if reads == "its TLS key" { "its key is" } else { "its copy of each secret is" })),
            );
        }
        if s.kind.value == ServiceKind::Minio
            && let Some(c) = m.command.get(&id)
        {
            diags.push(
                Diagnostic::error(
                    "bad-value",
                    format!("`{}` is a MinIO service, whose command medianest writes", s.name),
                    c.loc.clone(),
                )
                .help(format!(
                    "remove `command`: it is `server <first volume's mount point> --address :<api> --console-address :<console> --certs-dir {}`, so MinIO serves HTTPS with the certificate its host issues",
                    super::super::minio::CERTS_DIR
                )),
            );
        }
        if swarm && let Some(loc) = m.host_network.get(&id) {
            diags.push(
                Diagnostic::error(
                    "bad-placement",
                    format!("`{}` runs on Swarm, whose stacks cannot put a task in the host's network", s.name),
                    loc.clone(),
                )
                .help("place it on plain Docker hosts (Compose), or remove `host_network`"),
            );
        }
        if swarm && manager(site).is_none() {
            diags.push(
                Diagnostic::error(
                    "bad-placement",
                    format!("`{}` runs on Swarm, and no host has the role `swarm-manager` to deploy its stack", s.name),
                    s.hosts[0].loc.clone(),
                )
                .help("give one Swarm host the role `swarm-manager`"),
            );
        }
        for (n, a) in &s.networks {
            let net = site.network(*n);
            let wrong = match net.driver {
                NetDriver::Bridge if swarm => Some(("a bridge", "Swarm services attach to overlays")),
                NetDriver::Overlay if !swarm => Some(("an overlay", "plain Docker hosts have no Swarm to carry it")),
                _ => None,
            };
            if let Some((what, why)) = wrong {
                diags.push(
                    Diagnostic::error(
                        "bad-placement",
                        format!("`{}` attaches to `{}`, {what}: {why}", s.name, net.name),
                        a.loc.clone(),
                    )
                    .also(net.loc.clone(), "network defined here")
                    .help(if swarm {
                        "use a network with `driver = \"overlay\"` (and `networks = { x = \"auto\" }`)"
                    } else {
                        "use a `bridge` network, or place the service on Swarm hosts"
                    }),
                );
            }
        }
        if !swarm && s.replicas > 1 {
            diags.push(
                Diagnostic::error(
                    "bad-value",
                    format!("`{}` asks for {} replicas, and only Swarm runs replicas", s.name, s.replicas),
                    s.loc.clone(),
                )
                .help("list one host per container in `hosts`, or place the service on Swarm hosts"),
            );
        }
        if s.replicas > 1
            && let Some(v) = s.volumes.iter().find(|v| !m.nfs.contains_key(&v.name))
        {
            diags.push(
                Diagnostic::error(
                    "bad-value",
                    format!(
                        "`{}` runs {} replicas, and its volume `{}` is local: each replica would see its own copy",
                        s.name, s.replicas, v.name
                    ),
                    v.loc.clone(),
                )
                .help(format!("share it over NFS (`[nfs_volumes.{}]`), or run one replica", v.name)),
            );
        }
        for p in m.publish.get(&id).into_iter().flatten() {
            let b = p.bind.value;
            if swarm {
                diags.push(
                    Diagnostic::error(
                        "bad-value",
                        format!("`{}` runs on Swarm, which publishes a port on every address of the node", s.name),
                        p.loc.clone(),
                    )
                    .help("remove the entry: a port a flow reaches is published already, and the host firewall filters it"),
                );
                continue;
            }
            let on_every = s.hosts.iter().all(|h| site.host(h.value).interfaces.iter().any(|i| i.address.value == b));
            if b != IpAddr::from([127, 0, 0, 1]) && !on_every {
                let missing = s
                    .hosts
                    .iter()
                    .find(|h| !site.host(h.value).interfaces.iter().any(|i| i.address.value == b))
                    .map(|h| site.host(h.value).name.as_str())
                    .unwrap_or("?");
                diags.push(
                    Diagnostic::error(
                        "bad-value",
                        format!("`{}` publishes `{}` on {b}, which is not an address of `{missing}`", s.name, p.port),
                        p.bind.loc.clone(),
                    )
                    .help("bind to `127.0.0.1`, or to an address every host of the service has"),
                );
            }
        }
        for b in m.binds.get(&id).into_iter().flatten() {
            if b.writable && b.source.value.trim_end_matches('/').is_empty() {
                diags.push(
                    Diagnostic::error(
                        "bad-value",
                        format!("`{}` mounts the host's `/` writable: the container could rewrite the host", s.name),
                        b.loc.clone(),
                    )
                    .help("mount `/` read-only (drop `writable`), or mount only the directory it writes"),
                );
            }
        }
    }
    for n in m.nfs.values() {
        let server = site.host(n.server.value);
        if !server.has_role(Role::NfsServer) {
            diags.push(
                Diagnostic::error(
                    "bad-placement",
                    format!(
                        "NFS volume `{}` is exported by `{}`, which lacks the role `nfs-server`",
                        n.name, server.name
                    ),
                    n.server.loc.clone(),
                )
                .also(server.loc.clone(), "host defined here")
                .help(format!("add `\"nfs-server\"` to the roles of `{}`", server.name)),
            );
        }
        for (client, locs) in nfs_clients(site, &n.name) {
            if !site.flow_plan().allows(site, Some(client), Some(n.server.value), NFS_PORT) {
                let at = locs.first().copied().unwrap_or(&n.loc);
                diags.push(
                    Diagnostic::error(
                        "missing-flow",
                        format!(
                            "`{}` mounts NFS volume `{}` from `{}`, but no flow allows {} → {} tcp/2049",
                            site.host(client).name,
                            n.name,
                            server.name,
                            site.host(client).name,
                            server.name
                        ),
                        at.clone(),
                    )
                    .also(n.loc.clone(), "NFS volume defined here")
                    .help(format!("add a flow to `host:{}` on `tcp/2049`", server.name)),
                );
            }
        }
    }
}
