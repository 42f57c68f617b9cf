//! The site-wide tables, each defined once: `[site]`, `[recovery]`, `[defaults]` (and
//! the timing and resource blocks that services share with the defaults), `[agent]`.

use toml::Spanned;

use super::cx::Cx;
use super::index::Index;
use crate::diag::{Diagnostic, Diagnostics, FileId, Loc};
use crate::load::RawSite;
use crate::load::schema::*;
use crate::model::values::{self, Duration, NameKind, Size, ValueError};
use crate::model::*;

/// Reads `[site]`, `[recovery]` and `[defaults]`, each defined once.
pub(super) fn singletons(raw: &RawSite, index: &Index, site: &mut Site, diags: &mut Diagnostics) {
    fn once<'a, T>(
        raw: &'a RawSite,
        table: &str,
        get: impl Fn(&'a RawFile) -> &'a Option<Spanned<T>>,
        diags: &mut Diagnostics,
    ) -> Option<(FileId, &'a Spanned<T>)> {
        let mut first: Option<(FileId, &'a Spanned<T>)> = None;
        for (file, parsed) in &raw.files {
            if let Some(v) = get(parsed) {
                match first {
                    None => first = Some((*file, v)),
                    Some((f0, v0)) => diags.push(
                        Diagnostic::error(
                            "duplicate-name",
                            format!("`[{table}]` is defined twice"),
                            Loc::new(*file, v.span()),
                        )
                        .also(Loc::new(f0, v0.span()), "first defined here")
                        .help(format!("keep one `[{table}]` table for the whole site")),
                    ),
                }
            }
        }
        first
    }
    let nothing_loaded = raw.files.is_empty();
    match once(raw, "site", |f| &f.site, diags) {
        Some((file, s)) => {
            let mut cx = Cx::new(file, index, diags);
            let loc = cx.loc(s.span());
            site.settings.loc = Some(loc.clone());
            let s = s.get_ref();
            site.settings.name = cx
                .required(&s.name, &loc, "name", "[site]")
                .and_then(|v| cx.value(v, |x| values::name(x, NameKind::Ident)))
                .map(|a| a.value)
                .unwrap_or_default();
            site.settings.domain = cx
                .required(&s.domain, &loc, "domain", "[site]")
                .and_then(|v| cx.value(v, values::dns_name))
                .map(|a| a.value)
                .unwrap_or_default();
            site.settings.public_domain =
                s.public_domain.as_ref().and_then(|v| cx.value(v, values::dns_name)).map(|a| a.value);
            site.settings.description = cx.opt_text(&s.description);
        }
        None if !nothing_loaded => diags.push(
            Diagnostic::error_nowhere("missing-table", "no site file defines `[site]`")
                .help("add `[site]` with `name` and `domain` to `site/site.toml`"),
        ),
        None => {}
    }
    match once(raw, "recovery", |f| &f.recovery, diags) {
        Some((file, r)) => {
            let mut cx = Cx::new(file, index, diags);
            let loc = cx.loc(r.span());
            let r = r.get_ref();
            if let Some(v) = cx.required(&r.rto, &loc, "rto", "[recovery]").and_then(|v| cx.value(v, Duration::parse)) {
                site.recovery.rto = v;
            }
            if let Some(v) = cx.required(&r.rpo, &loc, "rpo", "[recovery]").and_then(|v| cx.value(v, Duration::parse)) {
                site.recovery.rpo = v;
            }
        }
        None if !nothing_loaded => diags.push(
            Diagnostic::error_nowhere("missing-table", "no site file defines `[recovery]`")
                .help("add `[recovery]` with `rto = \"4h\"` and `rpo = \"1h\"` (your targets) to `site/site.toml`"),
        ),
        None => {}
    }
    if let Some((file, a)) = once(raw, "agent", |f| &f.agent, diags) {
        let mut cx = Cx::new(file, index, diags);
        site.agent = cx.agent(a);
    }
    if let Some((file, d)) = once(raw, "defaults", |f| &f.defaults, diags) {
        let mut cx = Cx::new(file, index, diags);
        site.defaults = cx.defaults(d.get_ref());
    }
}

impl Cx<'_, '_> {
    pub(super) fn defaults(&mut self, d: &RawDefaults) -> Defaults {
        let mut out = Defaults::default();
        if let Some(c) = &d.container {
            let c = c.get_ref();
            if let Some(r) = &c.restart {
                let all = [("unless-stopped", ()), ("on-failure", ()), ("always", ()), ("no", ())];
                if self.vocabulary(r, "restart policy", &all).is_some() {
                    out.restart = r.get_ref().clone();
                }
            }
            if let Some(v) = c.pids_limit.as_ref().and_then(|v| self.int(v, 1, 1 << 22, "pids limit")) {
                out.pids_limit = v.value;
            }
            if let Some(v) = c.tmpfs_size.as_ref().and_then(|v| self.value(v, Size::parse)) {
                out.tmpfs_size = v.value;
            }
        }
        if let Some(h) = &d.health {
            let h = h.get_ref();
            self.timing(
                &h.interval,
                &h.timeout,
                &h.retries,
                &h.start_period,
                &mut out.health_interval,
                &mut out.health_timeout,
                &mut out.health_retries,
                &mut out.health_start_period,
            );
        }
        if let Some(r) = &d.resources {
            out.resources = self.resources(r.get_ref(), &out.resources);
        }
        if let Some(v) = d.backup_retention.as_ref().and_then(|v| self.value(v, Duration::parse)) {
            out.backup_retention = v.value;
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn timing(
        &mut self,
        interval: &Option<Str>,
        timeout: &Option<Str>,
        retries: &Option<Spanned<i64>>,
        start: &Option<Str>,
        i: &mut Duration,
        t: &mut Duration,
        r: &mut u32,
        s: &mut Duration,
    ) {
        if let Some(v) = interval.as_ref().and_then(|v| self.value(v, Duration::parse)) {
            *i = v.value;
        }
        if let Some(v) = timeout.as_ref().and_then(|v| self.value(v, Duration::parse)) {
            *t = v.value;
        }
        if let Some(v) = retries.as_ref().and_then(|v| self.int(v, 1, 100, "retries")) {
            *r = v.value;
        }
        if let Some(v) = start.as_ref().and_then(|v| self.value(v, Duration::parse)) {
            *s = v.value;
        }
    }

    pub(super) fn resources(&mut self, r: &RawResources, base: &Resources) -> Resources {
        let mut out = base.clone();
        if let Some(v) = r.cpus.as_ref().and_then(|v| self.cpus(v)) {
            out.cpus = v;
        }
        if let Some(v) = r.reserve_cpus.as_ref().and_then(|v| self.cpus(v)) {
            out.reserve_cpus = v;
        }
        if let Some(v) = r.memory.as_ref().and_then(|v| self.value(v, Size::parse)) {
            out.memory = v.value;
        }
        if let Some(v) = r.reserve_memory.as_ref().and_then(|v| self.value(v, Size::parse)) {
            out.reserve_memory = v.value;
        }
        if let Some(v) = r.pids.as_ref().and_then(|v| self.int(v, 1, 1 << 22, "pids limit")) {
            out.pids = v.value;
        }
        out
    }

    pub(super) fn agent(&mut self, a: &Spanned<RawAgent>) -> Option<AgentSettings> {
        let loc = self.loc(a.span());
        let a = a.get_ref();
        let repository =
            self.required(&a.repository, &loc, "repository", "[agent]").and_then(|v| self.value(v, repository_url));
        let branch = match &a.branch {
            Some(b) => self.value(b, |s| {
                values::name(s, NameKind::Ident).or_else(|_| values::abs_path(&format!("/{s}")).map(|_| s.to_string()))
            }),
            None => Some(At { value: "main".to_string(), loc: loc.clone() }),
        };
        let interval = a
            .interval
            .as_ref()
            .map(|v| self.value(v, Duration::parse))
            .unwrap_or(Some(At { value: Duration(300), loc: loc.clone() }));
        let splay = a
            .splay
            .as_ref()
            .map(|v| self.value(v, Duration::parse))
            .unwrap_or(Some(At { value: Duration(60), loc: loc.clone() }));
        let drift = match &a.drift {
            Some(v) => self
                .vocabulary(v, "drift policy", &[("enforce", "enforce"), ("report", "report")])
                .map(|x| x.value.to_string()),
            None => Some("enforce".to_string()),
        };
        if a.signers.is_empty() {
            self.diags.push(
                Diagnostic::error(
                    "missing-key",
                    "`[agent]` lists no signers, so hosts would apply unsigned commits",
                    loc.clone(),
                )
                .help("add `signers = [\"ssh-ed25519 AAAA… ci@site\"]`: the public key CI signs rendered commits with"),
            );
        }
        let signers: Vec<String> =
            a.signers.iter().filter_map(|v| self.value(v, signer_key)).map(|x| x.value).collect();
        Some(AgentSettings {
            repository: repository?.value,
            branch: branch?.value,
            interval: interval?.value,
            splay: splay?.value,
            signers,
            drift: drift?,
            loc,
        })
    }
}

/// A repository URL hosts can fetch: `https://`, `ssh://`, `file://` or an absolute path,
/// of plain URL characters.
fn repository_url(s: &str) -> Result<String, ValueError> {
    let ok_chars = s.chars().all(|c| c.is_ascii_alphanumeric() || ":/._~@+-".contains(c));
    let ok_scheme = ["https://", "ssh://", "file://", "/"].iter().any(|p| s.starts_with(p));
    if !ok_chars || !ok_scheme || s.len() > 300 {
        return Err(ValueError {
            message: format!("`{}` is not a repository URL hosts can fetch", values::printable(s)),
            help: "write `https://host/path.git`, `ssh://git@host/path.git`, `file:///path` or an absolute path".into(),
        });
    }
    Ok(s.to_string())
}

/// An SSH public key line for `allowed_signers`: `<type> <base64> [comment]`.
fn signer_key(s: &str) -> Result<String, ValueError> {
    let bad = |why: &str| ValueError {
        message: format!("`{}` is not an SSH public key: {why}", values::printable(s)),
        help: "paste the line of the `.pub` file, e.g. `ssh-ed25519 AAAAC3Nza… ci@medianest`".into(),
    };
    let mut parts = s.split(' ');
    let kind = parts.next().unwrap_or("");
    if !["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ssh-rsa", "sk-ssh-ed25519@openssh.com"]
        .contains(&kind)
    {
        return Err(bad("unknown key type"));
    }
    let b64 = parts.next().unwrap_or("");
    if b64.len() < 16 || !b64.chars().all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c)) {
        return Err(bad("the key is not base64"));
    }
    let comment: Vec<&str> = parts.collect();
    if comment.len() > 1
        || !comment.iter().all(|c| c.chars().all(|ch| ch.is_ascii_alphanumeric() || "@._-".contains(ch)))
    {
        return Err(bad("the comment must be one word"));
    }
    Ok(s.to_string())
}
