//! The prometheus and alertmanager families against their real tools (Debian 12's
//! `prometheus` 2.42 and `prometheus-alertmanager` 0.25, `VALIDATORS.md` §4).
//!
//! - The reference site's files pass `promtool check config`, `promtool check rules
//!   --lint-fatal` and `amtool check-config`; a broken copy of each fails.
//! - `promtool test rules`: the key alerts fire, and stay silent when they should (host
//!   down, replication lag beyond the RPO, backup older than the RPO, agent stale,
//!   HAProxy backend down), with the labels and annotations the generated rules give.
//! - `amtool config routes test`: critical → PagerDuty, warning → Slack.
//! - Every scrape target of the reference site is a grant of the flow plan.
//! - End to end, in a private network and mount namespace: Prometheus and Alertmanager
//!   start from the generated configs of `fixtures/monitoring-loopback`; the node
//!   exporter the test serves stops; the alert fires and reaches the webhook standing in
//!   for PagerDuty, and the payload names the host and the runbook URL. The same
//!   Prometheus accepts every PromQL expression of the reference site's rules (query API).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use medianest::model::flows::{Peer, arrival};
use medianest::model::values::{PortSpec, Proto};
use medianest::model::{HostId, ServiceKind};
use medianest::ops::{Paths, compile};
use serde_json::Value;

use crate::support::*;

/// The reference site's Prometheus/Alertmanager tree (`etc/prometheus` of mon1).
fn reference_etc() -> PathBuf {
    repo_root().join("generated/hosts/mon1/root/etc/prometheus")
}

fn run(cmd: &mut Command) -> (bool, String) {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    (o.status.success(), format!("{}{}", stdout(&o), stderr(&o)))
}

/// A copy of the reference tree to break.
fn scratch_copy() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    copy_tree(&reference_etc(), d.path());
    d
}

#[test]
fn reference_configs_pass_promtool_and_amtool_and_broken_copies_fail() {
    let etc = reference_etc();
    let (ok, out) = run(Command::new("promtool").args(["check", "config"]).arg(etc.join("prometheus.yml")));
    assert!(ok && out.contains("1 rule files found"), "{out}");
    let (ok, out) =
        run(Command::new("promtool").args(["check", "rules", "--lint-fatal"]).arg(etc.join("rules/medianest.yml")));
    assert!(ok, "{out}");
    let rules: usize =
        out.split("SUCCESS: ").nth(1).and_then(|s| s.split(' ').next()).and_then(|n| n.parse().ok()).unwrap();
    assert!(rules >= 20, "the baseline has its rules: {out}");
    let (ok, out) = run(Command::new("amtool").arg("check-config").arg(etc.join("alertmanager.yml")));
    assert!(ok && out.contains("2 receivers"), "{out}");
    let bb = |file: &std::path::Path| {
        run(Command::new("prometheus-blackbox-exporter")
            .arg("--config.check")
            .arg(format!("--config.file={}", file.display())))
    };
    let (ok, out) = bb(&etc.join("blackbox.yml"));
    assert!(ok && out.contains("Config file is ok"), "{out}");

    // Each tool can fail: a rule with bad PromQL, a job twice, an undefined receiver.
    let d = scratch_copy();
    let rules = d.path().join("rules/medianest.yml");
    let text = std::fs::read_to_string(&rules).unwrap().replacen("== 0", "== = 0", 1);
    std::fs::write(&rules, text).unwrap();
    let (ok, out) = run(Command::new("promtool").args(["check", "config"]).arg(d.path().join("prometheus.yml")));
    assert!(!ok && out.contains("parse error"), "a bad rule fails the config check: {out}");
    let d = scratch_copy();
    let conf = d.path().join("prometheus.yml");
    let text = std::fs::read_to_string(&conf).unwrap().replace("job_name: \"cadvisor\"", "job_name: \"alertmanager\"");
    std::fs::write(&conf, text).unwrap();
    let (ok, out) = run(Command::new("promtool").args(["check", "config"]).arg(&conf));
    assert!(!ok && out.contains("found multiple scrape configs"), "{out}");
    let am = d.path().join("alertmanager.yml");
    let text = std::fs::read_to_string(&am).unwrap().replace("receiver: \"slack\"", "receiver: \"slak\"");
    std::fs::write(&am, text).unwrap();
    let (ok, out) = run(Command::new("amtool").arg("check-config").arg(&am));
    assert!(!ok && out.contains("undefined receiver"), "{out}");
    let text = std::fs::read_to_string(d.path().join("blackbox.yml")).unwrap().replace("timeout: 10s", "timeout: soon");
    std::fs::write(d.path().join("blackbox.yml"), text).unwrap();
    let (ok, out) = bb(&d.path().join("blackbox.yml"));
    assert!(!ok && out.contains("soon"), "{out}");
}

