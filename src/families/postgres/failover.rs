//! Automated failover of a postgres service (`failover = { vip, vrid, promote }`):
//! keepalived moves a database floating address between the primary and the replicas
//! that may be promoted, and one script ([`SCRIPT`]) decides everything PostgreSQL-side.
//!
//! Why keepalived with a VIP, not repmgr or pg_auto_failover: the site already runs
//! keepalived (the edge pair), VRRP is already a flow the compiler checks, and the clients
//! (PgBouncer) follow an address without any reconfiguration hook, so the whole failover
//! is two Debian packages the hosts have and one script this family renders and the tests
//! run. repmgr would add a metadata database, its own daemon per host and a
//! `promote_command`/`follow_command` pair that still needs the pooler reconfigured;
//! pg_auto_failover needs a third monitor node (the reference site has two database
//! hosts). The price, written in the runbook: with two hosts there is no quorum, so a
//! partition between db1 and db2 alone (both still reaching their clients) is not told
//! apart from a host loss.
//!
//! The script, `failover.sh <check|master|backup|fault|fence>`, on every host of the
//! service:
//!
//! - `check`, keepalived's track script: healthy only where PostgreSQL runs and is the
//!   primary, or is a standby that may be promoted while no peer is (or may be) a
//!   primary. So a standby never takes the address from a live primary, whatever the
//!   order keepalived starts in.
//! - `master`, `notify_master`: on a standby, asks every peer again (reachable and a
//!   primary, or reachable but not answering: no promotion), then `pg_promote()`, then
//!   creates the other hosts' replication slots (they follow the address); on any host,
//!   lifts the write fence below.
//! - `backup`/`fault`, leaving MASTER (only after having been it: keepalived also says
//!   BACKUP at start): a primary stops accepting writes (`default_transaction_read_only`
//!   and its client sessions ended), the fence a host can still apply to itself.
//! - `fence`, an `ExecStartPre=` of `postgresql@<v>-main` (a drop-in): a data directory
//!   without `standby.signal` does not start while a peer is a primary; the host must be
//!   rebuilt as a replica (the failback runbook, `docs/runbooks/<service>.md`).
//!
//! Peers are asked with `pg_isready` (no response: not a primary) then
//! `SELECT pg_is_in_recovery()` as the replication role, over the service's own
//! postgres → postgres flow (pg_hba admits its sources), with the replication password
//! file. Every host's replication connection (`primary_conninfo`, the bootstrap) goes to
//! the VIP, so replicas follow a promotion; `primary_conninfo` on the configured primary
//! is inert until it is rebuilt as a replica.

use std::net::IpAddr;

use serde::Serialize;

use super::keys::Failover;
use crate::diag::{Diagnostic, Diagnostics, Loc};
use crate::families::provenance::Src;
use crate::model::values::{PortSpec, Proto};
use crate::model::{At, HostId, ServiceId, ServiceKind, Site, ZoneId};

/// The script keepalived and the unit's drop-in run.
pub const SCRIPT: &str = "/etc/medianest/postgres/failover.sh";
/// Where the script remembers keepalived's last state (tmpfs).
pub const STATE: &str = "/run/medianest/postgres/vrrp-state";

/// A service's failover, checked: what the keepalived, pgbouncer, delivery and docs
/// families read.
pub struct Plan<'a> {
    /// The site's `failover` table.
    pub failover: &'a Failover,
    /// The zone of the floating address.
    pub zone: ZoneId,
    /// The configured primary.
    pub primary: At<HostId>,
    /// The hosts that may hold the address, in priority order: the primary, then each
    /// replica that may be promoted, in the service's order.
    pub candidates: Vec<At<HostId>>,
}

impl Plan<'_> {
    /// The floating address.
    pub fn vip(&self) -> &At<IpAddr> {
        &self.failover.vip
    }

    /// Whether `h` may hold the address.
    pub fn holds(&self, h: HostId) -> bool {
        self.candidates.iter().any(|c| c.value == h)
    }
}

/// The failover of a postgres service, when it has one that can be rendered (the
/// checks report the rest).
pub fn plan(site: &Site, id: ServiceId) -> Option<Plan<'_>> {
    let failover = super::model(site).failover.get(&id)?;
    let svc = site.service(id);
    if !svc.declared.kind_known || svc.kind.value != ServiceKind::Postgres {
        return None;
    }
    let primary = match super::model(site).primary.get(&id) {
        Some(p) if svc.hosts.iter().any(|h| h.value == p.value) => p.clone(),
        _ => return None,
    };
    let zone = crate::families::vip_zone(site, failover.vip.value)?;
    let promotable = |h: HostId| match &failover.promote {
        Some(list) => list.iter().any(|p| p.value == h),
        None => true,
    };
    let mut candidates = vec![primary.clone()];
    candidates.extend(svc.hosts.iter().filter(|h| h.value != primary.value && promotable(h.value)).cloned());
    let named = candidates
        .iter()
        .all(|c| site.host(c.value).interfaces.iter().any(|i| i.zone.value == zone && i.name.is_some()));
    (candidates.len() > 1 && named).then_some(Plan { failover, zone, primary, candidates })
}

/// The postgres services with a failover that renders.
pub fn plans(site: &Site) -> impl Iterator<Item = (ServiceId, Plan<'_>)> {
    super::services(site).filter_map(|id| plan(site, id).map(|p| (id, p)))
}

