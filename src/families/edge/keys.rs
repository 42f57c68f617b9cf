//! The edge's own keys: how an exposure is treated at the edge (WAF, certificate, rate
//! limit, body size), how a service is balanced, and the certificates the edge serves.
//! Read by the haproxy and nginx families through [`Edge`].

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::diag::{Diagnostic, Diagnostics, did_you_mean};
use crate::families::Part;
use crate::load::schema::{Named, Str};
use crate::model::values::{self, Size, ValueError};
use crate::model::{At, Expose, ServiceId, Site};
use crate::resolve::cx::Cx;

crate::keys! {
    /// The edge's keys in one site file.
    #[derive(Debug, Default, Deserialize)]
    pub struct EdgeFile {
        /// TLS certificates the edge serves (referenced by path, never generated).
        #[serde(default)]
        pub certificates: Named<RawCertificate>,
        /// The edge's keys on services.
        #[serde(default)]
        pub services: Named<EdgeService>,
    }
}

crate::keys! {
    /// The edge's keys of `[services.<name>]`.
    #[derive(Debug, Deserialize)]
    pub struct EdgeService {
        /// Load-balancing algorithm at the edge: `roundrobin`, `leastconn` or `source` (default `roundrobin`).
        pub balance: Option<Str>,
        /// The edge's keys of each `expose` entry.
        #[serde(default)]
        pub expose: Vec<Spanned<EdgeExpose>>,
    }
}

crate::keys! {
    /// The edge's keys of one `services.<name>.expose` entry.
    #[derive(Debug, Deserialize)]
    pub struct EdgeExpose {
        /// ModSecurity mode: `off`, `detect` or `block` (default `block`).
        pub waf: Option<Str>,
        /// Certificate name (default: the certificate whose domains cover `hostname`).
        pub tls: Option<Str>,
        /// Requests per client address: `{ rate = "100r/m", burst = 20 }`.
        pub rate_limit: Option<Spanned<RawRateLimit>>,
        /// Largest request body (default `1m`; at most `8388607t`, what nginx's `client_max_body_size` holds).
        pub max_body: Option<Str>,
        /// OWASP CRS rule ids switched off for this path (false positives), e.g. `[942100]`.
        #[serde(default)]
        pub waf_exclusions: Vec<Spanned<i64>>,
    }
}

crate::keys! {
    /// `expose.rate_limit`
    #[derive(Debug, Deserialize)]
    pub struct RawRateLimit {
        /// Required. `<n>r/s` or `<n>r/m`.
        pub rate: Option<Str>,
        /// Requests allowed above the rate before rejecting (default `0`).
        pub burst: Option<Spanned<i64>>,
    }
}

crate::keys! {
    /// `[certificates.<name>]`
    #[derive(Debug, Deserialize)]
    pub struct RawCertificate {
        /// Required. DNS names it covers (`media.example.org`, `*.example.org`).
        #[serde(default)]
        pub domains: Vec<Str>,
        /// Required. PEM file (certificate chain + key) on the edge hosts, provisioned outside git.
        pub file: Option<Str>,
        /// Obtained and renewed by ACME HTTP-01 on every edge host (lego, daily): HAProxy passes `/.well-known/acme-challenge/` to the edges' clients on their `acme` port, whichever edge asked (default `false`). Needs `acme_email`.
        pub acme: Option<Spanned<bool>>,
        /// The ACME account's contact address (expiry notices), with `acme = true`.
        pub acme_email: Option<Str>,
        /// The ACME server's directory URL (`https://`; default Let's Encrypt's production directory).
        pub acme_directory: Option<Str>,
    }
}

/// ModSecurity mode of an exposure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WafMode {
    /// No WAF.
    Off,
    /// Log only.
    Detect,
    /// Block matches.
    Block,
}

impl WafMode {
    /// Names as written in the site.
    pub const ALL: &[(&str, WafMode)] =
        &[("off", WafMode::Off), ("detect", WafMode::Detect), ("block", WafMode::Block)];
    /// The name as written in the site.
    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, k)| *k == self).map(|(n, _)| *n).unwrap_or("?")
    }
}

/// Edge load-balancing algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Balance {
    /// Round robin.
    Roundrobin,
    /// Fewest connections.
    Leastconn,
    /// Hash of the client address (sticky).
    Source,
}