#[test]
fn critical_alerts_page_and_warnings_go_to_slack() {
    let am = reference_etc().join("alertmanager.yml");
    let route = |receiver: &str, labels: &[&str]| {
        run(Command::new("amtool")
            .args(["config", "routes", "test", "--config.file"])
            .arg(&am)
            .arg(format!("--verify.receivers={receiver}"))
            .args(labels))
    };
    for (receiver, labels) in [
        ("pagerduty", &["severity=critical", "alertname=HostDown", "host=db1"][..]),
        ("pagerduty", &["severity=critical", "alertname=BackupTooOld", "service=postgres"]),
        ("slack", &["severity=warning", "alertname=HostDiskFull", "host=app1"]),
        ("slack", &["alertname=Unlabelled"]),
    ] {
        let (ok, out) = route(receiver, labels);
        assert!(ok, "{labels:?} → {receiver}: {out}");
    }
    let (ok, out) = route("slack", &["severity=critical", "alertname=HostDown"]);
    assert!(!ok, "a critical alert does not go to Slack alone: {out}");
}

#[test]
fn every_scrape_target_is_a_grant_of_the_flow_plan() {
    let c = compile(&Paths::under(&repo_root()));
    assert!(!c.failed(), "{}", c.diags.render_plain(&c.sources));
    let site = &c.site;
    let text = String::from_utf8(c.artifacts["hosts/mon1/root/etc/prometheus/prometheus.yml"].bytes.clone()).unwrap();
    let conf: Value = serde_saphyr::from_str(&text).unwrap();
    let mon1 = HostId(site.hosts.iter().position(|h| h.name == "mon1").unwrap());
    let plan = site.flow_plan();
    let mut checked = 0;
    let mut probes = 0;
    for job in conf["scrape_configs"].as_array().unwrap() {
        for sc in job["static_configs"].as_array().unwrap() {
            let host = sc["labels"]["host"].as_str().unwrap();
            let h = HostId(site.hosts.iter().position(|x| x.name == host).unwrap());
            if job["params"]["module"].is_array() {
                // A probe: the blackbox exporter (on mon1) fetches the URL over HTTPS.
                let https = PortSpec { proto: Proto::Tcp, port: 443 };
                assert!(plan.allows(site, Some(mon1), Some(h), https), "{job} probes {host} without a flow");
                probes += 1;
                continue;
            }
            for t in sc["targets"].as_array().unwrap() {
                let (addr, port) = t.as_str().unwrap().rsplit_once(':').unwrap();
                let port = PortSpec { proto: Proto::Tcp, port: port.parse().unwrap() };
                assert!(plan.allows(site, Some(mon1), Some(h), port), "{job} scrapes {host} {port} without a flow");
                let i = arrival(site, h, Peer::Host(mon1));
                assert_eq!(
                    site.host(h).interfaces[i].address.value.to_string(),
                    addr,
                    "{host}: where the scrape arrives"
                );
                checked += 1;
            }
        }
    }
    // And the other way: every service that a flow from Prometheus reaches is scraped.
    let prom = site.services.iter().position(|s| s.kind.value == ServiceKind::Prometheus).unwrap();
    let reached: usize = site
        .flows
        .iter()
        .filter(|f| f.from.value == medianest::model::Endpoint::Service(medianest::model::ServiceId(prom)))
        .map(|f| match f.to.value {
            medianest::model::Endpoint::Service(s) => site.service(s).hosts.len() * f.ports.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(checked, reached + 1, "every target of every flow from Prometheus, and Prometheus itself");
    assert_eq!(probes, 2, "media.example.org through edge1 and edge2");
    eprintln!("scrape targets checked against the flow plan: {checked}, and {probes} probes");
}

/// The generated rules, parsed: alert name → (labels, annotations) of its first rule
/// whose expression contains `hint`.
fn rule(rules: &Value, alert: &str, hint: &str) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let map = |v: &Value| -> BTreeMap<String, String> {
        v.as_object()
            .map(|o| o.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())).collect())
            .unwrap_or_default()
    };
    for g in rules["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            if r["alert"] == alert && r["expr"].as_str().unwrap().contains(hint) {
                return (map(&r["labels"]), map(&r["annotations"]));
            }
        }
    }
    panic!("no rule {alert} with {hint}");
}