/// The checks of every `failover`.
pub fn verify(site: &Site, diags: &mut Diagnostics) {
    for (id, f) in &super::model(site).failover {
        let svc = site.service(*id);
        if !svc.declared.kind_known || svc.kind.value != ServiceKind::Postgres {
            continue;
        }
        if svc.hosts.len() < 2 {
            diags.push(
                Diagnostic::error(
                    "bad-placement",
                    format!(
                        "postgres service `{}` has `failover` but runs on {} host: there is no replica to promote",
                        svc.name,
                        svc.hosts.len()
                    ),
                    f.loc.clone(),
                )
                .help("add a replica to `hosts` (and `primary`), or remove `failover`"),
            );
            continue;
        }
        let Some(primary) = super::model(site).primary.get(id) else { continue };
        if let Some(list) = &f.promote {
            if list.is_empty() {
                diags.push(
                    Diagnostic::error(
                        "bad-value",
                        format!("`promote` of `{}` lists no replica: nothing could take over", svc.name),
                        f.loc.clone(),
                    )
                    .help("name the replicas that may be promoted, or leave `promote` out (every replica)"),
                );
            }
            for p in list {
                let name = &site.host(p.value).name;
                if p.value == primary.value {
                    diags.push(
                        Diagnostic::error(
                            "bad-value",
                            format!("`{name}` is the primary of `{}`: `promote` lists replicas", svc.name),
                            p.loc.clone(),
                        )
                        .also(primary.loc.clone(), "the primary")
                        .help("list only the service's other hosts"),
                    );
                } else if !svc.hosts.iter().any(|h| h.value == p.value) {
                    diags.push(
                        Diagnostic::error(
                            "bad-value",
                            format!("`{name}` is not a host of `{}`: only its replicas can be promoted", svc.name),
                            p.loc.clone(),
                        )
                        .also(svc.loc.clone(), "the service")
                        .help(format!("add `{name}` to `hosts` of `{}`, or remove it from `promote`", svc.name)),
                    );
                }
            }
        }
        let promotable = |h: HostId| f.promote.as_ref().is_none_or(|l| l.iter().any(|p| p.value == h));
        let mut candidates = vec![primary.clone()];
        candidates.extend(svc.hosts.iter().filter(|h| h.value != primary.value && promotable(h.value)).cloned());
        if crate::families::check_vip(site, &f.vip, &candidates, diags).is_none() {
            continue;
        }
        // keepalived on the candidates elects over VRRP; a firewall that drops it makes
        // every candidate a master, and each standby would promote itself. keepalived is
        // part of the service, so the service serves `vrrp` (a flow targets served ports).
        let vrrp = PortSpec { proto: Proto::Vrrp, port: 0 };
        if !svc.ports.iter().any(|p| p.spec == vrrp) {
            diags.push(
                Diagnostic::error(
                    "missing-key",
                    format!(
                        "`{}` has `failover` but no `vrrp` among its ports: keepalived runs on its hosts",
                        svc.name
                    ),
                    f.loc.clone(),
                )
                .help("add it to the service's ports, e.g. `ports = { postgres = 5432, vrrp = \"vrrp\" }`"),
            );
            continue;
        }
        let cut = candidates.iter().any(|a| {
            candidates
                .iter()
                .any(|b| a.value != b.value && !site.flow_plan().allows(site, Some(a.value), Some(b.value), vrrp))
        });
        if cut {
            crate::families::edge::missing_flow(
                diags,
                &f.loc,
                &format!("service:{}", svc.name),
                &format!("service:{}", svc.name),
                vrrp,
                "keepalived elects which database host holds the floating address with unicast VRRP advertisements",
                &format!("the failover of `{}` elects the holder of {} over VRRP", svc.name, f.vip.value),
            );
        }
    }
}

/// One peer the script asks.
#[derive(Serialize)]
pub struct PeerView {
    /// Its host name.
    pub name: Src<String>,
    /// The address this host reaches it at.
    pub address: Src<String>,
}

/// Context of `postgres/failover.sh.j2` and `postgres/fence-drop-in.conf.j2`.
#[derive(Serialize)]
pub struct ScriptContext {
    /// The host.
    pub host: Src<String>,
    /// The service.
    pub service: Src<String>,
    /// The version.
    pub version: Src<String>,
    /// The port.
    pub port: Src<u16>,
    /// The data directory.
    pub data: Src<String>,
    /// The floating address.
    pub vip: Src<String>,
    /// Whether this host may hold the address (the primary, or a replica it may promote).
    pub may_promote: Src<bool>,
    /// The other hosts of the service.
    pub peers: Vec<PeerView>,
    /// The replication slots of the other hosts, created after a promotion.
    pub slots: Vec<Src<String>>,
    /// The replication password file.
    pub passfile: Src<String>,
    /// The script that renders it from the delivered secret, when there is one.
    pub render_passfile: Option<&'static str>,
    /// The replication role.
    pub role: &'static str,
    /// The replica bootstrap script (the failback).
    pub replica_init: &'static str,
    /// keepalived's last state.
    pub state: &'static str,
    /// The script.
    pub script: &'static str,
}

/// The address `from` reaches `to` at (its interface in the zone `from` speaks from).
pub fn address_from(site: &Site, from: HostId, to: HostId) -> Option<(String, &Loc)> {
    let t = site.host(to);
    let i = crate::model::flows::arrival(site, to, crate::model::flows::Peer::Host(from));
    t.interfaces.get(i).map(|a| (a.address.value.to_string(), &a.address.loc))
}