impl Balance {
    /// Names as written in the site.
    pub const ALL: &[(&str, Balance)] =
        &[("roundrobin", Balance::Roundrobin), ("leastconn", Balance::Leastconn), ("source", Balance::Source)];
    /// The name as written in the site.
    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, k)| *k == self).map(|(n, _)| *n).unwrap_or("?")
    }
}

/// A request rate: `count` requests per `per_seconds` (1 or 60).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests.
    pub count: u32,
    /// Per this many seconds: 1 (`r/s`) or 60 (`r/m`).
    pub per_seconds: u32,
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}r/{}", self.count, if self.per_seconds == 1 { "s" } else { "m" })
    }
}

/// A per-client rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// The rate.
    pub rate: Rate,
    /// Requests allowed above it before rejecting.
    pub burst: u32,
}

/// A TLS certificate served at the edge.
#[derive(Debug)]
pub struct Certificate {
    /// Name.
    pub name: String,
    /// Where defined.
    pub loc: crate::diag::Loc,
    /// DNS names (`*.` wildcards allowed).
    pub domains: Vec<At<String>>,
    /// PEM file on the edge hosts.
    pub file: String,
    /// Renewed by ACME HTTP-01.
    pub acme: bool,
    /// The ACME account's contact address (required with `acme`: checked in verify).
    pub acme_email: Option<At<String>>,
    /// The ACME directory.
    pub acme_directory: At<String>,
}

/// The most names Let's Encrypt puts in one certificate.
pub const ACME_MAX_NAMES: usize = 100;

/// Let's Encrypt's production directory: the default ACME server.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// An e-mail address an ACME server accepts as a contact: `local@domain`, plain
/// characters (it is written into a shell script and a command line).
fn email(s: &str) -> Result<String, values::ValueError> {
    let ok = s.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty()
            && local.len() <= 64
            && local.chars().all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c))
            && domain.contains('.')
            && values::dns_name(domain).is_ok()
    });
    if ok {
        Ok(s.to_string())
    } else {
        Err(values::ValueError {
            code: "bad-value",
            message: format!("`{}` is not an e-mail address an ACME server accepts", values::printable(s)),
            help: "write the address that gets the expiry notices, e.g. `ops@example.org`".into(),
        })
    }
}

/// An ACME directory URL: `https://`, plain URL characters, no user-info.
fn directory(s: &str) -> Result<String, values::ValueError> {
    let rest = s.strip_prefix("https://").unwrap_or("");
    let host = rest.split('/').next().unwrap_or("");
    let ok = !host.is_empty()
        && !host.contains('@')
        && s.len() <= 300
        && rest.chars().all(|c| c.is_ascii_alphanumeric() || ":/._~+-[]".contains(c));
    if ok {
        Ok(s.to_string())
    } else {
        Err(values::ValueError {
            code: "bad-value",
            message: format!("`{}` is not an ACME directory URL", values::printable(s)),
            help: format!("write the server's `https://` directory URL, e.g. `{LETS_ENCRYPT}`"),
        })
    }
}

impl Certificate {
    /// Whether the certificate covers `host` (exactly, or by a one-label wildcard).
    pub fn covers(&self, host: &str) -> bool {
        self.domains.iter().any(|d| match d.value.strip_prefix("*.") {
            Some(suffix) => host.split_once('.').is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
            None => d.value == host,
        })
    }
}

/// How the edge treats one exposure.
#[derive(Debug, Clone)]
pub struct ExposeEdge {
    /// WAF mode.
    pub waf: WafMode,
    /// Certificate named by `tls`, if any (else: the one that covers the hostname).
    pub tls: Option<At<String>>,
    /// Per-client rate limit.
    pub rate_limit: Option<RateLimit>,
    /// Largest request body.
    pub max_body: Size,
    /// CRS rule ids switched off.
    pub waf_exclusions: Vec<u32>,
}

/// What an exposure gets when the site says nothing.
pub static DEFAULT_EXPOSE: ExposeEdge = ExposeEdge {
    waf: WafMode::Block,
    tls: None,
    rate_limit: None,
    max_body: Size(1 << 20),
    waf_exclusions: Vec::new(),
};

