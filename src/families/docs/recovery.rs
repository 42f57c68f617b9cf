//! `generated/docs/recovery.md`: the disaster-recovery plan. The RTO and RPO, then each
//! stateful service in restore order (what holds the other backups first, then by
//! dependency), with its backup policies, each policy's worst-case data loss against the
//! RPO ([`Backup::worst_case_loss`], the figure the RPO check reads), its restore steps
//! in order, and its RTO estimate ([`Backup::restore_estimate`], the figure the RTO check
//! reads: the declared `restore_time`, else [`DEFAULT_RESTORE_TIME`]).
//! Template: `templates/docs/recovery.md.j2`.

use serde::Serialize;

use super::super::provenance::Src;
use crate::model::{Backup, BackupMethod, DEFAULT_RESTORE_TIME, Endpoint, ServiceId, Site};

/// One policy of a service.
#[derive(Serialize)]
pub struct PolicyView {
    /// Name.
    pub name: Src<String>,
    /// Method.
    pub method: Src<String>,
    /// How often, and whether WAL is archived in between.
    pub every: Src<String>,
    /// Where it goes.
    pub target: Src<String>,
    /// Worst-case loss.
    pub loss: Src<String>,
    /// `within` or `EXCEEDS`.
    pub rpo_ok: bool,
    /// Restore time, and whether declared.
    pub restore: Src<String>,
    /// Retention.
    pub retention: Src<String>,
    /// Restore tested after each run.
    pub verify_restore: bool,
    /// Restore steps, in order.
    pub steps: Vec<Src<String>>,
}

/// A stateful service's recovery.
#[derive(Serialize)]
pub struct ServiceRecovery {
    /// The service.
    pub service: Src<String>,
    /// Its hosts.
    pub hosts: Vec<Src<String>>,
    /// Its policies.
    pub policies: Vec<PolicyView>,
    /// RTO estimate: its slowest policy's restore.
    pub estimate: Src<String>,
    /// Within the RTO.
    pub rto_ok: bool,
    /// Worst-case loss over its policies (the best policy bounds it).
    pub loss: Src<String>,
    /// Within the RPO.
    pub rpo_ok: bool,
}

/// Context of `docs/recovery.md.j2`.
#[derive(Serialize)]
pub struct RecoveryContext {
    /// Site name.
    pub site: Src<String>,
    /// RTO.
    pub rto: Src<String>,
    /// RPO.
    pub rpo: Src<String>,
    /// The default restore time.
    pub default_restore: String,
    /// Stateful services, in restore order.
    pub services: Vec<ServiceRecovery>,
    /// Stateful services with no policy (the core check forbids them; listed if any).
    pub uncovered: Vec<Src<String>>,
}

/// Where a policy's data lives, as a sentence's object.
fn target_text(site: &Site, b: &Backup) -> String {
    match b.target.value {
        Endpoint::Service(s) => format!("the `{}` service", site.service(s).name),
        Endpoint::Host(h) => format!("host `{}`", site.host(h).name),
        _ => site.endpoint_name(&b.target.value),
    }
}

/// The restore steps of a policy, in order: Markdown, written into the page as it is
/// (fixed text around names, which the model has checked are plain identifiers).
fn steps(site: &Site, b: &Backup) -> Vec<String> {
    let svc = site.service(b.service.value);
    let hosts: Vec<&str> = svc.hosts.iter().map(|h| site.host(h.value).name.as_str()).collect();
    let on = hosts.first().copied().unwrap_or("its host");
    let from = target_text(site, b);
    let name = &svc.name;
    let mut v = vec![format!("Make sure {from} is up and holds the `{}` backups (restore it first if not).", b.name)];
    match b.method {
        BackupMethod::PgBasebackup => {
            v.push(format!("Stop PostgreSQL on `{on}` and move its data directory aside."));
            v.push(format!("Fetch the newest base backup of `{}` from {from} into the data directory.", b.name));
            if b.continuous {
                v.push("Set `restore_command` to fetch archived WAL and `recovery_target_time` if a point in time is wanted; create `recovery.signal`.".into());
            }
            v.push(format!(
                "Start PostgreSQL on `{on}` and wait until it accepts connections (it replays the WAL, then promotes)."
            ));
            if hosts.len() > 1 {
                v.push(format!(
                    "Re-seed each replica ({}) with `pg_basebackup` from the restored primary.",
                    hosts[1..].join(", ")
                ));
            }
        }
        BackupMethod::PgDump => {
            v.push(format!("Create the empty databases of `{name}` on `{on}`."));
            v.push(format!("Load the newest dump of `{}` from {from} with `pg_restore --clean --if-exists`.", b.name));
        }
        BackupMethod::RedisRdb => {
            v.push(format!("Stop `{name}` on `{on}`."));
            v.push(format!("Copy the newest `dump.rdb` of `{}` from {from} over the data directory's.", b.name));
            v.push(format!("Start `{name}` and check `INFO persistence` shows the loaded keys."));
        }
        BackupMethod::Restic => {
            v.push(format!("Stop `{name}` on `{on}`."));
            v.push(format!("`restic restore latest` of `{}` from {from} into its volumes.", b.name));
            v.push(format!("Start `{name}` and wait for its health check."));
        }
        BackupMethod::ZfsSnapshot => {
            v.push(format!("Stop `{name}` on `{on}`."));
            v.push(format!(
                "`zfs send` the newest snapshot of `{}` back from {from} and `zfs receive -F` it on `{on}`.",
                b.name
            ));
            v.push(format!("Start `{name}` and wait for its health check."));
        }
        BackupMethod::MinioMirror => {
            v.push(format!("Mirror the buckets of `{}` back from {from} with `mc mirror`.", b.name));
            v.push(format!("Check `{name}` serves every bucket."));
        }
    }
    v.push(format!(
        "Run `medianest`'s agent on `{on}` (or wait for its timer) so the host's files match the site again."
    ));
    v
}

