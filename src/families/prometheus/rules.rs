//! The alert rules: a baseline generated from what the site runs, and the site's own.
//!
//! Each baseline rule exists because something it watches exists: a node exporter job
//! brings host down, disk, memory and the pull agent's health (its textfile metrics);
//! cAdvisor brings restarting containers; HAProxy its backends and 5xx ratio;
//! postgres_exporter the server, replication lag and WAL archiving; redis_exporter
//! Redis and its memory; each backup policy its age against the RPO. Thresholds come
//! from the site where it has them (the RPO, a policy's interval, the agent's interval,
//! the scrape interval), and every alert carries the labels Alertmanager routes and
//! groups by (`severity`, and `host`/`service` from the targets) and a `runbook_url`
//! to the page [`super::runbook`] writes for its service.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::keys::CustomRule;
use super::scrape::{Exporter, Job};
use crate::families::provenance::Src;
use crate::model::Site;
use crate::model::values::Duration;

/// One alerting or recording rule, as the rules file writes it.
#[derive(Debug, Clone, Serialize)]
pub struct Rule {
    /// Alert name (`None`: a recording rule).
    pub alert: Option<String>,
    /// Recorded series name (recording rules).
    pub record: Option<String>,
    /// PromQL.
    pub expr: Src<String>,
    /// `for` (alerts).
    pub for_: Option<String>,
    /// `severity` (alerts).
    pub severity: Option<String>,
    /// Extra fixed labels (alerts): the service a rule is about when its series do not say.
    pub labels: Vec<(String, String)>,
    /// One-line summary (alerts).
    pub summary: Option<String>,
    /// What it means and where to look first (alerts).
    pub description: Option<String>,
    /// The services whose runbook pages document it (its series' `service` label).
    pub services: Vec<String>,
    /// The full runbook URL (set by [`with_runbooks`]).
    pub runbook_url: Option<String>,
}

/// A group of rules (one per watched thing), as Prometheus evaluates them.
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    /// Group name.
    pub name: String,
    /// Its rules.
    pub rules: Vec<Rule>,
}

/// Builds alerts tersely.
struct Alert<'a> {
    services: &'a [String],
    expr: Src<String>,
}

impl Alert<'_> {
    fn rule(self, name: &str, for_: Duration, severity: &str, summary: &str, description: &str) -> Rule {
        Rule {
            alert: Some(name.into()),
            record: None,
            expr: self.expr,
            for_: Some(for_.to_string()),
            severity: Some(severity.into()),
            labels: Vec::new(),
            summary: Some(summary.into()),
            description: Some(description.into()),
            services: self.services.to_vec(),
            runbook_url: None,
        }
    }
}

/// A recording rule.
fn record(services: &[String], name: &str, expr: Src<String>) -> Rule {
    Rule {
        alert: None,
        record: Some(name.into()),
        expr,
        for_: None,
        severity: None,
        labels: Vec::new(),
        summary: None,
        description: None,
        services: services.to_vec(),
        runbook_url: None,
    }
}

/// Filesystems that are not disks.
const NOT_DISKS: &str = "tmpfs|ramfs|squashfs|overlay|nsfs|fuse.lxcfs";

