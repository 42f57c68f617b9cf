//! Alertmanager's own keys on `[services.<name>]`: its receivers, each a secret file.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::diag::Diagnostics;
use crate::families::{Part, parts_of, service_keys};
use crate::load::schema::{Named, Str};
use crate::model::values::ValueError;
use crate::model::{At, ServiceId, ServiceKind, Site};
use crate::resolve::cx::Cx;

crate::keys! {
    /// Alertmanager's keys in one site file.
    #[derive(Debug, Default, Deserialize)]
    pub struct AlertmanagerFile {
        /// Alertmanager's keys on services.
        #[serde(default)]
        pub services: Named<AlertmanagerService>,
    }
}

crate::keys! {
    /// Alertmanager's keys of `[services.<name>]` (`kind = "alertmanager"` only).
    #[derive(Debug, Deserialize)]
    pub struct AlertmanagerService {
        /// The secret holding the PagerDuty Events API v2 routing key (one of the service's `secrets`): `critical` alerts page through it. Read from its file (`routing_key_file`), never written in a generated file.
        pub pagerduty: Option<Str>,
        /// Where PagerDuty events go (default `https://events.pagerduty.com/v2/enqueue`; the EU service region is `https://events.eu.pagerduty.com/v2/enqueue`).
        pub pagerduty_url: Option<Str>,
        /// The secret holding the Slack incoming-webhook URL (one of the service's `secrets`): `warning` alerts, and `critical` ones when there is no PagerDuty, are posted there. Read from its file (`api_url_file`).
        pub slack: Option<Str>,
        /// The Slack channel, `#` and a name (default: the webhook's own channel).
        pub slack_channel: Option<Str>,
    }
}

/// PagerDuty's Events API v2.
pub const PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// A receiver's secret, where it is named.
#[derive(Debug, Clone, Default)]
pub struct Receivers {
    /// PagerDuty routing key secret.
    pub pagerduty: Option<At<String>>,
    /// PagerDuty endpoint.
    pub pagerduty_url: Option<At<String>>,
    /// Slack webhook URL secret.
    pub slack: Option<At<String>>,
    /// Slack channel.
    pub slack_channel: Option<At<String>>,
    /// A receiver was written (even if its secret failed to resolve).
    pub written: bool,
}

/// The alertmanager family's model.
#[derive(Debug, Default)]
pub struct Model {
    /// By service.
    pub receivers: BTreeMap<ServiceId, Receivers>,
}

/// An `http(s)` URL.
fn url(s: &str) -> Result<String, ValueError> {
    let rest = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://"));
    match rest {
        Some(r) if !r.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control() || c == '"') => Ok(s.into()),
        _ => Err(ValueError {
            code: "bad-value",
            message: format!("`{}` is not an http(s) URL", crate::model::values::printable(s)),
            help: format!("write the full URL, e.g. `{PAGERDUTY_URL}`"),
        }),
    }
}

/// A Slack channel name.
fn channel(s: &str) -> Result<String, ValueError> {
    let name = s.strip_prefix('#').unwrap_or("");
    if !name.is_empty()
        && name.len() <= 80
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_".contains(c))
    {
        Ok(s.into())
    } else {
        Err(ValueError {
            code: "bad-value",
            message: format!("`{}` is not a Slack channel", crate::model::values::printable(s)),
            help: "write `#` and the channel's name in lower case, e.g. `#homelab-alerts`".into(),
        })
    }
}

/// Types Alertmanager's keys of every file.
pub fn resolve(parts: &[Part], site: &Site, diags: &mut Diagnostics) -> Model {
    let files = parts_of::<AlertmanagerFile>(parts);
    let services: Vec<_> = files.iter().map(|(f, x)| (*f, &x.services)).collect();
    let mut out = Model::default();
    for (file, id, k) in service_keys(site, &services) {
        let svc = site.service(id);
        let mut cx = Cx::new(file, site, diags);
        if svc.declared.kind_known && svc.kind.value != ServiceKind::Alertmanager {
            let spans = [
                ("pagerduty", k.pagerduty.as_ref().map(|v| v.span())),
                ("pagerduty_url", k.pagerduty_url.as_ref().map(|v| v.span())),
                ("slack", k.slack.as_ref().map(|v| v.span())),
                ("slack_channel", k.slack_channel.as_ref().map(|v| v.span())),
            ];
            for (key, span) in spans.into_iter().filter_map(|(k, s)| s.map(|s| (k, s))) {
                cx.not_for_kind(key, "alertmanager", svc, span);
            }
            continue;
        }
        let mut secret = |v: &Str, key: &str| -> Option<At<String>> {
            let loc = cx.loc(v.span());
            if svc.secrets.iter().any(|s| s.value == *v.get_ref()) {
                return Some(At { value: v.get_ref().clone(), loc });
            }
            let listed: Vec<String> = svc.secrets.iter().map(|s| format!("`{}`", s.value)).collect();
            let name = crate::model::values::printable(v.get_ref());
            cx.bad(
                loc,
                ValueError {
                    code: "unknown-name",
                    message: format!(
                        "`{key}` names the secret `{name}`, which `{}` does not list in `secrets`",
                        svc.name
                    ),
                    help: if listed.is_empty() {
                        format!("add it to the service: `secrets = [\"{name}\"]`")
                    } else {
                        format!("name one of {}, or add it to `secrets`", listed.join(", "))
                    },
                },
            );
            None
        };
        let pagerduty = k.pagerduty.as_ref().and_then(|v| secret(v, "pagerduty"));
        let slack = k.slack.as_ref().and_then(|v| secret(v, "slack"));
        let r = Receivers {
            written: k.pagerduty.is_some() || k.slack.is_some(),
            pagerduty,
            slack,
            pagerduty_url: k.pagerduty_url.as_ref().and_then(|v| cx.value(v, url)),
            slack_channel: k.slack_channel.as_ref().and_then(|v| cx.value(v, channel)),
        };
        out.receivers.insert(id, r);
    }
    out
}