/// Expands `{{ $labels.x }}` and a given `{{ $value ... }}` as Prometheus would.
fn expand(s: &str, labels: &BTreeMap<String, String>, value: &str) -> String {
    let mut out = s.to_string();
    for (k, v) in labels {
        out = out.replace(&format!("{{{{ $labels.{k} }}}}"), v);
    }
    while let Some(i) = out.find("{{ $value") {
        let j = out[i..].find("}}").unwrap() + i + 2;
        out.replace_range(i..j, value);
    }
    out
}

/// One `alert_rule_test` entry that expects the alert with `labels` (plus the rule's own).
fn expect(rules: &Value, alert: &str, hint: &str, at: &str, series: &[(&str, &str)], value: &str) -> Value {
    let (rule_labels, annotations) = rule(rules, alert, hint);
    let mut labels: BTreeMap<String, String> = series.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    labels.extend(rule_labels);
    let ann: BTreeMap<String, String> =
        annotations.iter().map(|(k, v)| (k.clone(), expand(v, &labels, value))).collect();
    serde_json::json!({"eval_time": at, "alertname": alert, "exp_alerts": [{"exp_labels": labels, "exp_annotations": ann}]})
}

fn silent(alert: &str, at: &str) -> Value {
    serde_json::json!({"eval_time": at, "alertname": alert, "exp_alerts": []})
}

fn series(name: &str, labels: &[(&str, &str)], values: &str) -> Value {
    let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    serde_json::json!({"series": format!("{name}{{{}}}", l.join(", ")), "values": values})
}

#[test]
fn promtool_unit_tests_prove_the_key_alerts_fire_and_stay_silent() {
    let etc = reference_etc();
    let text = std::fs::read_to_string(etc.join("rules/medianest.yml")).unwrap();
    let rules: Value = serde_saphyr::from_str(&text).unwrap();
    let node = [
        ("job", "node-exporter"),
        ("instance", "10.0.3.10:9100"),
        ("host", "db1"),
        ("zone", "database"),
        ("service", "node-exporter"),
    ];
    let pg = [
        ("job", "postgres-exporter"),
        ("instance", "10.0.3.11:9187"),
        ("host", "db2"),
        ("zone", "database"),
        ("service", "postgres-exporter"),
    ];
    let hap = [
        ("job", "haproxy"),
        ("instance", "10.0.6.10:8404"),
        ("host", "edge1"),
        ("zone", "dmz"),
        ("service", "haproxy"),
        ("proxy", "app"),
    ];
    let probe = [
        ("job", "probe-media.example.org"),
        ("instance", "https://10.0.6.10/"),
        ("host", "edge1"),
        ("zone", "dmz"),
        ("service", "haproxy"),
        ("hostname", "media.example.org"),
    ];
    let policy =
        [("job", "node-exporter"), ("instance", "10.0.3.10:9100"), ("host", "db1"), ("policy", "postgres-pitr")];
    let standby =
        [("job", "node-exporter"), ("instance", "10.0.3.11:9100"), ("host", "db2"), ("policy", "postgres-pitr")];
    let tests = serde_json::json!({
        "rule_files": ["rules/medianest.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "30s",
                "input_series": [
                    series("up", &node, "1 1 1 1 0x20"),
                    series("medianest_pull_last_success_timestamp_seconds", &node, "0x120"),
                    series("medianest_pull_result", &node, "0x120"),
                ],
                "alert_rule_test": [
                    silent("HostDown", "2m"),
                    silent("HostDown", "3m"),
                    expect(&rules, "HostDown", "up{", "5m", &node, ""),
                    silent("AgentStale", "10m"),
                    expect(&rules, "AgentStale", "medianest_pull", "60m", &node, ""),
                    silent("AgentApplyFailing", "60m"),
                ],
            },
            {
                "interval": "30s",
                "input_series": [
                    series("pg_replication_lag_seconds", &pg, "0+30x20 600+100x40"),
                    series("pg_replication_is_replica", &pg, "1x60"),
                    series("pg_up", &pg, "1x60"),
                ],
                "alert_rule_test": [
                    silent("PostgresReplicationLagBeyondRpo", "5m"),
                    expect(&rules, "PostgresReplicationLagBeyondRpo", "pg_replication_lag_seconds", "29m", &pg, ""),
                    silent("PostgresDown", "29m"),
                ],
            },
            {
                "interval": "1m",
                "input_series": [
                    series("haproxy_backend_active_servers", &hap, "2 2 1 0 0 0 0"),
                ],
                "alert_rule_test": [
                    silent("HaproxyBackendDown", "3m"),
                    expect(&rules, "HaproxyBackendDown", "haproxy_backend_active_servers", "6m", &hap, ""),
                ],
            },
            {
                // A certificate that expires 16 days after the test's clock starts: 14
                // days ahead from day 2 on.
                "interval": "5m",
                "input_series": [
                    series("probe_ssl_earliest_cert_expiry", &probe, &format!("{}x900", 16 * 86400)),
                    series("probe_success", &probe, "1x480 0x420"),
                ],
                "alert_rule_test": [
                    silent("CertificateExpiring", "1d"),
                    expect(&rules, "CertificateExpiring", &format!("< {}", 14 * 86400), "3d", &probe, "13d 0h 0m 0s"),
                    silent("EndpointDown", "40h"),
                    expect(&rules, "EndpointDown", "probe_success", "50h", &probe, ""),
                ],
            },
            {
                // The policy's last success at t=0; its limit is its interval plus the
                // RPO (continuous WAL archiving): 1d + 1h.
                "interval": "5m",
                // A standby (db2) that skips the job but reported once, long ago, does
                // not make it fire earlier: the newest success of any host counts.
                "input_series": [
                    series("medianest_backup_last_success_timestamp_seconds", &policy, "0x400"),
                    series("medianest_backup_last_success_timestamp_seconds", &standby, "-86400x400"),
                ],
                "alert_rule_test": [
                    silent("BackupTooOld", "24h"),
                    expect(&rules, "BackupTooOld", "postgres-pitr", "25h10m", &[("policy", "postgres-pitr")], "1d 1h 10m 0s"),
                ],
            },
        ],
    });
    let d = tempfile::tempdir().unwrap();
    copy_tree(&etc, d.path());
    let file = d.path().join("rules_test.yml");
    std::fs::write(&file, serde_json::to_string_pretty(&tests).unwrap()).unwrap();
    let (ok, out) = run(Command::new("promtool").args(["test", "rules"]).arg(&file));
    assert!(ok, "{out}");
    // And the test can fail: a wrong expectation is a FAILED diff.
    let broken = serde_json::to_string_pretty(&tests).unwrap().replacen("\"5m\"", "\"2m30s\"", 1);
    std::fs::write(&file, broken).unwrap();
    let (ok, out) = run(Command::new("promtool").args(["test", "rules"]).arg(&file));
    assert!(!ok && out.contains("FAILED"), "{out}");
}

