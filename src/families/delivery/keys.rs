//! The delivery family's own keys: the top-level `[agent]` table, what every host's
//! `medianest pull` follows.

use serde::Deserialize;
use toml::Spanned;

use crate::diag::{Diagnostic, Diagnostics, Loc};
use crate::families::{Part, parts_of};
use crate::load::schema::Str;
use crate::model::values::{self, Duration, ValueError};
use crate::model::{At, Site};
use crate::resolve::cx::Cx;

crate::keys! {
    /// The delivery family's keys in one site file.
    #[derive(Debug, Default, Deserialize)]
    pub struct DeliveryFile {
        /// How hosts pull their configuration (one file defines it).
        pub agent: Option<Spanned<RawAgent>>,
    }
}

crate::keys! {
    /// `[agent]`: what every host's `medianest pull` follows.
    #[derive(Debug, Deserialize)]
    pub struct RawAgent {
        /// Required. Repository URL the hosts fetch (`https://…`, `ssh://…`, `file://…` or a path).
        pub repository: Option<Str>,
        /// Branch (default `main`).
        pub branch: Option<Str>,
        /// Time between runs (default `5m`).
        pub interval: Option<Str>,
        /// Random delay added to each run, so hosts do not fetch at once (default `1m`).
        pub splay: Option<Str>,
        /// Required. Public keys allowed to sign the commits hosts apply (`ssh-ed25519 AAAA… name`).
        #[serde(default)]
        pub signers: Vec<Str>,
        /// What the agent does with managed files changed by hand: `enforce` or `report` (default `enforce`).
        pub drift: Option<Str>,
    }
}

/// `[agent]`, resolved.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// Repository URL.
    pub repository: String,
    /// Where the URL is written.
    pub repository_loc: Loc,
    /// Branch.
    pub branch: String,
    /// Time between runs.
    pub interval: Duration,
    /// Random delay per run.
    pub splay: Duration,
    /// Allowed signers' public keys (`type base64 comment`).
    pub signers: Vec<String>,
    /// `enforce` or `report`.
    pub drift: String,
    /// Where defined.
    pub loc: Loc,
}

/// Types `[agent]`, defined in at most one file.
pub fn resolve(parts: &[Part], site: &Site, diags: &mut Diagnostics) -> Option<AgentSettings> {
    let mut first: Option<(usize, &Spanned<RawAgent>)> = None;
    for (file, f) in parts_of::<DeliveryFile>(parts) {
        let Some(a) = &f.agent else { continue };
        match first {
            None => first = Some((file, a)),
            Some((f0, a0)) => diags.push(
                Diagnostic::error("duplicate-name", "`[agent]` is defined twice", Loc::new(file, a.span()))
                    .also(Loc::new(f0, a0.span()), "first defined here")
                    .help("keep one `[agent]` table for the whole site"),
            ),
        }
    }
    let (file, a) = first?;
    agent(&mut Cx::new(file, site, diags), a)
}

fn agent(cx: &mut Cx, a: &Spanned<RawAgent>) -> Option<AgentSettings> {
    let loc = cx.loc(a.span());
    let a = a.get_ref();
    let repository =
        cx.required(&a.repository, &loc, "repository", "[agent]").and_then(|v| cx.value(v, repository_url));
    let branch = match &a.branch {
        Some(b) => cx.value(b, values::branch),
        None => Some(At { value: "main".to_string(), loc: loc.clone() }),
    };
    // Both are time spans of the agent's systemd timer.
    let interval = a
        .interval
        .as_ref()
        .map(|v| cx.value(v, Duration::within(&values::SYSTEMD_TIMESPAN)))
        .unwrap_or(Some(At { value: Duration(300), loc: loc.clone() }));
    let splay = a
        .splay
        .as_ref()
        .map(|v| cx.value(v, Duration::within(&values::SYSTEMD_TIMESPAN)))
        .unwrap_or(Some(At { value: Duration(60), loc: loc.clone() }));
    let drift = match &a.drift {
        Some(v) => cx
            .vocabulary(v, "drift policy", &[("enforce", "enforce"), ("report", "report")])
            .map(|x| x.value.to_string()),
        None => Some("enforce".to_string()),
    };
    if a.signers.is_empty() {
        cx.diags.push(
            Diagnostic::error(
                "missing-key",
                "`[agent]` lists no signers, so hosts would apply unsigned commits",
                loc.clone(),
            )
            .help("add `signers = [\"ssh-ed25519 AAAA… ci@site\"]`: the public key CI signs rendered commits with"),
        );
    }
    let signers: Vec<String> = a.signers.iter().filter_map(|v| cx.value(v, signer_key)).map(|x| x.value).collect();
    Some(AgentSettings {
        repository_loc: repository.as_ref().map(|r| r.loc.clone())?,
        repository: repository?.value,
        branch: branch?.value,
        interval: interval?.value,
        splay: splay?.value,
        signers,
        drift: drift?,
        loc,
    })
}

/// A repository URL hosts can fetch: `https://`, `ssh://`, `file://` or an absolute path,
/// of plain URL characters.
fn repository_url(s: &str) -> Result<String, ValueError> {
    let ok_chars = s.chars().all(|c| c.is_ascii_alphanumeric() || ":/._~@+-".contains(c));
    let ok_scheme = ["https://", "ssh://", "file://", "/"].iter().any(|p| s.starts_with(p));
    if !ok_chars || !ok_scheme || s.len() > 300 {
        return Err(ValueError {
            code: "bad-value",
            message: format!("`{}` is not a repository URL hosts can fetch", values::printable(s)),
            help: "write `https://host/path.git`, `ssh://git@host/path.git`, `file:///path` or an absolute path".into(),
        });
    }
    // User-info in an https URL is a credential (or half of one) written into every
    // host's agent.toml and bootstrap.sh; ssh takes its user, never a password.
    let authority = s.split_once("://").map(|(_, r)| r.split('/').next().unwrap_or("")).unwrap_or("");
    if let Some((userinfo, _)) = authority.split_once('@')
        && (s.starts_with("https://") || userinfo.contains(':'))
    {
        return Err(ValueError {
            code: "secret-value",
            // Name the user, never the password after it.
            message: format!(
                "the repository URL carries user-info (`{}{}@`)",
                values::printable(userinfo.split(':').next().unwrap_or("")),
                if userinfo.contains(':') { ":…" } else { "" }
            ),
            help: "remove it: hosts authenticate with their own deploy key or token, provisioned outside the site"
                .into(),
        });
    }
    Ok(s.to_string())
}

/// An SSH public key line for `allowed_signers`: `<type> <base64> [comment]`.
fn signer_key(s: &str) -> Result<String, ValueError> {
    let bad = |why: &str| ValueError {
        code: "bad-value",
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
