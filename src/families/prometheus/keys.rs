//! Prometheus's own keys: on `kind = "prometheus"` services the retention, the scrape
//! interval, where runbooks live and the site's own alert rules; on any service, how its
//! metrics are scraped (`metrics.<port>`).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::diag::{Diagnostic, Diagnostics, Loc};
use crate::families::{Part, parts_of, service_keys};
use crate::load::schema::{Named, Str};
use crate::model::values::{Duration, ValueError};
use crate::model::{At, ServiceId, ServiceKind, Site};
use crate::resolve::cx::Cx;

crate::keys! {
    /// Prometheus's keys in one site file.
    #[derive(Debug, Default, Deserialize)]
    pub struct PrometheusFile {
        /// Prometheus's keys on services.
        #[serde(default)]
        pub services: Named<PrometheusService>,
    }
}

crate::keys! {
    /// Prometheus's keys of `[services.<name>]`.
    #[derive(Debug, Deserialize)]
    pub struct PrometheusService {
        /// How long Prometheus keeps samples (`kind = "prometheus"` only; default `30d`, at least `1d`): `--storage.tsdb.retention.time`. It must cover the longest backup interval and the site's RPO, so a backup-age alert and its graph always have the samples they read.
        pub retention: Option<Str>,
        /// How often every target is scraped and every rule evaluated (`kind = "prometheus"` only; default `30s`, from `5s` to `5m`). Alerts wait at least twice this before firing, so one failed scrape never pages.
        pub scrape_interval: Option<Str>,
        /// Where the runbook pages are read (`kind = "prometheus"` only): a URL prefix such as `https://git.example.org/homelab/-/blob/main/generated/docs/runbooks`. Every alert's `runbook_url` is `<prefix>/<service>.md#<alert>`, a page `generated/docs/runbooks/` holds. Default: the path in the repository, `generated/docs/runbooks`.
        pub runbooks: Option<Str>,
        /// The site's own alert rules (`kind = "prometheus"` only), added to the generated baseline: `{ alert = "QueueBacklog", expr = "bull_queue_waiting > 100", for = "10m", severity = "warning", summary = "...", service = "medianest-backend" }`. `expr` is PromQL, checked when the site is compiled; `severity` is `critical` (paged) or `warning` (chat); `service` names the runbook page (default: this Prometheus service).
        pub rules: Option<Vec<RawRule>>,
        /// How Prometheus scrapes this service's ports (any service): `metrics.<port> = { path = "/minio/v2/metrics/cluster", scheme = "https" }`. A port is scraped when a flow from a Prometheus service reaches it; the default path is `/metrics` (MinIO's: `/minio/v2/metrics/cluster`) and the default scheme `http` (MinIO's: `https`, trusting the site's MinIO CA).
        pub metrics: Option<Named<RawMetrics>>,
    }
}

crate::keys! {
    /// One of the site's alert rules.
    #[derive(Debug, Deserialize)]
    pub struct RawRule {
        /// Required. Alert name, `[A-Z][A-Za-z0-9]*` (as the baseline's: `HostDown`), unique with them.
        pub alert: Option<Str>,
        /// Required. The PromQL expression; the alert fires for every series it returns.
        pub expr: Option<Str>,
        /// How long the expression must hold before the alert fires (default `5m`).
        pub r#for: Option<Str>,
        /// Required. `critical` (PagerDuty) or `warning` (Slack).
        pub severity: Option<Str>,
        /// Required. One line for the notification; Prometheus templates such as `{{ $labels.host }}` may be used.
        pub summary: Option<Str>,
        /// The service whose runbook page documents the alert (default: the Prometheus service).
        pub service: Option<Str>,
    }
}

crate::keys! {
    /// How one port is scraped.
    #[derive(Debug, Deserialize)]
    pub struct RawMetrics {
        /// The metrics path (default `/metrics`), starting with `/`.
        pub path: Option<Str>,
        /// `http` (default) or `https`.
        pub scheme: Option<Str>,
    }
}

