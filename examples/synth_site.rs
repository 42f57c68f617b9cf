//! Writes a valid synthetic site of N hosts and M services, for benchmarks and scale tests.
//!
//! ```text
//! cargo run --release --example synth_site -- --hosts 1000 --services 10000 --out /tmp/big
//! medianest -C /tmp/big build
//! ```
//!
//! The site has the shape of the reference site, multiplied: six zones (/16 each) behind
//! one pfSense firewall, Proxmox hypervisors in the management zone and Docker VMs in the
//! DMZ, application, database, storage and monitoring tiers. Services are container apps
//! with pinned images, non-root users, health checks, tmpfs, secrets referenced by file,
//! ports unique on each host and, for some, a public `expose` entry with its own hostname
//! served by the edge (an HAProxy + keepalived pair in the DMZ, one wildcard certificate,
//! Nginx with ModSecurity on every app host); plus native PostgreSQL and Redis, MinIO,
//! ingress containers and metrics collectors. The last tenth of the app hosts form a Docker
//! Swarm (the containers family puts their apps in one stack). Flows
//! use ports their targets really serve and say why; guard-rails forbid the usual
//! pairs and no flow breaks them. Every stateful service has a backup within the 1h RPO
//! (PostgreSQL: daily base backup plus continuous WAL archiving).
//!
//! Output is a pure function of the arguments: the same N and M always give the same bytes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Services per `services/*.toml` file and flows per `policies/flows-*.toml` file.
const CHUNK: usize = 1000;

struct Zone {
    name: &'static str,
    vlan: u16,
    octet: u8,
    description: &'static str,
}

const ZONES: &[Zone] = &[
    Zone { name: "management", vlan: 10, octet: 10, description: "Hypervisors and operator access" },
    Zone { name: "dmz", vlan: 60, octet: 60, description: "Ingress proxies reached from the internet" },
    Zone { name: "application", vlan: 20, octet: 20, description: "Docker hosts running the application containers" },
    Zone { name: "database", vlan: 30, octet: 30, description: "PostgreSQL and Redis hosts" },
    Zone { name: "storage", vlan: 40, octet: 40, description: "MinIO object storage for backups" },
    Zone { name: "monitoring", vlan: 50, octet: 50, description: "Metrics collectors and dashboards" },
];

/// The address of the `k`-th host (0-based) of a zone: 10.<octet>.x.y, skipping the
/// network address and the .0.1 gateway.
fn address(octet: u8, k: usize) -> String {
    let o = k + 2;
    assert!(o < 65535, "more than 65532 hosts in one zone");
    format!("10.{octet}.{}.{}", o >> 8, o & 255)
}

#[derive(Default)]
struct Host {
    name: String,
    zone: usize,
    /// Index inside its zone (for the address).
    k: usize,
    /// Next free port.
    next_port: u16,
}

struct Synth {
    hosts: Vec<Host>,
    /// Host indices per tier.
    hypervisors: Vec<usize>,
    dmz: Vec<usize>,
    app: Vec<usize>,
    db: Vec<usize>,
    storage: Vec<usize>,
    monitoring: Vec<usize>,
    /// The app hosts that form a Docker Swarm (the last tenth, the first of them the
    /// manager): their apps go to the stack instead of a Compose file.
    swarm: Vec<usize>,
    /// `[services.*]` text per file name.
    services: BTreeMap<String, String>,
    service_count: usize,
    flows: Vec<String>,
    backups: String,
    certificates: String,
}