/// The end-to-end script (`$1`: the loopback site's generated/, `$2`: scratch, `$3`: a
/// file of PromQL expressions, one per line). Prints `key=value` lines.
const E2E: &str = r#"
G=$1 T=$2 Q=$3
ip link set lo up
# The secrets, as the secrets delivery would put them (a private /run).
mount -t tmpfs medianest-test /run
mkdir -p /run/medianest/secrets/am
printf 'test-routing-key' > /run/medianest/secrets/am/pd_key
printf 'http://127.0.0.2:18080/slack' > /run/medianest/secrets/am/slack_url
mkdir -p "$T/etc" "$T/hook" "$T/web"
cp -R "$G/hosts/mon1/root/etc/prometheus/." "$T/etc/"
printf 'up 1\n' > "$T/web/metrics"
PIDS=""
trap 'kill $PIDS 2>/dev/null || true' EXIT
# The receiver standing in for PagerDuty and Slack: every POST body into a file.
python3 - "$T/hook" <<'PY' > "$T/hook.log" 2>&1 &
import http.server, sys, os, itertools
out = sys.argv[1]; n = itertools.count()
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get('Content-Length', 0)))
        name = os.path.join(out, f"{next(n):03d}{self.path.replace('/', '_')}.json")
        open(name + '.part', 'wb').write(body); os.rename(name + '.part', name)
        self.send_response(200); self.end_headers(); self.wfile.write(b'{}')
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(('127.0.0.2', 18080), H).serve_forever()
PY
PIDS="$PIDS $!"
# web1's node exporter: a static /metrics.
(cd "$T/web" && exec python3 -m http.server --bind 127.0.0.3 19100) > "$T/web.log" 2>&1 &
WEB=$!
PIDS="$PIDS $WEB"
# Each server with the options of its generated /etc/default file.
eval "$(sed -n 's/^ARGS=/PROM_ARGS=/p' "$G/hosts/mon1/root/etc/default/prometheus")"
eval "$(sed -n 's/^ARGS=/AM_ARGS=/p' "$G/hosts/mon1/root/etc/default/prometheus-alertmanager")"
# shellcheck disable=SC2086
prometheus-alertmanager --config.file="$T/etc/alertmanager.yml" --storage.path="$T/am" $AM_ARGS > "$T/am.log" 2>&1 &
PIDS="$PIDS $!"
# shellcheck disable=SC2086
prometheus --config.file="$T/etc/prometheus.yml" --storage.tsdb.path="$T/data" $PROM_ARGS > "$T/prom.log" 2>&1 &
PIDS="$PIDS $!"
P=http://127.0.0.2:19090
wait_for() { i=0; until eval "$1"; do i=$((i+1)); [ $i -lt "$2" ] || { echo "timeout: $1" >&2; cat "$T/prom.log" "$T/am.log" >&2; exit 1; }; sleep 0.5; done; }
wait_for 'curl -fs $P/-/ready > /dev/null && curl -fs http://127.0.0.2:19093/-/ready > /dev/null' 60
wait_for 'curl -fs "$P/api/v1/query?query=up%7Bjob%3D%22node%22%7D%3D%3D1" | grep -q "\"value\""' 60
echo "listening=$(ss -Hltn | awk '{print $4}' | grep -E ':(19090|19093|19094)$' | sort | tr '\n' ' ')"
# Every expression the reference site's rules hold, through the query API.
bad=0
while IFS= read -r e; do
  r=$(curl -s "$P/api/v1/query" --data-urlencode "query=$e")
  case $r in *'"status":"success"'*) ;; *) bad=$((bad+1)); echo "rejected: $e -> $r" >&2;; esac