/// Alert severities: what the alertmanager family routes.
pub const SEVERITIES: &[(&str, &str)] = &[("critical", "critical"), ("warning", "warning")];
/// Schemes.
pub const SCHEMES: &[(&str, &str)] = &[("http", "http"), ("https", "https")];
/// Retention when a service writes none.
pub const DEFAULT_RETENTION: Duration = Duration(30 * 86400);
/// Scrape interval when a service writes none.
pub const DEFAULT_SCRAPE: Duration = Duration(30);
/// Where runbooks are read when a service says nothing.
pub const DEFAULT_RUNBOOKS: &str = "generated/docs/runbooks";

/// A site rule after typing.
#[derive(Debug, Clone)]
pub struct CustomRule {
    /// Alert name.
    pub alert: At<String>,
    /// PromQL.
    pub expr: At<String>,
    /// `for`.
    pub for_: At<Duration>,
    /// Severity.
    pub severity: At<&'static str>,
    /// Summary.
    pub summary: At<String>,
    /// Runbook service.
    pub service: At<ServiceId>,
    /// Where the rule is written.
    pub loc: Loc,
}

/// How one port is scraped.
#[derive(Debug, Clone)]
pub struct Scrape {
    /// Path.
    pub path: At<String>,
    /// Scheme.
    pub scheme: At<&'static str>,
}

/// The prometheus family's model.
#[derive(Debug, Default)]
pub struct Model {
    /// `retention`.
    pub retention: BTreeMap<ServiceId, At<Duration>>,
    /// `scrape_interval`.
    pub scrape_interval: BTreeMap<ServiceId, At<Duration>>,
    /// `runbooks`.
    pub runbooks: BTreeMap<ServiceId, At<String>>,
    /// `rules`.
    pub rules: BTreeMap<ServiceId, Vec<CustomRule>>,
    /// `metrics`, by service and port name.
    pub metrics: BTreeMap<(ServiceId, String), Scrape>,
    /// The services that write `metrics` (scrape targets by declaration), where.
    pub declared_targets: BTreeMap<ServiceId, Loc>,
}

impl Model {
    /// A Prometheus service's retention.
    pub fn retention(&self, site: &Site, id: ServiceId) -> At<Duration> {
        self.retention
            .get(&id)
            .cloned()
            .unwrap_or_else(|| At { value: DEFAULT_RETENTION, loc: site.service(id).loc.clone() })
    }
    /// A Prometheus service's scrape and evaluation interval.
    pub fn scrape_interval(&self, site: &Site, id: ServiceId) -> At<Duration> {
        self.scrape_interval
            .get(&id)
            .cloned()
            .unwrap_or_else(|| At { value: DEFAULT_SCRAPE, loc: site.service(id).loc.clone() })
    }
    /// A Prometheus service's runbook prefix.
    pub fn runbooks(&self, site: &Site, id: ServiceId) -> At<String> {
        self.runbooks
            .get(&id)
            .cloned()
            .unwrap_or_else(|| At { value: DEFAULT_RUNBOOKS.into(), loc: site.service(id).loc.clone() })
    }
    /// How a port of a service is scraped.
    pub fn scrape(&self, site: &Site, id: ServiceId, port: &str) -> Scrape {
        self.metrics
            .get(&(id, port.to_string()))
            .cloned()
            .unwrap_or_else(|| out_default(site, id, &site.service(id).loc))
    }
}

/// The metrics path of a kind that serves them elsewhere than `/metrics`.
fn default_path(kind: ServiceKind) -> &'static str {
    match kind {
        ServiceKind::Minio => "/minio/v2/metrics/cluster",
        _ => "/metrics",
    }
}

/// A duration between `min` and `max`.
fn bounded(min: Duration, max: Duration, what: &'static str) -> impl Fn(&str) -> Result<Duration, ValueError> {
    move |s| {
        let d = Duration::parse(s)?;
        if d < min || d > max {
            return Err(ValueError {
                code: "bad-value",
                message: format!("a {what} of {s} is out of range"),
                help: format!("use from {} to {} seconds", min.0, max.0),
            });
        }
        Ok(d)
    }
}