impl Synth {
    fn new(n_hosts: usize) -> Result<Synth, String> {
        if n_hosts < 8 {
            return Err("--hosts must be at least 8".into());
        }
        let mut s = Synth {
            hosts: Vec::new(),
            hypervisors: Vec::new(),
            dmz: Vec::new(),
            app: Vec::new(),
            db: Vec::new(),
            storage: Vec::new(),
            monitoring: Vec::new(),
            swarm: Vec::new(),
            services: BTreeMap::new(),
            service_count: 0,
            flows: Vec::new(),
            backups: String::new(),
            certificates: String::new(),
        };
        // fw1 + hypervisors + VMs split across the tiers.
        let n_hv = (n_hosts / 25).max(2);
        let vms = n_hosts - 1 - n_hv;
        let share = |pct: usize| (vms * pct / 100).max(1);
        let (n_dmz, n_db, n_stor, n_mon) = (share(5).max(2), share(15), share(8), share(10));
        let n_app = vms - n_dmz - n_db - n_stor - n_mon;
        let mut per_zone = [0usize; 6];
        let mut add = |s: &mut Synth, prefix: &str, zone: usize| -> usize {
            let k = per_zone[zone];
            per_zone[zone] += 1;
            s.hosts.push(Host { name: format!("{prefix}-{:04}", k + 1), zone, k, next_port: 10000 });
            s.hosts.len() - 1
        };
        for _ in 0..n_hv {
            let h = add(&mut s, "pve", 0);
            s.hypervisors.push(h);
        }
        for (count, prefix, zone) in
            [(n_dmz, "edge", 1), (n_app, "app", 2), (n_db, "db", 3), (n_stor, "stor", 4), (n_mon, "mon", 5)]
        {
            for _ in 0..count {
                let h = add(&mut s, prefix, zone);
                match zone {
                    1 => s.dmz.push(h),
                    2 => s.app.push(h),
                    3 => s.db.push(h),
                    4 => s.storage.push(h),
                    _ => s.monitoring.push(h),
                }
            }
        }
        if s.app.len() >= 4 {
            s.swarm = s.app[s.app.len() - (s.app.len() / 10).max(2)..].to_vec();
        }
        Ok(s)
    }

    /// A port free on every host in `on`, reserved on all of them.
    fn port(&mut self, on: &[usize]) -> u16 {
        let p = on.iter().map(|h| self.hosts[*h].next_port).max().unwrap_or(10000);
        for h in on {
            self.hosts[*h].next_port = p + 1;
        }
        p
    }

    fn service(&mut self, file: &str, text: String) {
        // One call may declare several services (`[services.<name>]`, not its subtables).
        self.service_count +=
            text.lines().filter(|l| l.starts_with("[services.") && l.matches('.').count() == 1).count();
        self.services.entry(file.to_string()).or_default().push_str(&text);
    }

    fn flow(&mut self, from: &str, to: &str, ports: &str, why: &str) {
        self.flows.push(format!("[[flows]]\nfrom = \"{from}\"\nto = \"{to}\"\nports = [{ports}]\nwhy = \"{why}\"\n"));
    }

    fn hosts_toml(&self) -> BTreeMap<String, String> {
        let mut files: BTreeMap<String, String> = BTreeMap::new();
        let mut fw = String::from("[hosts.fw1]\nkind = \"firewall\"\nos = \"pfsense-2.7\"\ninterfaces = [\n");
        for (i, z) in ZONES.iter().enumerate() {
            let _ = writeln!(fw, "  {{ zone = \"{}\", address = \"10.{}.0.1\", name = \"igb{i}\" }},", z.name, z.octet);
        }
        fw.push_str("]\nresources = { cpus = 4, memory = \"8g\", disk = \"128g\" }\n");
        fw.push_str("description = \"pfSense router and firewall between every zone and the WAN\"\n\n");
        files.insert("hosts/infrastructure.toml".into(), fw);
        for (i, h) in self.hosts.iter().enumerate() {
            let z = &ZONES[h.zone];
            let mut t = format!("[hosts.{}]\n", h.name);
            if h.zone == 0 {
                t.push_str("kind = \"hypervisor\"\nos = \"proxmox-ve-8\"\nroles = [\"proxmox\", \"zfs\"]\n");
                let _ = writeln!(
                    t,
                    "interfaces = [{{ zone = \"{}\", address = \"{}\", name = \"vmbr0\" }}]",
                    z.name,
                    address(z.octet, h.k)
                );
                t.push_str("resources = { cpus = 32, memory = \"256g\", disk = \"4t\" }\n");
                let _ = writeln!(
                    files.entry("proxmox.toml".into()).or_default(),
                    "[proxmox.{}]\nuplink = \"eno1\"\n",
                    h.name
                );
            } else {
                let hv = &self.hosts[self.hypervisors[i % self.hypervisors.len()]].name;
                // Storage hosts hold the MinIO datasets in a ZFS pool (snapshot backups).
                let roles = if ZONES[h.zone].name == "storage" {
                    "\"docker\", \"zfs\""
                } else if self.swarm.first() == Some(&i) {
                    "\"docker\", \"swarm-manager\""
                } else if self.swarm.contains(&i) {
                    "\"docker\", \"swarm-worker\""
                } else {
                    "\"docker\""
                };
                let _ = writeln!(t, "kind = \"vm\"\non = \"{hv}\"\nos = \"debian-12\"\nroles = [{roles}]");
                let _ = writeln!(
                    t,
                    "interfaces = [{{ zone = \"{}\", address = \"{}\", name = \"ens18\" }}]",
                    z.name,
                    address(z.octet, h.k)
                );
                t.push_str("resources = { cpus = 8, memory = \"32g\", disk = \"200g\" }\n");
            }
            let _ = writeln!(t, "description = \"{} host {} in the {} zone\"\n", tier_of(h.zone), h.k + 1, z.name);
            let file =
                if h.zone == 0 { "hosts/infrastructure.toml".to_string() } else { format!("hosts/{}.toml", z.name) };
            files.entry(file).or_default().push_str(&t);
        }
        files
    }
}