/// The edge family's model.
#[derive(Debug, Default)]
pub struct Edge {
    /// Certificates, sorted by name.
    pub certificates: Vec<Certificate>,
    /// Balance algorithm per service that sets one.
    pub balance: BTreeMap<ServiceId, Balance>,
    /// Per exposure that sets any edge key, by `(service, expose index)`.
    pub expose: BTreeMap<(ServiceId, usize), ExposeEdge>,
}

impl Edge {
    /// How the edge treats an exposure of a service.
    pub fn of(&self, service: ServiceId, e: &Expose) -> &ExposeEdge {
        self.expose.get(&(service, e.index)).unwrap_or(&DEFAULT_EXPOSE)
    }
    /// A service's balance algorithm.
    pub fn balance(&self, service: ServiceId) -> Balance {
        self.balance.get(&service).copied().unwrap_or(Balance::Roundrobin)
    }
}

static EMPTY: Edge = Edge { certificates: Vec::new(), balance: BTreeMap::new(), expose: BTreeMap::new() };

/// The edge model of a site (empty when the family resolved nothing).
pub fn edge(site: &Site) -> &Edge {
    site.ext.get::<Edge>().unwrap_or(&EMPTY)
}

/// Types the edge keys of every file.
pub fn resolve(parts: &[Part], site: &Site, diags: &mut Diagnostics) -> Edge {
    let files = crate::families::parts_of::<EdgeFile>(parts);
    let mut out = Edge::default();
    // Certificates first: exposures refer to them by name.
    let mut seen: BTreeMap<String, crate::diag::Loc> = BTreeMap::new();
    for (file, f) in &files {
        let mut cx = Cx::new(*file, site, diags);
        for (name, c) in &f.certificates {
            let loc = cx.loc(name.span());
            if let Some(first) = seen.get(name.get_ref()) {
                cx.diags.push(
                    Diagnostic::error(
                        "duplicate-name",
                        format!("`{}` is defined twice in `certificates`", name.get_ref()),
                        loc,
                    )
                    .label("second definition")
                    .also(first.clone(), "first defined here")
                    .help("names are unique per table; rename one or merge the two definitions"),
                );
                continue;
            }
            if let Err(e) = values::name(name.get_ref(), values::NameKind::Ident) {
                cx.bad(loc.clone(), e);
            }
            seen.insert(name.get_ref().clone(), loc.clone());
            if let Some(cert) = certificate(&mut cx, name.get_ref(), loc, c) {
                out.certificates.push(cert);
            }
        }
    }
    out.certificates.sort_by(|a, b| a.name.cmp(&b.name));
    let services: Vec<_> = files.iter().map(|(f, x)| (*f, &x.services)).collect();
    for (file, id, s) in crate::families::service_keys(site, &services) {
        let mut cx = Cx::new(file, site, diags);
        if let Some(b) = s.balance.as_ref().and_then(|v| cx.vocabulary(v, "balance algorithm", Balance::ALL)) {
            out.balance.insert(id, b.value);
        }
        for (index, e) in s.expose.iter().enumerate() {
            if let Some(x) = expose(&mut cx, e.get_ref(), &seen) {
                out.expose.insert((id, index), x);
            }
        }
    }
    out
}