/// A duration as the site writes it.
fn dur(d: crate::model::values::Duration) -> String {
    d.to_string()
}

/// The backup policies of each service, by service index (built once: a scan of every
/// policy per service is quadratic on a large site).
pub fn policies_by_service(site: &Site) -> Vec<Vec<&Backup>> {
    let mut v: Vec<Vec<&Backup>> = vec![Vec::new(); site.services.len()];
    for b in &site.backups {
        if let Some(p) = v.get_mut(b.service.value.0) {
            p.push(b);
        }
    }
    v
}

/// The recovery of a service from its policies (`policies_by_service`), for the plan and
/// its runbook.
pub fn service_recovery(site: &Site, id: ServiceId, policies: &[&Backup]) -> Option<ServiceRecovery> {
    let svc = site.service(id);
    if policies.is_empty() {
        return None;
    }
    let rto = &site.recovery.rto;
    let rpo = &site.recovery.rpo;
    let views: Vec<PolicyView> = policies
        .iter()
        .map(|b| {
            let loss = b.worst_case_loss();
            PolicyView {
                name: Src::at(b.name.clone(), "backup", &b.loc),
                method: Src::at(b.method.name().into(), "backup method", &b.loc),
                every: Src::at(
                    if b.continuous { format!("{} + continuous WAL", b.every.value) } else { dur(b.every.value) },
                    "backup interval",
                    &b.every.loc,
                ),
                target: Src::at(site.endpoint_name(&b.target.value), "backup target", &b.target.loc),
                loss: Src::of(dur(loss), "worst-case loss", [&b.every.loc, &rpo.loc]),
                rpo_ok: loss <= rpo.value,
                restore: match &b.restore_time {
                    Some(r) => Src::at(dur(r.value), "restore_time", &r.loc),
                    None => Src::at(format!("{} (default)", dur(DEFAULT_RESTORE_TIME)), "restore_time", &b.loc),
                },
                retention: Src::at(dur(b.retention), "backup retention", &b.loc),
                verify_restore: b.verify_restore,
                steps: steps(site, b).into_iter().map(|s| Src::at(s, "restore step", &b.loc)).collect(),
            }
        })
        .collect();
    let slowest = policies.iter().max_by_key(|b| b.restore_estimate()).expect("at least one policy");
    let best = policies.iter().min_by_key(|b| b.worst_case_loss()).expect("at least one policy");
    Some(ServiceRecovery {
        service: Src::at(svc.name.clone(), "service", &svc.loc),
        hosts: svc
            .hosts
            .iter()
            .map(|h| Src::at(site.host(h.value).name.clone(), "host of the service", &h.loc))
            .collect(),
        policies: views,
        estimate: Src::of(
            dur(slowest.restore_estimate()),
            "RTO estimate",
            slowest.restore_time.as_ref().map(|r| &r.loc).into_iter().chain([&slowest.loc, &rto.loc]),
        ),
        rto_ok: slowest.restore_estimate() <= rto.value,
        loss: Src::of(dur(best.worst_case_loss()), "worst-case loss", [&best.every.loc]),
        rpo_ok: best.worst_case_loss() <= rpo.value,
    })
}

/// The order services are restored in: what holds other backups first, then a service
/// before those that depend on it, then by name.
pub fn restore_order(site: &Site, by_service: &[Vec<&Backup>]) -> Vec<ServiceId> {
    let mut ids: Vec<ServiceId> =
        (0..site.services.len()).map(ServiceId).filter(|&i| !by_service[i.0].is_empty()).collect();
    let targets: std::collections::BTreeSet<ServiceId> = site
        .backups
        .iter()
        .filter_map(|b| match b.target.value {
            Endpoint::Service(s) => Some(s),
            _ => None,
        })
        .collect();
    let holds = |i: ServiceId| targets.contains(&i);
    // Depth in the dependency graph, bounded (a cycle is the core's error).
    let n = site.services.len();
    let mut depth = vec![0usize; n];
    for _ in 0..n.min(16) {
        let mut changed = false;
        for (i, s) in site.services.iter().enumerate() {
            let d = s.depends_on.iter().map(|x| depth[x.value.0] + 1).max().unwrap_or(0);
            if d > depth[i] {
                depth[i] = d;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    ids.sort_by_cached_key(|&i| (!holds(i), depth[i.0], site.service(i).name.clone()));
    ids
}

/// Builds the recovery plan.
pub fn recovery(site: &Site, name: &Src<String>) -> RecoveryContext {
    let by_service = policies_by_service(site);
    let services = restore_order(site, &by_service)
        .into_iter()
        .filter_map(|i| service_recovery(site, i, &by_service[i.0]))
        .collect();
    let uncovered = site
        .services
        .iter()
        .enumerate()
        .filter(|(i, s)| s.stateful && by_service[*i].is_empty())
        .map(|(_, s)| Src::at(s.name.clone(), "stateful service", &s.loc))
        .collect();
    RecoveryContext {
        site: name.clone(),
        rto: Src::at(site.recovery.rto.value.to_string(), "RTO", &site.recovery.rto.loc),
        rpo: Src::at(site.recovery.rpo.value.to_string(), "RPO", &site.recovery.rpo.loc),
        default_restore: dur(DEFAULT_RESTORE_TIME),
        services,
        uncovered,
    }
}