fn tier_of(zone: usize) -> &'static str {
    ["Hypervisor", "Edge", "Application", "Database", "Storage", "Monitoring"][zone]
}

fn chunk_file(prefix: &str, i: usize) -> String {
    format!("services/{prefix}-{:03}.toml", i / CHUNK + 1)
}

pub fn generate(n_hosts: usize, n_services: usize) -> Result<BTreeMap<String, String>, String> {
    let mut s = Synth::new(n_hosts)?;
    let fixed = 1 + 3 + s.storage.len() + 2 * s.db.len() + s.dmz.len() + s.monitoring.len();
    if n_services < fixed + s.app.len() {
        return Err(format!(
            "--services must be at least {} for {n_hosts} hosts (the data, edge and monitoring services plus one app per app host)",
            fixed + s.app.len()
        ));
    }

    s.service(
        "services/infrastructure.toml",
        "[services.pfsense]\nkind = \"pfsense\"\nhosts = [\"fw1\"]\nports = { dns = \"udp/53\", dns-tcp = 53, webgui = 443 }\n\
         wan = \"igb9\"\nwan_address = \"dhcp\"\nadmin_zone = \"management\"\n\
         description = \"Firewall rules from the flows, and the Unbound resolver\"\n\n".into(),
    );

    // MinIO on every storage host; backups are spread over them. MinIO serves TLS with
    // a certificate signed by the site's MinIO CA (a throwaway one: its key was
    // discarded; only the certificate is needed to build).
    s.service("services/storage.toml", format!("[minio_tls]\nca = \"\"\"\n{SYNTH_MINIO_CA}\n\"\"\"\n\n"));
    let mut minios = Vec::new();
    for (j, h) in s.storage.clone().into_iter().enumerate() {
        let name = format!("minio-{:04}", j + 1);
        let host = s.hosts[h].name.clone();
        s.service(
            "services/storage.toml",
            format!(
                "[services.{name}]\nkind = \"minio\"\nimage = \"quay.io/minio/minio:RELEASE.2024-06-13T22-53-53Z\"\nhosts = [\"{host}\"]\n\
                 user = \"1000:1000\"\nvolumes = {{ data = \"/data\" }}\ntmpfs = [\"/tmp\"]\nhealth = {{ http = \"/minio/health/live\", port = \"api\" }}\n\
                 resources = {{ cpus = 2.0, memory = \"2g\", reserve_cpus = 0.5, reserve_memory = \"1g\", pids = 500 }}\n\
                 secrets = [\"minio_root_user\", \"minio_root_password\"]\n\
                 description = \"MinIO object storage for the backups of its share of the site\"\n\n\
                 [services.{name}.env]\nMINIO_ROOT_USER_FILE = \"/run/secrets/minio_root_user\"\nMINIO_ROOT_PASSWORD_FILE = \"/run/secrets/minio_root_password\"\n\n"
            ),
        );
        let hv = s.hosts[s.hypervisors[j % s.hypervisors.len()]].name.clone();
        let _ = write!(
            s.backups,
            "[backups.{name}-snapshots]\nservice = \"{name}\"\nmethod = \"zfs-snapshot\"\nevery = \"1h\"\ntarget = \"host:{hv}\"\nretention = \"30d\"\ndataset = \"tank/{name}\"\n\n"
        );
        s.flow(
            &format!("host:{host}"),
            &format!("host:{hv}"),
            "\"tcp/22\"",
            "hourly ZFS snapshots of the MinIO dataset are sent to a hypervisor",
        );
        minios.push(name);
    }
    let minio_for = |i: usize| minios[i % minios.len()].clone();

    // PostgreSQL and Redis on every database host.
    let mut dbs = Vec::new();
    for (j, h) in s.db.clone().into_iter().enumerate() {
        let host = s.hosts[h].name.clone();
        let pg = format!("postgres-{:04}", j + 1);
        let redis = format!("redis-{:04}", j + 1);
        s.service(
            "services/data.toml",
            format!(
                "[services.{pg}]\nkind = \"postgres\"\nversion = 16\nhosts = [\"{host}\"]\n\
                 resources = {{ cpus = 4.0, memory = \"8g\", reserve_cpus = 1.0, reserve_memory = \"4g\", pids = 300 }}\n\
                 secrets = [\"postgres_password\"]\ndescription = \"PostgreSQL 16 for the apps of shard {}\"\n\n\
                 [services.{redis}]\nkind = \"redis\"\nhosts = [\"{host}\"]\nsecrets = [\"redis_password\"]\n\
                 description = \"Redis cache and queues for the apps of shard {}\"\n\n\
                 [services.{pg}-pool]\nkind = \"pgbouncer\"\nhosts = [\"{host}\"]\ndepends_on = [\"{pg}\"]\n\
                 description = \"PgBouncer in front of the PostgreSQL of shard {}\"\n\n",
                j + 1,
                j + 1,
                j + 1
            ),
        );
        let m = minio_for(j);
        let _ = write!(
            s.backups,
            "[backups.{pg}-pitr]\nservice = \"{pg}\"\nmethod = \"pg-basebackup\"\nevery = \"24h\"\ncontinuous = true\ntarget = \"service:{m}\"\nverify_restore = true\n\n\
             [backups.{redis}-rdb]\nservice = \"{redis}\"\nmethod = \"redis-rdb\"\nevery = \"1h\"\ntarget = \"service:{m}\"\nretention = \"7d\"\n\n"
        );
        s.flow(
            &format!("service:{pg}"),
            &format!("service:{m}"),
            "\"tcp/9000\"",
            "continuous WAL archiving and the daily base backup go to MinIO",
        );
        s.flow(
            &format!("service:{redis}"),
            &format!("service:{m}"),
            "\"tcp/9000\"",
            "hourly RDB snapshots are shipped to MinIO",
        );
        dbs.push((pg, redis));
    }

    // The edge: HAProxy and keepalived on the first two DMZ hosts (TLS for every exposed
    // hostname from one wildcard certificate), Nginx with ModSecurity on every app host,
    // and one ingress container per DMZ host for traffic that is not HTTP routing.
    let edge_pair: Vec<String> = s.dmz.iter().take(2).map(|h| format!("\"{}\"", s.hosts[*h].name)).collect();
    let app_hosts_list: Vec<String> = s.app.iter().map(|h| format!("\"{}\"", s.hosts[*h].name)).collect();
    s.service(
        "services/edge.toml",
        format!(
            "[services.haproxy]\nkind = \"haproxy\"\nhosts = [{}]\n\
             resources = {{ cpus = 2.0, memory = \"1g\", reserve_cpus = 0.5, reserve_memory = \"256m\" }}\n\
             description = \"HAProxy: TLS termination and routing for every exposed app\"\n\n\
             [services.keepalived]\nkind = \"keepalived\"\nhosts = [{}]\nvip = \"10.60.255.250\"\nvrid = 60\n\
             description = \"keepalived: the floating address of the edge pair\"\n\n\
             [services.nginx]\nkind = \"nginx\"\nhosts = [{}]\n\
             resources = {{ cpus = 1.0, memory = \"512m\", reserve_cpus = 0.1, reserve_memory = \"64m\" }}\n\
             description = \"App-tier reverse proxy with ModSecurity on every app host\"\n\n",
            edge_pair.join(", "),
            edge_pair.join(", "),
            app_hosts_list.join(", ")
        ),
    );
    // The wildcard is the operator's (HTTP-01 cannot validate a wildcard); the apex is
    // obtained by ACME on both edges.
    s.certificates = "[certificates.wildcard]\ndomains = [\"*.example.org\"]\nfile = \"/etc/haproxy/certs/wildcard.example.org.pem\"\n\n\
                      [certificates.apex]\ndomains = [\"example.org\", \"www.example.org\"]\nfile = \"/etc/haproxy/certs/example.org.pem\"\n\
                      acme = true\nacme_email = \"ops@example.org\"\n"
        .into();
    s.flow(
        "service:haproxy",
        "service:haproxy",
        "\"tcp/8888\"",
        "ACME HTTP-01: the edge holding the address passes challenges to the edge that asked",
    );
    s.flow(
        "internet",
        "service:haproxy",
        "\"tcp/80\", \"tcp/443\"",
        "public HTTPS for the exposed apps, port 80 only redirects",
    );
    s.flow(
        "service:keepalived",
        "service:keepalived",
        "\"vrrp\"",
        "the edge pair elects the holder of the floating address",
    );
    s.flow(
        "zone:management",
        "service:pfsense",
        "\"tcp/443\"",
        "operators administer pfSense from the management zone",
    );
    s.flow(
        "service:haproxy",
        "service:nginx",
        "\"tcp/80\"",
        "the edge forwards the exposed routes to the app-tier Nginx",
    );
    let mut ingresses = Vec::new();
    for (j, h) in s.dmz.clone().into_iter().enumerate() {
        let host = s.hosts[h].name.clone();
        let name = format!("ingress-{:04}", j + 1);
        let port = 8443 + j;
        s.service(
            "services/edge.toml",
            format!(
                "[services.{name}]\nimage = \"docker.io/library/traefik:3.1.2\"\nhosts = [\"{host}\"]\nuser = \"1000:1000\"\n\
                 ports = {{ https = {port} }}\nhealth = {{ tcp = true, port = \"https\" }}\ntmpfs = [\"/tmp\"]\n\
                 description = \"Ingress proxy on {host}: TLS passthrough for the non-HTTP apps\"\n\n"
            ),
        );
        // One public port per ingress: pfSense forwards a WAN port to one address.
        s.flow(
            "internet",
            &format!("service:{name}"),
            &format!("\"tcp/{port}\""),
            "public TLS to the ingress proxies, forwarded by pfSense",
        );
        ingresses.push(name);
    }

    // One metrics collector per monitoring host.
    let mut collectors = Vec::new();
    for (j, h) in s.monitoring.clone().into_iter().enumerate() {
        let host = s.hosts[h].name.clone();
        let name = format!("collector-{:04}", j + 1);
        s.service(
            "services/monitoring.toml",
            format!(
                "[services.{name}]\nkind = \"prometheus\"\nhosts = [\"{host}\"]\nretention = \"30d\"\n\
                 resources = {{ cpus = 2.0, memory = \"4g\", reserve_cpus = 0.5, reserve_memory = \"1g\" }}\n\
                 description = \"Metrics collector for its share of the apps, data can be rebuilt\"\n\n"
            ),
        );
        collectors.push(name);
    }
    // One Alertmanager for every collector, paging and chatting through its secrets.
    {
        let host = s.hosts[s.monitoring[0]].name.clone();
        s.service(
            "services/monitoring.toml",
            format!(
                "[services.alertmanager]\nkind = \"alertmanager\"\nhosts = [\"{host}\"]\n\
                 secrets = [\"pagerduty_routing_key\", \"slack_webhook_url\"]\npagerduty = \"pagerduty_routing_key\"\n\
                 slack = \"slack_webhook_url\"\ndescription = \"Alert routing: critical pages, warnings to chat\"\n\n"
            ),
        );
        for c in &collectors {
            s.flow(&format!("service:{c}"), "service:alertmanager", "\"tcp/9093\"", "firing alerts");
            s.flow(&format!("service:{c}"), "service:haproxy", "\"tcp/8404\"", "HAProxy metrics");
        }
    }
    // Log shipping to one Logstash, and Grafana over the first collectors.
    {
        let host = s.hosts[s.monitoring[0]].name.clone();
        s.service(
            "services/monitoring.toml",
            format!(
                "[services.logstash]\nimage = \"docker.elastic.co/logstash/logstash:8.11.1\"\nhosts = [\"{host}\"]\n\
                 user = \"1000:1000\"\nports = {{ logs = 5044 }}\nhealth = {{ tcp = true, port = \"logs\" }}\ntmpfs = [\"/tmp\"]\n\
                 log_input = \"logs\"\ndescription = \"Receives the logs of every host\"\n\n\
                 [services.grafana]\nimage = \"grafana/grafana:10.1.0\"\nhosts = [\"{host}\"]\nuser = \"472:472\"\n\
                 ports = {{ http = 3000 }}\nhealth = {{ http = \"/api/health\", port = \"http\" }}\ntmpfs = [\"/tmp\"]\n\
                 description = \"Dashboards over the collectors\"\n\n"
            ),
        );
        for z in ZONES {
            s.flow(&format!("zone:{}", z.name), "service:logstash", "\"tcp/5044\"", "log shipping");
        }
        for c in collectors.iter().take(3) {
            s.flow("service:grafana", &format!("service:{c}"), "\"tcp/9090\"", "dashboards");
        }
    }

    // The authoritative DNS server, signed, on the first monitoring host: pfSense's
    // resolver forwards the site's domain to it.
    {
        let host = s.hosts[s.monitoring[0]].name.clone();
        let m = minio_for(0);
        s.service(
            "services/monitoring.toml",
            format!(
                "[services.powerdns]\nkind = \"powerdns\"\nhosts = [\"{host}\"]\ndnssec = true\n\
                 description = \"Authoritative DNS for the internal domain, with DNSSEC\"\n\n"
            ),
        );
        let _ = write!(
            s.backups,
            "[backups.powerdns-zones]\nservice = \"powerdns\"\nmethod = \"restic\"\nevery = \"1h\"\ntarget = \"service:{m}\"\n\n"
        );
        s.flow(
            "service:pfsense",
            "service:powerdns",
            "\"dns\", \"dns-tcp\"",
            "the resolver forwards the internal domain",
        );
        s.flow("service:powerdns", &format!("service:{m}"), "\"tcp/9000\"", "hourly restic backup of the zones");
    }

    // The applications: round-robin over the app hosts; every fifth runs on two hosts.
    let app_hosts = s.app.clone();
    // The apps make up the count: everything above is fixed by the hosts.
    let n_apps = n_services.saturating_sub(s.service_count).max(app_hosts.len());
    let mut apps: Vec<(String, u16)> = Vec::new();
    for i in 0..n_apps {
        let name = format!("app-{:05}", i + 1);
        let h0 = app_hosts[i % app_hosts.len()];
        // A pair stays on one side of the Swarm: a service runs in the stack or in
        // Compose files, never both.
        let h1 = app_hosts[(i + 1) % app_hosts.len()];
        let same_side = s.swarm.contains(&h0) == s.swarm.contains(&h1);
        let on: Vec<usize> = if i % 5 == 4 && app_hosts.len() > 1 && same_side { vec![h0, h1] } else { vec![h0] };
        let http = s.port(&on);
        let metrics = s.port(&on);
        let hosts: Vec<String> = on.iter().map(|h| format!("\"{}\"", s.hosts[*h].name)).collect();
        let shard = i % dbs.len();
        let (pg, redis) = dbs[shard].clone();
        let stateful = i % 7 == 3;
        let exposed = i % 10 == 0;
        let mut t = format!(
            "[services.{name}]\nimage = \"registry.example.org/apps/{name}:1.{}.{}\"\nhosts = [{}]\nuser = \"{}:{}\"\n\
             ports = {{ http = {http}, metrics = {metrics} }}\nhealth = {{ http = \"/healthz\", port = \"http\" }}\n\
             tmpfs = [\"/tmp\"]\nsecrets = [\"database_url\", \"session_key\"]\ndepends_on = [\"{pg}\", \"{redis}\"]\n",
            i % 20,
            i % 7,
            hosts.join(", "),
            1000 + i % 50,
            1000 + i % 50,
        );
        if i % 3 == 0 {
            t.push_str(
                "resources = { cpus = 1.0, memory = \"512m\", reserve_cpus = 0.25, reserve_memory = \"128m\" }\n",
            );
        }
        if stateful {
            t.push_str("volumes = { data = \"/var/lib/app\" }\n");
        }
        if exposed {
            let _ = writeln!(
                t,
                "expose = [\n  {{ hostname = \"{name}.example.org\", path = \"/\", port = \"http\", waf = \"block\" }},\n  \
                 {{ hostname = \"{name}.example.org\", path = \"/ws/\", port = \"http\", websocket = true, waf = \"detect\" }},\n]"
            );
        }
        let _ = writeln!(
            t,
            "description = \"Application {} of shard {}, stateless unless it has a data volume\"",
            i + 1,
            shard + 1
        );
        let _ = writeln!(
            t,
            "\n[services.{name}.env]\nLOG_LEVEL = \"info\"\nPORT = \"{http}\"\nMETRICS_PORT = \"{metrics}\"\n\
             DATABASE_URL_FILE = \"/run/secrets/database_url\"\nSESSION_KEY_FILE = \"/run/secrets/session_key\"\n"
        );
        s.service(&chunk_file("apps", i), t);

        s.flow(
            &format!("service:{name}"),
            &format!("service:{pg}"),
            "\"tcp/5432\"",
            "the app keeps its records in the shard database",
        );
        if i % 2 == 0 {
            s.flow(&format!("service:{name}"), &format!("service:{redis}"), "\"tcp/6379\"", "sessions and job queues");
        }
        if let Some((prev, prev_http)) = apps.last() {
            s.flow(
                &format!("service:{name}"),
                &format!("service:{prev}"),
                &format!("\"tcp/{prev_http}\""),
                "calls the API of the previous app in the chain",
            );
        }
        if i % 10 == 5 {
            let ing = &ingresses[i % ingresses.len()];
            s.flow(
                &format!("service:{ing}"),
                &format!("service:{name}"),
                "\"http\"",
                "the ingress proxy passes TLS through to the app",
            );
        }
        let col = &collectors[i % collectors.len()];
        s.flow(&format!("service:{col}"), &format!("service:{name}"), "\"metrics\"", "metrics scrape");
        if stateful {
            let m = minio_for(i);
            let _ = write!(
                s.backups,
                "[backups.{name}-data]\nservice = \"{name}\"\nmethod = \"restic\"\nevery = \"1h\"\ntarget = \"service:{m}\"\n\n"
            );
            s.flow(
                &format!("service:{name}"),
                &format!("service:{m}"),
                "\"tcp/9000\"",
                "hourly restic backup of the data volume",
            );
        }
        apps.push((name, http));
    }
    for z in ["dmz", "application", "database", "storage", "monitoring"] {
        s.flow("zone:management", &format!("zone:{z}"), "\"tcp/22\"", "operator SSH");
    }

    let mut files = BTreeMap::new();
    files.insert(
        "site.toml".to_string(),
        format!(
            "# Synthetic site: {n_hosts} hosts, {n_services} services (examples/synth_site.rs).\n\n\
             [site]\nname = \"synth\"\ndomain = \"synth.lan\"\npublic_domain = \"example.org\"\n\
             description = \"Synthetic site of {n_hosts} hosts and {n_services} services for benchmarks\"\n\n\
             [recovery]\nrto = \"4h\"\nrpo = \"1h\"\n\n[defaults]\nbackup_retention = \"30d\"\n\n\
             [defaults.container]\nrestart = \"unless-stopped\"\npids_limit = 100\ntmpfs_size = \"64m\"\n\n\
             [defaults.health]\ninterval = \"30s\"\ntimeout = \"5s\"\nretries = 3\nstart_period = \"30s\"\n\n\
             [defaults.resources]\ncpus = 0.5\nmemory = \"256m\"\nreserve_cpus = 0.1\nreserve_memory = \"64m\"\npids = 100\n"
        ),
    );
    let mut net = String::new();
    for z in ZONES {
        let _ = writeln!(
            net,
            "[zones.{}]\nvlan = {}\ncidr = \"10.{}.0.0/16\"\ngateway = \"10.{}.0.1\"\ndescription = \"{}\"\n",
            z.name, z.vlan, z.octet, z.octet, z.description
        );
    }
    files.insert("network.toml".into(), net);
    files.extend(s.hosts_toml());
    files.extend(std::mem::take(&mut s.services));
    for (i, chunk) in s.flows.chunks(CHUNK * 2).enumerate() {
        files.insert(format!("policies/flows-{:03}.toml", i + 1), chunk.join("\n"));
    }
    let mut rails = String::new();
    for (from, to, why) in [
        ("zone:dmz", "zone:database", "an ingress host taken over from the internet must never reach the databases"),
        ("zone:dmz", "zone:storage", "an ingress host taken over from the internet must never reach the backups"),
        ("internet", "zone:application", "apps are reached only through the ingress proxies"),
        ("internet", "zone:database", "databases are never published"),
        ("internet", "zone:storage", "backups are never published"),
        ("internet", "zone:monitoring", "metrics reveal the whole site"),
        ("internet", "zone:management", "administration is never published"),
        ("zone:application", "zone:management", "a compromised app must not reach the hypervisors"),
    ] {
        let _ = writeln!(rails, "[[guardrails]]\ndeny = {{ from = \"{from}\", to = \"{to}\" }}\nwhy = \"{why}\"\n");
    }
    files.insert("policies/guardrails.toml".into(), rails);
    files.insert("backups.toml".into(), std::mem::take(&mut s.backups));
    files.insert("certificates.toml".into(), std::mem::take(&mut s.certificates));
    debug_assert_eq!(s.service_count, n_services);
    Ok(files)
}

