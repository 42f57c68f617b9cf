//! Family **alertmanager**: Alertmanager (Debian's `prometheus-alertmanager`) on every
//! host of an `alertmanager` service. Templates: `templates/alertmanager/`. Per host:
//!
//! - **`/etc/prometheus/alertmanager.yml`**: routes by severity, `critical` to PagerDuty
//!   (`pagerduty`, the routing key read from its secret file with `routing_key_file`) and
//!   `warning` to Slack (`slack`, the webhook URL read with `api_url_file`); without one
//!   of them its alerts go to the other. Alerts are grouped by alert, host and service;
//!   a host that is down holds back every other alert of that host, and a critical alert
//!   the warnings of the same service on the same host. Validated with `amtool
//!   check-config`, then a reload.
//! - **`/etc/default/prometheus-alertmanager`**: the listen address (where the flows to
//!   the `http` port arrive) and no cluster port: one instance gossips with nobody, so
//!   9094 is never opened. Read at start, so a change restarts the service.
//!
//! Secrets are never in these files: they name `/run/medianest/secrets/<service>/<name>`
//! ([`super::secret_file`]), where the secrets delivery puts them.

pub mod keys;

use std::any::Any;

use serde::Serialize;

use super::provenance::Src;
use super::{Family, Lowering, Part};
use crate::artifact::{ArtifactMeta, Validator};
use crate::diag::Diagnostics;
use crate::load::keys::KeySet;
use crate::model::facts::Fact;
use crate::model::{ServiceId, ServiceKind, Site};

/// The configuration file.
pub const CONF: &str = "/etc/prometheus/alertmanager.yml";
/// The unit's environment file.
pub const DEFAULTS: &str = "/etc/default/prometheus-alertmanager";
/// The unit.
pub const UNIT: &str = "prometheus-alertmanager.service";

/// Slack message title (Alertmanager's Go template).
const SLACK_TITLE: &str = "[{{ .Status | toUpper }}{{ if eq .Status \"firing\" }}:{{ .Alerts.Firing | len }}{{ end }}] {{ .CommonLabels.alertname }}";
/// Slack message text: one line per alert with its host and runbook.
const SLACK_TEXT: &str = "{{ range .Alerts }}*{{ .Labels.host }}* {{ .Annotations.summary }} <{{ .Annotations.runbook_url }}|runbook>\n{{ end }}";
/// PagerDuty incident title.
const PAGERDUTY_DESCRIPTION: &str =
    "{{ .CommonLabels.alertname }} on {{ .CommonLabels.host }}: {{ .CommonAnnotations.summary }}";

/// PagerDuty incident details: what the responder needs first.
const PAGERDUTY_DETAILS: &[(&str, &str)] = &[
    ("host", "{{ .CommonLabels.host }}"),
    ("service", "{{ .CommonLabels.service }}"),
    ("runbook", "{{ .CommonAnnotations.runbook_url }}"),
    ("firing", "{{ template \"pagerduty.default.instances\" .Alerts.Firing }}"),
];

/// The alertmanager family.
pub struct Alertmanager;

/// A receiver as `alertmanager.yml` writes it.
#[derive(Serialize)]
pub struct Receiver {
    /// Name: `pagerduty`, `slack` or `none`.
    pub name: &'static str,
    /// The secret file.
    pub file: Option<Src<String>>,
    /// PagerDuty endpoint.
    pub url: Option<Src<String>>,
    /// Slack channel.
    pub channel: Option<Src<String>>,
}

/// Context of `alertmanager/alertmanager.yml.j2`.
#[derive(Serialize)]
pub struct ConfContext {
    /// The host.
    pub host: Src<String>,
    /// The service.
    pub service: Src<String>,
    /// The receiver of everything not routed below.
    pub default: &'static str,
    /// The receiver of `critical` alerts.
    pub critical: &'static str,
    /// The receiver of `warning` alerts.
    pub warning: &'static str,
    /// Receivers.
    pub receivers: Vec<Receiver>,
    /// Go templates of the messages.
    pub slack_title: &'static str,
    /// Slack text.
    pub slack_text: &'static str,
    /// PagerDuty description.
    pub pagerduty_description: &'static str,
    /// PagerDuty details.
    pub pagerduty_details: &'static [(&'static str, &'static str)],
}

/// Context of `alertmanager/default.j2`.
#[derive(Serialize)]
pub struct DefaultsContext {
    /// The host.
    pub host: Src<String>,
    /// `--web.listen-address`.
    pub listen: Src<String>,
}

/// The alertmanager services this family configures.
fn services(site: &Site) -> impl Iterator<Item = ServiceId> + '_ {
    super::configured(site, ServiceKind::Alertmanager)
}

/// A service's receivers (none written: none).
fn receivers(site: &Site, id: ServiceId) -> keys::Receivers {
    site.ext.get::<keys::Model>().and_then(|m| m.receivers.get(&id).cloned()).unwrap_or_default()
}