done < "$Q"
echo "queries=$(wc -l < "$Q") rejected=$bad"
# The target stops; the alert must reach the PagerDuty stand-in.
START=$(date +%s)
kill $WEB
wait_for 'ls "$T/hook" | grep -q "pagerduty.json$"' 180
echo "delivered_after=$(( $(date +%s) - START ))"
echo "firing=$(curl -s "$P/api/v1/alerts" | grep -o '"alertname":"[A-Za-z]*"' | sort -u | tr '\n' ' ')"
f=$(ls "$T/hook" | grep "pagerduty.json$" | head -1)
printf "payload=%s\n" "$(tr -d "\n" < "$T/hook/$f")"
"#;

/// The reference site's Grafana dashboards, by file name.
fn dashboards() -> BTreeMap<String, Value> {
    let dir = repo_root().join("generated/hosts/mon1/root/etc/medianest/grafana/dashboards");
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            (p.file_name().unwrap().to_string_lossy().into_owned(), v)
        })
        .collect()
}

#[test]
fn grafana_is_provisioned_with_the_prometheus_a_flow_reaches_and_well_formed_dashboards() {
    let prov = repo_root().join("generated/hosts/mon1/root/etc/medianest/grafana/provisioning");
    let ds: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(prov.join("datasources/medianest.yaml")).unwrap()).unwrap();
    assert_eq!(ds["apiVersion"], 1);
    let sources = ds["datasources"].as_array().unwrap();
    assert_eq!(sources.len(), 1, "{ds}");
    assert_eq!(sources[0]["type"], "prometheus");
    assert_eq!(sources[0]["url"], "http://10.0.5.10:9090", "the address grafana → prometheus arrives at");
    assert_eq!(sources[0]["isDefault"], true);
    let uid = sources[0]["uid"].as_str().unwrap();
    let provider: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(prov.join("dashboards/medianest.yaml")).unwrap()).unwrap();
    assert_eq!(provider["providers"][0]["type"], "file");
    assert_eq!(provider["providers"][0]["allowUiUpdates"], false);
    // The dashboards: the structure Grafana's provisioning reads (uid, title, panels with
    // unique ids, a grid position and Prometheus targets on the provisioned data source).
    let boards = dashboards();
    let names: Vec<&str> = boards.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["medianest-data.json", "medianest-edge.json", "medianest-fleet.json", "medianest-services.json"]
    );
    let mut uids = std::collections::BTreeSet::new();
    let mut queries = 0;
    for (file, d) in &boards {
        assert!(uids.insert(d["uid"].as_str().unwrap().to_string()), "{file}: uid repeated");
        assert_eq!(format!("{}.json", d["uid"].as_str().unwrap()), *file);
        assert!(d["title"].as_str().unwrap().starts_with("MediaNest / "), "{file}");
        assert!(d["schemaVersion"].as_u64().unwrap() >= 36, "{file}");
        let panels = d["panels"].as_array().unwrap();
        assert!(!panels.is_empty(), "{file}");
        let mut ids = std::collections::BTreeSet::new();
        for p in panels {
            assert!(ids.insert(p["id"].as_u64().unwrap()), "{file}: panel id repeated");
            assert!(["timeseries", "stat", "table"].contains(&p["type"].as_str().unwrap()), "{file}: {p}");
            for k in ["h", "w", "x", "y"] {
                assert!(p["gridPos"][k].is_u64(), "{file}: gridPos.{k}");
            }
            assert!(p["gridPos"]["x"].as_u64().unwrap() + p["gridPos"]["w"].as_u64().unwrap() <= 24, "{file}");
            assert_eq!(p["datasource"]["uid"], uid, "{file}: every panel reads the provisioned source");
            let targets = p["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{file}: {}", p["title"]);
            for t in targets {
                assert!(!t["expr"].as_str().unwrap().is_empty() && t["refId"].is_string(), "{file}");
                queries += 1;
            }
        }
        for v in d["templating"]["list"].as_array().unwrap() {
            assert_eq!(v["datasource"]["uid"], uid, "{file}");
        }
    }
    eprintln!("grafana: {} dashboards, {queries} queries", boards.len());
}