fn write(out: &Path, files: &BTreeMap<String, String>) -> std::io::Result<()> {
    let site = out.join("site");
    if site.exists() {
        std::fs::remove_dir_all(&site)?;
    }
    for (rel, text) in files {
        let p = site.join(rel);
        std::fs::create_dir_all(p.parent().expect("a file has a parent"))?;
        std::fs::write(p, text)?;
    }
    Ok(())
}

fn usage() -> ExitCode {
    eprintln!("usage: synth_site --hosts N --services M --out DIR   (writes DIR/site/)");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut hosts, mut services, mut out) = (None, None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--hosts" => hosts = it.next().and_then(|v| v.parse::<usize>().ok()),
            "--services" => services = it.next().and_then(|v| v.parse::<usize>().ok()),
            "--out" => out = it.next().map(PathBuf::from),
            _ => return usage(),
        }
    }
    let (Some(hosts), Some(services), Some(out)) = (hosts, services, out) else { return usage() };
    let files = match generate(hosts, services) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = write(&out, &files) {
        eprintln!("error: cannot write `{}`: {e}", out.display());
        return ExitCode::from(2);
    }
    let bytes: usize = files.values().map(String::len).sum();
    eprintln!(
        "wrote {} files ({bytes} bytes) to {}/site: {hosts} hosts, {services} services",
        files.len(),
        out.display()
    );
    ExitCode::SUCCESS
}