/// Lowers one service.
fn lower_service(site: &Site, id: ServiceId, out: &mut Lowering) {
    let svc = site.service(id);
    let r = receivers(site, id);
    let file = |s: &crate::model::At<String>| {
        Src::at(super::secret_file(&svc.name, &s.value), "secret file (a receiver)", &s.loc)
    };
    let mut list = Vec::new();
    if let Some(p) = &r.pagerduty {
        list.push(Receiver {
            name: "pagerduty",
            file: Some(file(p)),
            url: Some(match &r.pagerduty_url {
                Some(u) => Src::at(u.value.clone(), "pagerduty_url", &u.loc),
                None => Src::at(keys::PAGERDUTY_URL.into(), "PagerDuty Events API v2 (default)", &p.loc),
            }),
            channel: None,
        });
    }
    if let Some(s) = &r.slack {
        list.push(Receiver {
            name: "slack",
            file: Some(file(s)),
            url: None,
            channel: r.slack_channel.as_ref().map(|c| Src::at(c.value.clone(), "slack_channel", &c.loc)),
        });
    }
    let (pd, sl) = (r.pagerduty.is_some(), r.slack.is_some());
    let fallback = if sl {
        "slack"
    } else if pd {
        "pagerduty"
    } else {
        "none"
    };
    if !pd && !sl {
        list.push(Receiver { name: "none", file: None, url: None, channel: None });
    }
    let port = super::service_port(site, id, "http").map(|(p, _)| p);
    for h in &svc.hosts {
        let host = site.host(h.value);
        if host.interfaces.is_empty() {
            continue;
        }
        let ctx = ConfContext {
            host: Src::at(host.name.clone(), "host", &host.loc),
            service: Src::at(svc.name.clone(), "service", &svc.loc),
            default: fallback,
            critical: if pd { "pagerduty" } else { fallback },
            warning: if sl { "slack" } else { fallback },
            receivers: list
                .iter()
                .map(|r| Receiver {
                    name: r.name,
                    file: r.file.clone(),
                    url: r.url.clone(),
                    channel: r.channel.clone(),
                })
                .collect(),
            slack_title: SLACK_TITLE,
            slack_text: SLACK_TEXT,
            pagerduty_description: PAGERDUTY_DESCRIPTION,
            pagerduty_details: PAGERDUTY_DETAILS,
        };
        let mut meta = ArtifactMeta::host_file("alertmanager", &host.name, CONF, 0o644, "root:root");
        if let Some(a) = meta.apply.as_mut() {
            a.validate = Some(Validator::Amtool);
            a.reload = Some(UNIT.into());
        }
        out.add("alertmanager/alertmanager.yml.j2", &ctx, meta, Some(svc.loc.clone()));
        let port =
            port.unwrap_or(crate::model::values::PortSpec { proto: crate::model::values::Proto::Tcp, port: 9093 });
        let listen = super::listen_one(site, h.value, port, &svc.loc);
        let mut meta = ArtifactMeta::host_file("alertmanager", &host.name, DEFAULTS, 0o644, "root:root");
        if let Some(a) = meta.apply.as_mut() {
            a.restart = Some(UNIT.into());
        }
        out.add(
            "alertmanager/default.j2",
            &DefaultsContext { host: Src::at(host.name.clone(), "host", &host.loc), listen },
            meta,
            Some(svc.loc.clone()),
        );
    }
}

impl Family for Alertmanager {
    fn name(&self) -> &'static str {
        "alertmanager"
    }

    fn keys(&self) -> Option<KeySet> {
        Some(KeySet::of::<keys::AlertmanagerFile>())
    }

    fn resolve(&self, parts: &[Part], site: &Site, diags: &mut Diagnostics) -> Option<Box<dyn Any + Send + Sync>> {
        Some(Box::new(keys::resolve(parts, site, diags)))
    }

    fn lower(&self, site: &Site, out: &mut Lowering) {
        for id in services(site).collect::<Vec<_>>() {
            lower_service(site, id, out);
        }
    }

    fn facts(&self, site: &Site) -> Vec<Fact> {
        let mut v = Vec::new();
        for id in services(site) {
            let r = receivers(site, id);
            let subject = site.service(id).name.clone();
            let fact = |field: &'static str, value: String| Fact {
                category: "service",
                subject: subject.clone(),
                field,
                value: value.into(),
            };
            let pd = r.pagerduty.as_ref().map(|p| p.value.clone());
            let sl = r.slack.as_ref().map(|s| s.value.clone());
            v.push(fact(
                "critical alerts to",
                pd.as_ref()
                    .map(|p| format!("PagerDuty ({p})"))
                    .or(sl.as_ref().map(|s| format!("Slack ({s})")))
                    .unwrap_or_else(|| "nobody".into()),
            ));
            v.push(fact(
                "warning alerts to",
                sl.map(|s| format!("Slack ({s})"))
                    .or(pd.map(|p| format!("PagerDuty ({p})")))
                    .unwrap_or_else(|| "nobody".into()),
            ));
            if let Some(c) = &r.slack_channel {
                v.push(fact("slack_channel", c.value.clone()));
            }
            if let Some(u) = &r.pagerduty_url {
                v.push(fact("pagerduty_url", u.value.clone()));
            }
        }
        v
    }

    fn verify(&self, site: &Site, diags: &mut Diagnostics) {
        for id in services(site) {
            let r = receivers(site, id);
            let svc = site.service(id);
            if !r.written {
                diags.push(
                    crate::diag::Diagnostic::error(
                        "bad-value",
                        format!("`{}` has no receiver: every alert would be dropped", svc.name),
                        svc.loc.clone(),
                    )
                    .warning()
                    .help("name the secret of a receiver: `pagerduty = \"<secret>\"` or `slack = \"<secret>\"`"),
                );
            }
        }
    }
}