/// The baseline rules for `jobs` (those of one Prometheus host), with `interval` the
/// scrape interval: no alert fires before three scrapes saw it.
pub fn baseline(site: &Site, jobs: &[Job], interval: Duration) -> Vec<Group> {
    let at_least = |d: u64| Duration(d.max(3 * interval.0));
    let mut by: BTreeMap<Exporter, Vec<&Job>> = BTreeMap::new();
    for j in jobs {
        by.entry(j.exporter).or_default().push(j);
    }
    let mut groups = Vec::new();
    for (exporter, js) in &by {
        let services: Vec<String> =
            js.iter().map(|j| site.service(j.service).name.clone()).collect::<BTreeSet<_>>().into_iter().collect();
        let s = services.as_slice();
        let job = selector(js);
        let locs = || js.iter().flat_map(|j| j.locs(site));
        let e = |expr: String| Alert { services: s, expr: Src::of(expr, "scrape job (a flow)", locs()) };
        let mut rules = Vec::new();
        let name = match exporter {
            Exporter::Node => {
                rules.push(e(format!("up{{{job}}} == 0")).rule(
                    "HostDown",
                    at_least(120),
                    "critical",
                    "{{ $labels.host }} is down: its node exporter does not answer",
                    "The host, its network or its node exporter is down. Check the hypervisor console, then `systemctl status prometheus-node-exporter` on the host. Its other alerts are held back while this one fires.",
                ));
                rules.push(e(format!(
                    "node_filesystem_avail_bytes{{{job},fstype!~\"{NOT_DISKS}\"}} / node_filesystem_size_bytes{{{job},fstype!~\"{NOT_DISKS}\"}} < 0.10"
                ))
                .rule(
                    "HostDiskFull",
                    at_least(900),
                    "warning",
                    "{{ $labels.host }}: {{ $labels.mountpoint }} has {{ $value | humanizePercentage }} free",
                    "Less than 10% of a filesystem is free. Find what grew with `du -xh --max-depth=2 <mountpoint> | sort -h`; container logs and images (`docker system df`) and the PostgreSQL WAL directory are the usual ones.",
                ));
                rules.push(e(format!(
                    "node_memory_MemAvailable_bytes{{{job}}} / node_memory_MemTotal_bytes{{{job}}} < 0.10"
                ))
                .rule(
                    "HostMemoryPressure",
                    at_least(600),
                    "warning",
                    "{{ $labels.host }} has {{ $value | humanizePercentage }} of its memory available",
                    "Less than 10% of memory is available for 10 minutes: the kernel will start killing processes. `ps aux --sort=-rss | head` on the host, and compare with the services' `resources.memory` in the site.",
                ));
                rules.extend(agent_rules(site, &job, s, locs));
                "hosts"
            }
            Exporter::Cadvisor => {
                rules.push(e(format!("changes(container_start_time_seconds{{{job},name!=\"\"}}[15m]) > 2")).rule(
                "ContainerRestarting",
                at_least(60),
                "warning",
                "container {{ $labels.name }} on {{ $labels.host }} restarted {{ $value }} times in 15 minutes",
                "A container keeps failing its health check or exiting. `docker logs --tail 100 <name>` on the host, and the health check's last results in `docker inspect <name>` (State.Health).",
                ));
                "containers"
            }
            Exporter::Haproxy => {
                rules.push(e(format!("haproxy_backend_active_servers{{{job}}} == 0")).rule(
                    "HaproxyBackendDown",
                    at_least(60),
                    "critical",
                    "HAProxy backend {{ $labels.proxy }} on {{ $labels.host }} has no server up",
                    "Every server of a backend fails its health check: the site is down for the paths it serves. Read the stats page (`/stats` on the stats port) and check the app-tier Nginx `/health` from the edge host.",
                ));
                let ratio = "proxy:haproxy_http_5xx:ratio_rate5m";
                rules.push(record(
                    s,
                    ratio,
                    Src::of(
                        format!(
                            "sum by (host, proxy) (rate(haproxy_backend_http_responses_total{{{job},code=\"5xx\"}}[5m])) / sum by (host, proxy) (rate(haproxy_backend_http_responses_total{{{job}}}[5m]))"
                        ),
                        "scrape job (a flow)",
                        locs(),
                    ),
                ));
                rules.push(e(format!("{ratio} > 0.05")).rule(
                    "HaproxyHigh5xxRatio",
                    at_least(600),
                    "warning",
                    "{{ $value | humanizePercentage }} of the responses of backend {{ $labels.proxy }} on {{ $labels.host }} are 5xx",
                    "More than 5% server errors for 10 minutes. Check the backend containers' logs and the PostgreSQL and Redis alerts.",
                ));
                "haproxy"
            }
            Exporter::Postgres => {
                rules.push(e(format!("pg_up{{{job}}} == 0")).rule(
                    "PostgresDown",
                    at_least(60),
                    "critical",
                    "PostgreSQL on {{ $labels.host }} does not answer its exporter",
                    "The server is down or refuses the exporter. `systemctl status postgresql@*` and the log under /var/log/postgresql on the host.",
                ));
                let rpo = site.recovery.rpo.value;
                rules.push(e(format!("pg_replication_lag_seconds{{{job}}} > 60 and pg_replication_is_replica{{{job}}} == 1")).rule(
                    "PostgresReplicationLag",
                    at_least(300),
                    "warning",
                    "the replica on {{ $labels.host }} is {{ $value | humanizeDuration }} behind its primary",
                    "The replica replays WAL more than a minute late. Check the primary's `pg_stat_replication` and the network between the database hosts.",
                ));
                rules.push(
                    Alert {
                        services: s,
                        expr: Src::of(
                            format!(
                                "pg_replication_lag_seconds{{{job}}} > {} and pg_replication_is_replica{{{job}}} == 1",
                                rpo.0
                            ),
                            "recovery point objective",
                            locs().chain([&site.recovery.rpo.loc]),
                        ),
                    }
                    .rule(
                        "PostgresReplicationLagBeyondRpo",
                        at_least(60),
                        "critical",
                        "the replica on {{ $labels.host }} is further behind than the recovery point objective",
                        "Failing over to this replica now would lose more data than the site's RPO allows. Do not promote it; find why it lags.",
                    ),
                );
                rules.push(e(format!("increase(pg_stat_archiver_failed_count{{{job}}}[15m]) > 0")).rule(
                    "PostgresWalArchivingFailing",
                    at_least(60),
                    "critical",
                    "WAL archiving fails on {{ $labels.host }}",
                    "`archive_command` fails: point-in-time recovery stops at the last archived segment and WAL piles up in pg_wal until the disk is full. The PostgreSQL log says why.",
                ));
                "postgres"
            }
            Exporter::Redis => {
                rules.push(e(format!("redis_up{{{job}}} == 0")).rule(
                    "RedisDown",
                    at_least(60),
                    "critical",
                    "Redis on {{ $labels.host }} does not answer its exporter",
                    "Sessions, rate limits and job queues are gone while Redis is down. `systemctl status redis-server` on the host; a missing /etc/redis/secrets.conf stops it from starting.",
                ));
                rules.push(
                    e(format!("redis_memory_used_bytes{{{job}}} / (redis_memory_max_bytes{{{job}}} > 0) > 0.90"))
                        .rule(
                            "RedisMemoryHigh",
                            at_least(300),
                            "warning",
                            "Redis on {{ $labels.host }} uses {{ $value | humanizePercentage }} of its maxmemory",
                            "At maxmemory, `noeviction` makes writes fail. Check queue lengths (`redis-cli llen`) and raise `maxmemory` with the service's memory.",
                        ),
                );
                "redis"
            }
            Exporter::Nginx | Exporter::Alertmanager | Exporter::Blackbox | Exporter::Other => continue,
        };
        groups.push(Group { name: name.into(), rules });
    }
    // Every target but the hosts' own exporters (HostDown covers those), in one rule.
    let others: Vec<&Job> = jobs.iter().filter(|j| j.exporter != Exporter::Node).collect();
    if !others.is_empty() {
        let services: Vec<String> =
            others.iter().map(|j| site.service(j.service).name.clone()).collect::<BTreeSet<_>>().into_iter().collect();
        let expr = Src::of(
            format!("up{{{}}} == 0", selector(&others)),
            "scrape job (a flow)",
            others.iter().flat_map(|j| j.locs(site)),
        );
        let rule = Alert { services: &services, expr }.rule(
            "TargetDown",
            at_least(300),
            "warning",
            "{{ $labels.service }} on {{ $labels.host }} does not answer Prometheus",
            "A scrape target is down or unreachable. If its host is down, HostDown fires and holds this back.",
        );
        groups.push(Group { name: "targets".into(), rules: vec![rule] });
    }
    let backups = backup_rules(site, jobs);
    if !backups.is_empty() {
        groups.push(Group { name: "backups".into(), rules: backups });
    }
    groups
}

