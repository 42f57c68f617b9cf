//! Backups: every stateful service covered, methods that fit the service, targets
//! elsewhere, full backups at least as often as the RPO (or continuous archiving), and
//! restores ([`Backup::restore_estimate`]) within the RTO.

use crate::diag::{Diagnostic, Diagnostics};
use crate::model::*;

pub(super) fn backups(site: &Site, diags: &mut Diagnostics) {
    let rpo = &site.recovery.rpo;
    for b in &site.backups {
        let svc = site.service(b.service.value);
        if b.worst_case_loss() > rpo.value {
            // Continuous archiving exists only for PostgreSQL (WAL): suggest it only there.
            let help = if svc.kind.value == ServiceKind::Postgres {
                format!("run it at least every {}, or add continuous archiving (`continuous = true`)", rpo.value)
            } else {
                format!("run it at least every {}", rpo.value)
            };
            diags.push(
                Diagnostic::error(
                    "rpo-violation",
                    format!("backup `{}` runs every {}, but the site's RPO is {}", b.name, b.every.value, rpo.value),
                    b.every.loc.clone(),
                )
                .also(rpo.loc.clone(), "recovery point objective")
                .help(help),
            );
        }
        if b.restore_estimate() > site.recovery.rto.value {
            let rto = &site.recovery.rto;
            let (loc, said) = match &b.restore_time {
                Some(r) => (r.loc.clone(), format!("restoring backup `{}` takes {}", b.name, r.value)),
                None => (
                    b.loc.clone(),
                    format!(
                        "restoring backup `{}` takes {} (the default `restore_time`)",
                        b.name,
                        b.restore_estimate()
                    ),
                ),
            };
            diags.push(
                Diagnostic::error("rto-violation", format!("{said}, but the site's RTO is {}", rto.value), loc)
                    .also(rto.loc.clone(), "recovery time objective")
                    .help(format!(
                        "make the restore faster (a smaller data set, a closer target) and declare `restore_time` of at most {}, or raise the RTO",
                        rto.value
                    )),
            );
        }
        if !b.method.fits(svc.kind.value) {
            diags.push(
                Diagnostic::error(
                    "bad-value",
                    format!(
                        "backup method `{}` does not fit `{}` (a `{}` service)",
                        b.method.name(),
                        svc.name,
                        svc.kind.value.info().name
                    ),
                    b.service.loc.clone(),
                )
                .help("use `restic` or `zfs-snapshot` for generic data"),
            );
        }
        if b.target.value == Endpoint::Service(b.service.value) {
            diags.push(
                Diagnostic::error(
                    "bad-endpoint",
                    format!("backup `{}` stores `{}` on itself", b.name, svc.name),
                    b.target.loc.clone(),
                )
                .help("a backup must live somewhere else, e.g. `target = \"service:minio\"`"),
            );
        }
        if b.method == BackupMethod::ZfsSnapshot {
            // Snapshots are taken by the host that holds the dataset.
            for h in svc.hosts.iter().filter(|h| !site.host(h.value).has_role(Role::Zfs)) {
                diags.push(
                    Diagnostic::error(
                        "bad-placement",
                        format!(
                            "backup `{}` snapshots `{}` with ZFS, but its host `{}` has no `zfs` role",
                            b.name,
                            svc.name,
                            site.host(h.value).name
                        ),
                        b.loc.clone(),
                    )
                    .also(h.loc.clone(), "the service runs here")
                    .help("give the host the `zfs` role (its pool holds the data), or back up with `restic`"),
                );
            }
        }
        backup_traffic(site, b, svc, diags);
        if b.continuous && svc.kind.value == ServiceKind::Postgres && b.method != BackupMethod::PgBasebackup {
            // WAL is archived by pgBackRest, the base-backup method: with any other, the
            // worst-case loss read from `continuous` would be a promise nothing keeps.
            diags.push(
                Diagnostic::error(
                    "bad-value",
                    format!("`{}` archives WAL continuously, which is pgBackRest's, and its method is `{}`", b.name, b.method.name()),
                    b.loc.clone(),
                )
                .help("use `method = \"pg-basebackup\"` with `continuous = true`, or remove `continuous` and run it at least as often as the RPO"),
            );
        }
        if b.continuous && svc.kind.value != ServiceKind::Postgres {
            diags.push(
                Diagnostic::error(
                    "bad-value",
                    format!("continuous archiving is WAL archiving and needs a postgres service, not `{}`", svc.name),
                    b.loc.clone(),
                )
                .help("remove `continuous`, and run the backup at least as often as the RPO"),
            );
        }
    }
    for (i, s) in site.services.iter().enumerate() {
        if s.stateful && !site.backups.iter().any(|b| b.service.value == ServiceId(i)) {
            diags.push(
                Diagnostic::error("missing-backup", format!("`{}` holds state but no backup policy covers it", s.name), s.loc.clone())
                    .help(format!(
                        "add `[backups.{}]` with `service = \"{}\"`, `method`, `every` and `target`, or set `stateful = false` if its data can be rebuilt",
                        s.name, s.name
                    )),
            );
        }
    }
}

/// Backup traffic is traffic: every host of the service sends to every machine of the
/// target, which needs a flow (the host firewalls drop it otherwise).
fn backup_traffic(site: &Site, b: &Backup, svc: &Service, diags: &mut Diagnostics) {
    let targets: Vec<HostId> = match b.target.value {
        Endpoint::Service(t) => site.service(t).hosts.iter().map(|h| h.value).collect(),
        Endpoint::Host(h) => vec![h],
        Endpoint::Zone(_) | Endpoint::Internet => return,
    };
    let plan = site.flow_plan();
    let cut: Vec<(HostId, HostId)> = svc
        .hosts
        .iter()
        .flat_map(|f| targets.iter().map(move |t| (f.value, *t)))
        .filter(|(f, t)| !plan.reaches(site, *f, *t))
        .collect();
    let Some((from, to)) = cut.first() else { return };
    // The port the job speaks: the target service's first TCP port (MinIO's S3 API), or
    // SSH to a host (zfs send).
    let port = match b.target.value {
        Endpoint::Service(t) => site
            .service(t)
            .ports
            .iter()
            .find(|p| p.spec.proto == values::Proto::Tcp)
            .map_or("tcp/443".to_string(), |p| p.spec.to_string()),
        _ => "tcp/22".to_string(),
    };
    diags.push(
        Diagnostic::error(
            "missing-flow",
            format!(
                "backup `{}` sends `{}` from `{}` to `{}`, but no flow allows that traffic",
                b.name,
                svc.name,
                site.host(*from).name,
                site.host(*to).name
            ),
            b.target.loc.clone(),
        )
        .label("backup traffic is traffic")
        .help(format!(
            "add to the flows (e.g. site/policies/flows.toml):\n\n[[flows]]\nfrom = \"service:{}\"\nto = \"{}\"\nports = [\"{port}\"]\nwhy = \"backup `{}`\"\n",
            svc.name,
            site.endpoint_name(&b.target.value),
            b.name
        )),
    );
}
