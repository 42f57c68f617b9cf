//! Backups: every stateful service covered, methods that fit the service, targets
//! elsewhere, full backups at least as often as the RPO (or continuous archiving).

use crate::diag::{Diagnostic, Diagnostics};
use crate::model::*;

pub(super) fn backups(site: &Site, diags: &mut Diagnostics) {
    let rpo = &site.recovery.rpo;
    for b in &site.backups {
        let svc = site.service(b.service.value);
        if b.every.value > rpo.value && !b.continuous {
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