/// The synthetic sites' MinIO CA (public; a throwaway whose key was discarded).
const SYNTH_MINIO_CA: &str = "-----BEGIN CERTIFICATE-----\nMIIBvzCCAWSgAwIBAgIUDIad9Vzh6OxSAT3314AcHKFGcFEwCgYIKoZIzj0EAwIw\nKzEpMCcGA1UEAwwgbWVkaWFuZXN0IHRlc3QgZml4dHVyZXMgTWluSU8gQ0EwHhcN\nMjYxMTI5MDUyODU4WhcNMzYxMTI2MDUyODU4WjArMSkwJwYDVQQDDCBtZWRpYW5l\nc3QgdGVzdCBmaXh0dXJlcyBNaW5JTyBDQTBZMBMGByqGSM49AgEGCCqGSM49AwEH\nA0IABLYXak5mMrb87U0IW3V/7/eBRRY/Ghdqi+ho+nzT1eHyUbIBxxDqNAvyIPLC\nGRBUJ92IOJrozt6RIX+g7iMPU3WjZjBkMB0GA1UdDgQWBBQb6NJg8BdcKvL6Svls\n/gQEKVnmjzAfBgNVHSMEGDAWgBQb6NJg8BdcKvL6Svls/gQEKVnmjzASBgNVHRMB\nAf8ECDAGAQH/AgEAMA4GA1UdDwEB/wQEAwIBBjAKBggqhkjOPQQDAgNJADBGAiEA\nzxKl2JwJdHnzchaL80YHd9O1Fnl30QOE05XFKri/yR0CIQC7wpjFk2FWqTfqCUNd\nzOZ3yawUzuHuHYq0yK8wzbGS4A==\n-----END CERTIFICATE-----";
