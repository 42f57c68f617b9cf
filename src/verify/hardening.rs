//! Container hardening (non-root, read-only root, health check, no added capabilities)
//! unless an exception says why, and no secret values in the site.

use std::collections::BTreeSet;

use crate::diag::{Diagnostic, Diagnostics};
use crate::model::values::{is_root_user, looks_like_secret_name};
use crate::model::*;

pub(super) fn hardening(site: &Site, diags: &mut Diagnostics) {
    for s in site.services.iter().filter(|s| s.declared.kind_known) {
        let mut needed = BTreeSet::new();
        if s.kind.value.info().container {
            match &s.user {
                None => diags.push(
                    Diagnostic::error(
                        "root-container",
                        format!("container `{}` does not say which user it runs as", s.name),
                        s.loc.clone(),
                    )
                    .help("add `user = \"uid:gid\"` with a non-root user (images default to root)"),
                ),
                Some(u) if is_root_user(&u.value) => {
                    needed.insert(ExceptionKind::RootUser);
                    if s.exception(ExceptionKind::RootUser).is_none() {
                        diags.push(
                            Diagnostic::error(
                                "hardening-exception",
                                format!("container `{}` runs as root", s.name),
                                u.loc.clone(),
                            )
                            .help(
                                "use a non-root `user`, or write why root is needed: `exceptions.root_user = \"...\"`",
                            ),
                        );
                    }
                }
                Some(_) => {}
            }
            if !s.read_only.value {
                needed.insert(ExceptionKind::ReadOnly);
                if s.exception(ExceptionKind::ReadOnly).is_none() {
                    diags.push(
                        Diagnostic::error("hardening-exception", format!("container `{}` has a writable root filesystem without a reason", s.name), s.read_only.loc.clone())
                            .help("mount writable paths as `volumes` or `tmpfs`, or write why: `exceptions.read_only = \"...\"`"),
                    );
                }
            }
            if s.health.is_none() && !s.declared.health {
                needed.insert(ExceptionKind::Health);
                if s.exception(ExceptionKind::Health).is_none() {
                    diags.push(
                        Diagnostic::error("hardening-exception", format!("container `{}` has no health check", s.name), s.loc.clone())
                            .help("add `health = { http = \"/health\" }` (or `tcp`/`exec`), or write why: `exceptions.health = \"...\"`"),
                    );
                }
            }
        }
        if let Some(first) = s.cap_add.first() {
            needed.insert(ExceptionKind::CapAdd);
            if s.exception(ExceptionKind::CapAdd).is_none() {
                let caps: Vec<&str> = s.cap_add.iter().map(|c| c.value.as_str()).collect();
                diags.push(
                    Diagnostic::error(
                        "hardening-exception",
                        format!("service `{}` adds capabilities ({}) without a reason", s.name, caps.join(", ")),
                        first.loc.clone(),
                    )
                    .help("write why they are needed: `exceptions.cap_add = \"...\"`"),
                );
            }
        }
        for e in &s.exceptions {
            if e.reason.value.trim().is_empty() {
                diags.push(
                    Diagnostic::error(
                        "hardening-exception",
                        format!("hardening exception `{}` of `{}` has no reason", e.kind.key(), s.name),
                        e.reason.loc.clone(),
                    )
                    .help("write the reason a reviewer needs to accept it"),
                );
            } else if !needed.contains(&e.kind) {
                diags.push(
                    Diagnostic::error(
                        "unused-exception",
                        format!("exception `{}` of `{}` relaxes nothing", e.kind.key(), s.name),
                        e.reason.loc.clone(),
                    )
                    .help("remove it: the service already keeps this default")
                    .warning(),
                );
            }
        }
    }
}

pub(super) fn secrets(site: &Site, diags: &mut Diagnostics) {
    for s in &site.services {
        for (k, v) in &s.env {
            let is_ref = v.value.starts_with("/run/secrets/");
            if looks_like_secret_name(&k.value) && !is_ref {
                diags.push(
                    Diagnostic::error("secret-value", format!("`{}` looks like a secret and has a literal value", k.value), v.loc.clone())
                        .label("a value here would be committed to git and rendered into configs")
                        .help(format!("list the secret in `secrets = [...]` and point the app at its file, e.g. `{}_FILE = \"/run/secrets/<name>\"`", k.value.trim_end_matches("_FILE"))),
                );
            }
            if is_ref {
                let name = v.value.trim_start_matches("/run/secrets/");
                if !s.secrets.iter().any(|x| x.value == name) {
                    diags.push(
                        Diagnostic::error(
                            "unknown-reference",
                            format!("`{}` reads secret `{name}`, which `{}` does not list", k.value, s.name),
                            v.loc.clone(),
                        )
                        .help(format!("add `\"{name}\"` to `secrets`")),
                    );
                }
            }
        }
    }
}