/// The probes' rules: a public hostname that fails through an edge host, and its
/// certificate near expiry (warning two weeks ahead, critical three days ahead, when an
/// automatic renewal has evidently failed). They document the edge's runbook page.
pub fn probes(site: &Site, probes: &[super::probe::Probe], interval: Duration) -> Option<Group> {
    if probes.is_empty() {
        return None;
    }
    let names: Vec<String> = probes.iter().map(super::probe::job_name).collect::<BTreeSet<_>>().into_iter().collect();
    let services: Vec<String> = probes
        .iter()
        .flat_map(|p| p.targets.iter().map(|t| site.service(t.0).name.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let job = format!("job=~\"{}\"", names.join("|"));
    let locs: Vec<&crate::diag::Loc> = probes.iter().flat_map(|p| p.locs.iter()).collect();
    let e = |expr: String| Alert {
        services: &services,
        expr: Src::of(expr, "probe of an exposed hostname", locs.iter().copied()),
    };
    let at_least = |d: u64| Duration(d.max(3 * interval.0));
    let day = 86400;
    let rules = vec![
        e(format!("probe_success{{{job}}} == 0")).rule(
            "EndpointDown",
            at_least(300),
            "critical",
            "https://{{ $labels.hostname }}/ fails through {{ $labels.host }}",
            "The public hostname does not answer 2xx over HTTPS through this edge host: TLS, HAProxy, the app-tier Nginx or the application. `curl -v --resolve <hostname>:443:<edge address> https://<hostname>/` from the monitoring host shows where it stops.",
        ),
        e(format!("probe_ssl_earliest_cert_expiry{{{job}}} - time() < {}", 14 * day)).rule(
            "CertificateExpiring",
            at_least(3600),
            "warning",
            "the certificate of {{ $labels.hostname }} on {{ $labels.host }} expires in {{ $value | humanizeDuration }}",
            "Less than two weeks left: the renewal has not run or failed. Renew it, install the new chain at the certificate's file on every edge host, and reload HAProxy.",
        ),
        e(format!("probe_ssl_earliest_cert_expiry{{{job}}} - time() < {}", 3 * day)).rule(
            "CertificateExpiring",
            at_least(300),
            "critical",
            "the certificate of {{ $labels.hostname }} on {{ $labels.host }} expires in {{ $value | humanizeDuration }}",
            "Less than three days left: browsers will refuse the site when it expires. Renew it now.",
        ),
    ];
    Some(Group { name: "probes".into(), rules })
}

/// The label matcher of some jobs: `job="a"`, or `job=~"a|b"`.
fn selector(jobs: &[&Job]) -> String {
    match jobs {
        [one] => format!("job=\"{}\"", one.name),
        _ => format!("job=~\"{}\"", jobs.iter().map(|j| j.name.as_str()).collect::<Vec<_>>().join("|")),
    }
}

/// The pull agent's health, from the textfile metrics node exporter reads on each host.
fn agent_rules<'a, I: Iterator<Item = &'a crate::diag::Loc>>(
    site: &'a Site,
    job: &str,
    s: &[String],
    locs: impl Fn() -> I,
) -> Vec<Rule> {
    let Some(agent) = site.ext.get::<crate::families::delivery::keys::AgentSettings>() else { return Vec::new() };
    let stale = Duration(3 * agent.interval.0 + agent.splay.0);
    let locs = || locs().chain([&agent.loc]);
    vec![
        Alert {
            services: s,
            expr: Src::of(format!("medianest_pull_result{{{job}}} != 0"), "agent interval", locs()),
        }
        .rule(
            "AgentApplyFailing",
            Duration(2 * agent.interval.0),
            "warning",
            "the pull agent on {{ $labels.host }} fails (result {{ $value }})",
            "The last runs were refused (1), rolled back (3) or could not fetch (5). `journalctl -u medianest-pull` on the host and `/var/lib/medianest/last-run.json`.",
        ),
        Alert {
            services: s,
            expr: Src::of(
                format!("time() - medianest_pull_last_success_timestamp_seconds{{{job}}} > {}", stale.0),
                "agent interval",
                locs(),
            ),
        }
        .rule(
            "AgentStale",
            Duration(300),
            "warning",
            "{{ $labels.host }} has not applied a verified commit for three agent intervals",
            "The host runs an older commit than main, or its timer stopped: `systemctl list-timers medianest-pull.timer`.",
        ),
    ]
}

/// One rule per backup policy: its last success (a textfile metric the backup job
/// writes, `medianest_backup_last_success_timestamp_seconds{policy}`) older than what
/// the recovery point objective allows, or never reported. Only for the policies whose
/// service runs on a host this Prometheus scrapes the node exporter of: the metric
/// reaches no other, where "never reported" would fire for ever.
fn backup_rules(site: &Site, jobs: &[Job]) -> Vec<Rule> {
    let rpo = site.recovery.rpo.value;
    let scraped: BTreeSet<crate::model::HostId> =
        jobs.iter().filter(|j| j.exporter == Exporter::Node).flat_map(|j| j.targets.iter().map(|t| t.host)).collect();
    let mut out = Vec::new();
    for b in
        site.backups.iter().filter(|b| site.service(b.service.value).hosts.iter().any(|h| scraped.contains(&h.value)))
    {
        let svc = &site.service(b.service.value).name;
        let services = [svc.clone()];
        // Every host of the service may run the job (a standby skips it; after a failover
        // the promoted one runs it): the newest success of any host counts.
        // A continuous policy (WAL archiving) keeps the RPO with its archive, so its base
        // backup may be one interval old plus the RPO; any other policy's last copy is
        // all there is, so it may not be older than the RPO, nor than its interval.
        let limit = if b.continuous {
            Duration(b.every.value.0.saturating_add(rpo.0))
        } else {
            Duration(rpo.0.max(b.every.value.0))
        };
        let locs = [&b.loc, &b.every.loc, &site.recovery.rpo.loc];
        let metric = format!("medianest_backup_last_success_timestamp_seconds{{policy=\"{}\"}}", b.name);
        let mut old = Alert { services: &services, expr: Src::of(format!("time() - max by (policy) ({metric}) > {}", limit.0), "backup policy", locs) }.rule(
            "BackupTooOld",
            Duration(0),
            "critical",
            "the last backup of policy {{ $labels.policy }} is {{ $value | humanizeDuration }} old",
            "Restoring now would lose more data than the recovery point objective allows. Run the policy's job by hand and read its log.",
        );
        old.labels.push(("service".into(), svc.clone()));
        let mut never = Alert { services: &services, expr: Src::of(format!("absent({metric})"), "backup policy", locs) }.rule(
            "BackupNeverReported",
            Duration(limit.0),
            "warning",
            "no backup job of policy {{ $labels.policy }} has reported a success",
            "No host writes the policy's success metric: its job is not installed, never ran, or the node exporter cannot read the textfile directory.",
        );
        never.labels.push(("service".into(), svc.clone()));
        out.push(old);
        out.push(never);
    }
    out
}

/// The site's own rules, in one group.
pub fn custom(site: &Site, rules: &[CustomRule]) -> Option<Group> {
    if rules.is_empty() {
        return None;
    }
    let rules = rules
        .iter()
        .map(|r| Rule {
            alert: Some(r.alert.value.clone()),
            record: None,
            expr: Src::at(r.expr.value.clone(), "site rule", &r.expr.loc),
            for_: Some(r.for_.value.to_string()),
            severity: Some(r.severity.value.into()),
            labels: Vec::new(),
            summary: Some(r.summary.value.clone()),
            description: None,
            services: vec![site.service(r.service.value).name.clone()],
            runbook_url: None,
        })
        .collect();
    Some(Group { name: "site".into(), rules })
}

/// Sets every alert's `runbook_url`: `<prefix>/<service>.md#<alert, lower case>`, the
/// service read from the firing series' `service` label when the rule watches several.
pub fn with_runbooks(groups: &mut [Group], prefix: &str) {
    for r in groups.iter_mut().flat_map(|g| g.rules.iter_mut()) {
        if let Some(a) = &r.alert {
            let page = match r.services.as_slice() {
                [one] => one.clone(),
                _ => "{{ $labels.service }}".into(),
            };
            r.runbook_url = Some(format!("{prefix}/{page}.md#{}", a.to_lowercase()));
        }
    }
}

/// The names of the baseline's alerts, for the site's rules to avoid.
pub fn names(groups: &[Group]) -> impl Iterator<Item = &str> {
    groups.iter().flat_map(|g| g.rules.iter()).filter_map(|r| r.alert.as_deref())
}