#[test]
fn an_alert_fires_end_to_end_and_reaches_the_pager_with_host_and_runbook() {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&suite("fixtures/monitoring-loopback/site"), &dir.path().join("site"));
    let o = medianest(dir.path(), &["build"]);
    assert!(o.status.success(), "the loopback site builds: {}", stderr(&o));
    // Every PromQL expression of the reference site's rules.
    let text = std::fs::read_to_string(reference_etc().join("rules/medianest.yml")).unwrap();
    let rules: Value = serde_saphyr::from_str(&text).unwrap();
    let mut exprs: Vec<String> = rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .map(|r| r["expr"].as_str().unwrap().to_string())
        .collect();
    // And every query of the generated dashboards, a variable standing for any value.
    let dashboards = dashboards();
    for d in dashboards.values() {
        for p in d["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().unwrap() {
                exprs.push(t["expr"].as_str().unwrap().replace("$service", ".+"));
            }
        }
    }
    let scratch = tempfile::tempdir().unwrap();
    let queries = scratch.path().join("queries.txt");
    std::fs::write(&queries, exprs.join("\n") + "\n").unwrap();
    let work = scratch.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let start = std::time::Instant::now();
    let o = Command::new("timeout")
        .args(["300", "unshare", "--net", "--mount", "--propagation", "private", "sh", "-eu", "-c", E2E, "sh"])
        .arg(dir.path().join("generated"))
        .arg(&work)
        .arg(&queries)
        .output()
        .expect("unshare runs");
    let out = stdout(&o);
    assert!(o.status.success(), "exit {:?}\n{out}\n{}", o.status.code(), stderr(&o));
    let get = |k: &str| -> String {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("no {k} in\n{out}"))
            .to_string()
    };
    assert_eq!(get("listening").trim(), "127.0.0.2:19090 127.0.0.2:19093", "no cluster port: {out}");
    assert_eq!(get("queries"), format!("{} rejected=0", exprs.len()), "{}", stderr(&o));
    assert!(get("firing").contains("\"alertname\":\"WebNodeDown\""), "{out}");
    let payload: Value = serde_json::from_str(&get("payload")).unwrap_or_else(|e| panic!("{e}: {}", get("payload")));
    assert_eq!(payload["routing_key"], "test-routing-key", "the key comes from its file");
    assert_eq!(payload["event_action"], "trigger");
    let summary = payload["payload"]["summary"].as_str().unwrap();
    assert!(summary.contains("WebNodeDown on web1"), "{summary}");
    let details = &payload["payload"]["custom_details"];
    assert_eq!(details["host"], "web1", "{payload}");
    assert_eq!(
        details["runbook"], "https://git.montest.lan/homelab/-/blob/main/generated/docs/runbooks/node.md#webnodedown",
        "{payload}"
    );
    eprintln!(
        "monitoring loopback run: {} expressions accepted, alert delivered {} s after the target stopped, {:.1} s in all",
        exprs.len(),
        get("delivered_after"),
        start.elapsed().as_secs_f64()
    );
}