/// An alert name as Prometheus's convention writes them.
fn alert_name(s: &str) -> Result<String, ValueError> {
    let mut c = s.chars();
    if c.next().is_some_and(|f| f.is_ascii_uppercase()) && c.all(|x| x.is_ascii_alphanumeric()) {
        Ok(s.to_string())
    } else {
        Err(ValueError {
            code: "bad-value",
            message: format!("`{}` is not an alert name", crate::model::values::printable(s)),
            help: "write it in CamelCase letters and digits, starting with a capital: `QueueBacklog`".into(),
        })
    }
}

/// Text that Prometheus reads as a template or an expression, and that is only ever
/// written as a quoted YAML string: one line, printable, no credential, like any text,
/// but `{`, `}`, `$`, quotes and `|` are its syntax.
fn template_text(s: &str) -> Result<String, ValueError> {
    let plain: String =
        s.chars().map(|c| if crate::model::values::FORBIDDEN_CHARS.contains(&c) { 'x' } else { c }).collect();
    crate::model::values::text(&plain)?;
    if s.matches("{{").count() != s.matches("}}").count() {
        return Err(ValueError {
            code: "bad-value",
            message: "the template's `{{` and `}}` do not pair up".into(),
            help: "write each template action as `{{ ... }}`, e.g. `{{ $labels.host }}`".into(),
        });
    }
    Ok(s.to_string())
}

/// PromQL, checked by the parser Prometheus's grammar is ported to.
pub fn promql(s: &str) -> Result<String, ValueError> {
    template_text(s)?;
    match promql_parser::parser::parse(s) {
        Ok(_) => Ok(s.to_string()),
        Err(e) => Err(ValueError {
            code: "bad-value",
            message: format!("invalid PromQL: {}", e.lines().next().unwrap_or("parse error")),
            help: "check the expression in Prometheus's expression browser (`/graph`) or with `promtool query instant`"
                .into(),
        }),
    }
}

/// A metrics path.
fn path(s: &str) -> Result<String, ValueError> {
    if s.starts_with('/') && !s.chars().any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#') {
        Ok(s.to_string())
    } else {
        Err(ValueError {
            code: "bad-value",
            message: format!("`{}` is not a metrics path", crate::model::values::printable(s)),
            help: "write an absolute path without spaces or query, e.g. `/metrics`".into(),
        })
    }
}

/// Types Prometheus's keys of every file.
pub fn resolve(parts: &[Part], site: &Site, diags: &mut Diagnostics) -> Model {
    let files = parts_of::<PrometheusFile>(parts);
    let services: Vec<_> = files.iter().map(|(f, x)| (*f, &x.services)).collect();
    let mut out = Model::default();
    for (file, id, k) in service_keys(site, &services) {
        let svc = site.service(id);
        let mut cx = Cx::new(file, site, diags);
        if let Some(m) = &k.metrics {
            out.declared_targets.insert(id, cx.loc(m.first().map(|(n, _)| n.span()).unwrap_or(0..0)));
            for (port, raw) in m {
                if svc.port(port.get_ref()).is_none() {
                    let names: Vec<&str> = svc.ports.iter().map(|p| p.name.as_str()).collect();
                    let loc = cx.loc(port.span());
                    cx.bad(
                        loc,
                        ValueError {
                            code: "unknown-name",
                            message: format!(
                                "`{}` has no port `{}`",
                                svc.name,
                                crate::model::values::printable(port.get_ref())
                            ),
                            help: format!("name one of its ports: {}", names.join(", ")),
                        },
                    );
                    continue;
                }
                let loc = cx.loc(port.span());
                let path = raw.path.as_ref().and_then(|v| cx.value(v, path));
                let scheme = raw.scheme.as_ref().and_then(|v| cx.vocabulary(v, "scheme", SCHEMES));
                let dflt = out_default(site, id, &loc);
                out.metrics.insert(
                    (id, port.get_ref().clone()),
                    Scrape { path: path.unwrap_or(dflt.path), scheme: scheme.unwrap_or(dflt.scheme) },
                );
            }
        }
        let own = [
            ("retention", k.retention.as_ref().map(|v| v.span())),
            ("scrape_interval", k.scrape_interval.as_ref().map(|v| v.span())),
            ("runbooks", k.runbooks.as_ref().map(|v| v.span())),
            (
                "rules",
                k.rules
                    .as_ref()
                    .and_then(|r| r.first())
                    .and_then(|r| r.alert.as_ref().or(r.expr.as_ref()))
                    .map(|v| v.span()),
            ),
        ];
        if svc.declared.kind_known && svc.kind.value != ServiceKind::Prometheus {
            for (key, span) in own {
                if let Some(span) = span {
                    cx.not_for_kind(key, "prometheus", svc, span);
                }
            }
            continue;
        }
        if let Some(v) = k
            .retention
            .as_ref()
            .and_then(|v| cx.value(v, bounded(Duration(86400), Duration(10 * 365 * 86400), "retention")))
        {
            out.retention.insert(id, v);
        }
        if let Some(v) =
            k.scrape_interval.as_ref().and_then(|v| cx.value(v, bounded(Duration(5), Duration(300), "scrape interval")))
        {
            out.scrape_interval.insert(id, v);
        }
        if let Some(v) = k.runbooks.as_ref().and_then(|v| cx.value(v, crate::model::values::text)) {
            out.runbooks.insert(id, At { value: v.value.trim_end_matches('/').to_string(), loc: v.loc });
        }
        let mut rules = Vec::new();
        for r in k.rules.iter().flatten() {
            if let Some(rule) = custom_rule(&mut cx, id, r, svc) {
                rules.push(rule);
            }
        }
        if !rules.is_empty() {
            out.rules.insert(id, rules);
        }
    }
    out
}