fn certificate(cx: &mut Cx, name: &str, loc: crate::diag::Loc, c: &RawCertificate) -> Option<Certificate> {
    let t = format!("[certificates.{name}]");
    if c.domains.is_empty() {
        cx.diags.push(
            Diagnostic::error("missing-key", format!("certificate `{name}` covers no domain"), loc.clone())
                .help("add `domains = [\"media.example.org\"]`"),
        );
    }
    let domains = c
        .domains
        .iter()
        .filter_map(|d| cx.value(d, |x| values::dns_name(x.strip_prefix("*.").unwrap_or(x)).map(|_| x.to_string())))
        .collect();
    let file = cx.required(&c.file, &loc, "file", &t).and_then(|v| cx.value(v, values::abs_path))?;
    let acme = c.acme.as_ref().is_some_and(|b| *b.get_ref());
    if acme && let Some(w) = c.domains.iter().find(|d| d.get_ref().starts_with("*.")) {
        // HTTP-01 proves control of one name by serving a file on it: a wildcard has no
        // host to serve it from, so ACME servers only issue it through DNS-01.
        cx.diags.push(
            Diagnostic::error(
                "bad-value",
                format!("certificate `{name}` is obtained by ACME HTTP-01, which cannot validate the wildcard `{}`", w.get_ref()),
                cx.loc(w.span()),
            )
            .help("list the names the edge serves in `domains`, or provision the wildcard certificate yourself and drop `acme`"),
        );
    }
    if acme && c.domains.len() > ACME_MAX_NAMES {
        cx.diags.push(
            Diagnostic::error(
                "bad-value",
                format!(
                    "certificate `{name}` lists {} names; an ACME certificate holds at most {ACME_MAX_NAMES}",
                    c.domains.len()
                ),
                loc.clone(),
            )
            .help("split the names over several certificates"),
        );
    }
    if acme && c.acme_email.is_none() {
        cx.diags.push(
            Diagnostic::error(
                "missing-key",
                format!("certificate `{name}` is obtained by ACME but names no contact"),
                loc.clone(),
            )
            .help("add `acme_email = \"ops@example.org\"`: the ACME account's address, which gets the expiry notices"),
        );
    }
    let acme_directory = c
        .acme_directory
        .as_ref()
        .and_then(|v| cx.value(v, directory))
        .unwrap_or_else(|| At { value: LETS_ENCRYPT.to_string(), loc: loc.clone() });
    Some(Certificate {
        name: name.to_string(),
        loc,
        domains,
        file: file.value,
        acme,
        acme_email: c.acme_email.as_ref().and_then(|v| cx.value(v, email)),
        acme_directory,
    })
}

fn expose(cx: &mut Cx, e: &EdgeExpose, certs: &BTreeMap<String, crate::diag::Loc>) -> Option<ExposeEdge> {
    let waf = e
        .waf
        .as_ref()
        .and_then(|v| cx.vocabulary(v, "WAF mode", WafMode::ALL))
        .map(|a| a.value)
        .unwrap_or(WafMode::Block);
    let tls = e.tls.as_ref().map(|t| At { value: t.get_ref().clone(), loc: cx.loc(t.span()) });
    if let Some(t) = &tls
        && !certs.contains_key(&t.value)
    {
        let d = Diagnostic::error(
            "unknown-reference",
            format!("unknown certificate `{}`", values::printable(&t.value)),
            t.loc.clone(),
        )
        .label("no such certificate");
        let d = match did_you_mean(&t.value, certs.keys().map(String::as_str)) {
            Some(x) => d.help(format!("did you mean `{x}`?")),
            None => d.help(format!(
                "declare it: `[certificates.{}]` with `domains` and `file`",
                values::printable(&t.value)
            )),
        };
        cx.diags.push(d);
    }
    let rate_limit = e.rate_limit.as_ref().and_then(|r| {
        let rloc = cx.loc(r.span());
        let r = r.get_ref();
        let rate = cx.required(&r.rate, &rloc, "rate", "rate_limit").and_then(|v| cx.value(v, parse_rate))?;
        let burst = match &r.burst {
            Some(b) => cx.int(b, 0, 100_000, "burst")?.value,
            None => 0,
        };
        Some(RateLimit { rate: rate.value, burst })
    });
    let max_body = match &e.max_body {
        // Rendered as nginx's `client_max_body_size`, an `off_t`.
        Some(v) => cx.value(v, Size::within(&values::NGINX_SIZE))?.value,
        None => Size(1 << 20),
    };
    let waf_exclusions: Vec<u32> =
        e.waf_exclusions.iter().filter_map(|id| cx.int::<u32>(id, 1, 9_999_999, "rule id")).map(|a| a.value).collect();
    Some(ExposeEdge { waf, tls, rate_limit, max_body, waf_exclusions })
}

/// `<n>r/s` or `<n>r/m`.
fn parse_rate(s: &str) -> Result<Rate, ValueError> {
    let bad = || ValueError {
        code: "bad-value",
        message: format!("`{}` is not a request rate", values::printable(s)),
        help: "write requests per second or minute, e.g. `10r/s` or `100r/m`".into(),
    };
    let (n, per) = s.split_once("r/").ok_or_else(bad)?;
    let count: u32 = n.parse().map_err(|_| bad())?;
    let per_seconds = match per {
        "s" => 1,
        "m" => 60,
        _ => return Err(bad()),
    };
    if count == 0 {
        return Err(bad());
    }
    Ok(Rate { count, per_seconds })
}