/// The default scrape of a service, located at `loc`.
fn out_default(site: &Site, id: ServiceId, loc: &Loc) -> Scrape {
    Scrape {
        path: At { value: default_path(site.service(id).kind.value).into(), loc: loc.clone() },
        scheme: At { value: default_scheme(site.service(id).kind.value), loc: loc.clone() },
    }
}

/// The scheme of a kind that serves its metrics over HTTPS: MinIO serves TLS only.
fn default_scheme(kind: ServiceKind) -> &'static str {
    match kind {
        ServiceKind::Minio => "https",
        _ => "http",
    }
}

/// Types one site rule; `None` (reported) when a required key is missing or bad.
fn custom_rule(cx: &mut Cx, prom: ServiceId, r: &RawRule, svc: &crate::model::Service) -> Option<CustomRule> {
    let first = [&r.alert, &r.expr, &r.severity, &r.summary, &r.r#for, &r.service]
        .into_iter()
        .flatten()
        .map(|v| v.span())
        .min_by_key(|s| s.start);
    let loc = cx.loc(first.unwrap_or(0..0));
    let table = format!("services.{}.rules", svc.name);
    let alert = cx.required(&r.alert, &loc, "alert", &table).and_then(|v| cx.value(v, alert_name));
    let expr = cx.required(&r.expr, &loc, "expr", &table).and_then(|v| cx.value(v, promql));
    let severity =
        cx.required(&r.severity, &loc, "severity", &table).and_then(|v| cx.vocabulary(v, "severity", SEVERITIES));
    let summary = cx.required(&r.summary, &loc, "summary", &table).and_then(|v| cx.value(v, template_text));
    let for_ = match &r.r#for {
        Some(v) => cx.value(v, bounded(Duration(0), Duration(86400), "`for`"))?,
        None => At { value: Duration(300), loc: loc.clone() },
    };
    let service = match &r.service {
        Some(v) => {
            let i = cx.reference_str(crate::resolve::cx::RefTo::Service, v)?;
            At { value: ServiceId(i.value), loc: i.loc }
        }
        None => At { value: prom, loc: loc.clone() },
    };
    Some(CustomRule { alert: alert?, expr: expr?, for_, severity: severity?, summary: summary?, service, loc })
}

/// Reports two rules with one alert name (the site's own, or one of the baseline's).
pub fn duplicate_alert(diags: &mut Diagnostics, rule: &CustomRule, other: Option<&Loc>) {
    let mut d = Diagnostic::error(
        "duplicate-name",
        format!("alert `{}` is defined twice", rule.alert.value),
        rule.alert.loc.clone(),
    );
    d = match other {
        Some(o) => d.also(o.clone(), "first defined here"),
        None => d.label("the generated baseline already has an alert of this name"),
    };
    diags.push(d.help("give the alert another name"));
}
