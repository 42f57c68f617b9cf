//! Structured random sites: `arbitrary` builds a description of zones, hosts, services
//! (every kind), exposures, certificates, flows, guard-rails and backups whose names
//! mostly resolve, which is written as TOML and run through the pipeline. Random bytes
//! rarely get past the TOML parser and the resolver; these reach verify, the edge
//! families and the templates with sites that are often valid.
#![no_main]

mod common;

use std::fmt::Write;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

const KINDS: &[&str] = &[
    "container",
    "haproxy",
    "keepalived",
    "nginx",
    "postgres",
    "pgbouncer",
    "redis",
    "minio",
    "prometheus",
    "alertmanager",
    "powerdns",
    "node-exporter",
    "pfsense",
    "bogus",
];
const HOST_KINDS: &[&str] = &["hypervisor", "vm", "firewall", "physical"];
const ROLES: &[&str] = &["docker", "swarm-manager", "swarm-worker", "zfs", "nfs-server", "proxmox"];
const WAF: &[&str] = &["off", "detect", "block", "bogus"];
const METHODS: &[&str] = &["pg-basebackup", "pg-dump", "redis-rdb", "restic", "zfs-snapshot", "minio-mirror"];
const EVERY: &[&str] = &["30m", "1h", "2h", "24h", "0s", "1x"];
const TEXT: &[&str] = &["a reason", "", "x;y", "é🦀", "a\\u0001b", "caf\\u00e9 # not a comment", "{{ x }}"];

#[derive(Arbitrary, Debug)]
struct Spec {
    /// One value in four writes whatever the fields say (mostly invalid sites); the
    /// others repair the fields into a site that passes the checks more often than not,
    /// so the edge families and the templates see many valid sites.
    chaos: u8,
    zones: Vec<Zone>,
    hosts: Vec<Host>,
    services: Vec<Service>,
    flows: Vec<Flow>,
    guardrails: Vec<(Ep, Ep, u8)>,
    backups: Vec<Backup>,
    certificates: Vec<(Vec<u8>, bool)>,
    rpo: u8,
}

#[derive(Arbitrary, Debug)]
struct Zone {
    vlan: u16,
    third: u8,
    prefix: bool,
    gateway: bool,
}

#[derive(Arbitrary, Debug)]
struct Host {
    kind: u8,
    on: u8,
    roles: u8,
    interfaces: Vec<(u8, u8, bool)>,
    description: u8,
}

#[derive(Arbitrary, Debug)]
struct Service {
    kind: u8,
    hosts: Vec<u8>,
    primary: Option<u8>,
    ports: Vec<(u8, u16, bool)>,
    user: u8,
    health: u8,
    exposes: Vec<(u8, u8, bool, u8)>,
    depends: Vec<u8>,
    vip: Option<(u8, u8)>,
    stateful: Option<bool>,
    volume: bool,
    read_only: Option<bool>,
    replicas: u8,
    text: u8,
}

#[derive(Arbitrary, Debug)]
enum Ep {
    Service(u8),
    Host(u8),
    Zone(u8),
    Internet,
}

#[derive(Arbitrary, Debug)]
struct Flow {
    from: Ep,
    to: Ep,
    ports: Vec<(bool, u16, Option<u8>)>,
    why: u8,
}

#[derive(Arbitrary, Debug)]
struct Backup {
    service: u8,
    method: u8,
    every: u8,
    continuous: bool,
    target: Ep,
}

fn pick<'a>(list: &[&'a str], i: u8) -> &'a str {
    list[i as usize % list.len()]
}

impl Spec {
    fn zone(&self, i: u8) -> String {
        format!("z{}", i as usize % self.zones.len().max(1))
    }
    fn host(&self, i: u8) -> String {
        format!("h{}", i as usize % self.hosts.len().max(1))
    }
    fn service(&self, i: u8) -> String {
        format!("s{}", i as usize % self.services.len().max(1))
    }
    fn ep(&self, e: &Ep) -> String {
        match e {
            Ep::Service(i) => format!("service:{}", self.service(*i)),
            Ep::Host(i) => format!("host:{}", self.host(*i)),
            Ep::Zone(i) => format!("zone:{}", self.zone(*i)),
            Ep::Internet => "internet".into(),
        }
    }
    fn addr(&self, zone: u8, last: u8) -> String {
        let z = &self.zones[zone as usize % self.zones.len()];
        format!("10.{}.{}.{last}", z.third % 4, z.third)
    }

    fn toml(&self) -> String {
        if self.chaos.is_multiple_of(4) { self.raw_toml() } else { self.valid_toml() }
    }

    /// A site built from the fields with every rule the resolver and verify know kept:
    /// unique VLANs, addresses and ports, VMs on a hypervisor, containers hardened on
    /// Docker hosts, exposures with a certificate, the edge and its flows, backups for
    /// stateful services within the RPO.
    fn valid_toml(&self) -> String {
        const SAFE_KINDS: &[&str] =
            &["container", "postgres", "pgbouncer", "redis", "minio", "prometheus", "node-exporter"];
        let mut t = String::new();
        let zones = self.zones.len().clamp(1, 6);
        t.push_str("[site]\nname = \"fuzz\"\ndomain = \"fuzz.lan\"\npublic_domain = \"example.org\"\n\n[recovery]\nrto = \"4h\"\nrpo = \"1h\"\n\n");
        for i in 0..zones {
            let _ =
                writeln!(t, "[zones.z{i}]\nvlan = {}\ncidr = \"10.9.{i}.0/24\"\ngateway = \"10.9.{i}.1\"\n", 10 + i);
        }
        // h0 is the hypervisor; the others are Docker VMs on it, in a zone each.
        let hosts = self.hosts.len().clamp(3, 10);
        t.push_str("[hosts.h0]\nkind = \"hypervisor\"\ninterfaces = [{ zone = \"z0\", address = \"10.9.0.2\", name = \"vmbr0\" }]\n\n");
        let zone_of = |h: usize| {
            self.hosts.get(h).map(|x| x.interfaces.first().map(|i| i.0).unwrap_or(0) as usize % zones).unwrap_or(0)
        };
        for h in 1..hosts {
            let z = zone_of(h);
            let _ = writeln!(
                t,
                "[hosts.h{h}]\nkind = \"vm\"\non = \"h0\"\nroles = [\"docker\"]\ninterfaces = [{{ zone = \"z{z}\", address = \"10.9.{z}.{}\", name = \"eth0\" }}]\n",
                10 + h
            );
        }
        let n = self.services.len().min(10);
        let mut exposed = Vec::new();
        let mut stateful = Vec::new();
        let mut served: Vec<u16> = Vec::new();
        let mut prometheus = Vec::new();
        for (i, s) in self.services.iter().take(n).enumerate() {
            let kind = pick(SAFE_KINDS, s.kind);
            // Each service on its own hosts and its own ports, so nothing clashes.
            let mut on: Vec<usize> = s.hosts.iter().take(2).map(|h| 1 + *h as usize % (hosts - 2)).collect();
            on.sort();
            on.dedup();
            if on.is_empty() {
                on.push(1);
            }
            let list: Vec<String> = on.iter().map(|h| format!("\"h{h}\"")).collect();
            let _ = writeln!(t, "[services.s{i}]\nkind = \"{kind}\"\nhosts = [{}]", list.join(", "));
            let port = 20000 + 10 * i as u16;
            served.push(port);
            match kind {
                "container" | "minio" => {
                    let _ = writeln!(t, "image = \"ghcr.io/fuzz/s{i}:1.0\"\nuser = \"1000:1000\"");
                    if kind == "container" {
                        let _ = writeln!(t, "ports = {{ http = {port}, metrics = {} }}", port + 1);
                    } else {
                        let _ = writeln!(t, "ports = {{ api = {port}, console = {} }}", port + 1);
                    }
                    t.push_str(if s.health % 2 == 0 {
                        "health = { http = \"/health\" }\n"
                    } else {
                        "health = { tcp = true }\n"
                    });
                    if s.volume {
                        t.push_str("volumes = { data = \"/data\" }\ntmpfs = [\"/tmp\"]\n");
                    }
                }
                "postgres" if on.len() > 1 => {
                    let _ = writeln!(t, "primary = \"h{}\"\nports = {{ postgres = {port} }}", on[0]);
                }
                "postgres" => {
                    let _ = writeln!(t, "ports = {{ postgres = {port} }}");
                }
                _ => {
                    let _ = writeln!(t, "ports = {{ p = {port} }}");
                }
            }
            if kind == "container" && !s.exposes.is_empty() {
                let ex: Vec<String> = s
                    .exposes
                    .iter()
                    .take(2)
                    .enumerate()
                    .map(|(j, (_, p, ws, waf))| {
                        format!(
                            "{{ hostname = \"s{i}.example.org\", path = \"{}\", websocket = {ws}, waf = \"{}\" }}",
                            if j == 0 { "/" } else { ["/api/", "/ws", "/a/b/", "/x"][*p as usize % 4] },
                            pick(&WAF[..3], *waf)
                        )
                    })
                    .collect();
                let _ = writeln!(t, "expose = [{}]", ex.join(", "));
                exposed.push(i);
            }
            if matches!(kind, "postgres" | "redis" | "minio") || (kind == "container" && s.volume) {
                stateful.push((i, kind));
            }
            let deps: Vec<String> = s
                .depends
                .iter()
                .take(2)
                .filter(|d| (**d as usize % n.max(1)) < i)
                .map(|d| format!("\"s{}\"", *d as usize % n.max(1)))
                .collect();
            if !deps.is_empty() {
                let _ = writeln!(t, "depends_on = [{}]", deps.join(", "));
            }
            if kind == "prometheus" {
                prometheus.push(i);
            }
            t.push('\n');
        }
        if self.chaos & 8 != 0 {
            // The app-tier Nginx on every host but the edge's: the edge then goes through it.
            let list: Vec<String> = (1..hosts - 1).map(|h| format!("\"h{h}\"")).collect();
            let _ = writeln!(t, "[services.proxy]\nkind = \"nginx\"\nhosts = [{}]\n", list.join(", "));
        }
        if !exposed.is_empty() {
            // The edge: HAProxy on the last host, which runs nothing else.
            let edge = hosts - 1;
            let _ = writeln!(t, "[services.edge]\nkind = \"haproxy\"\nhosts = [\"h{edge}\"]\n");
            for p in &prometheus {
                let _ = writeln!(
                    t,
                    "[[flows]]\nfrom = \"service:s{p}\"\nto = \"service:edge\"\nports = [\"tcp/8404\"]\nwhy = \"stats\"\n"
                );
            }
            if self.certificates.first().is_some_and(|c| c.1) {
                let _ = writeln!(
                    t,
                    "[services.vrrp]\nkind = \"keepalived\"\nhosts = [\"h{edge}\"]\nvip = \"10.9.{}.250\"\n",
                    zone_of(edge)
                );
            }
            t.push_str(
                "[certificates.wild]\ndomains = [\"*.example.org\"]\nfile = \"/etc/haproxy/certs/wild.pem\"\n\n",
            );
            t.push_str("[[flows]]\nfrom = \"internet\"\nto = \"service:edge\"\nports = [\"tcp/443\", \"tcp/80\"]\nwhy = \"public HTTPS\"\n\n");
            for i in &exposed {
                let _ = writeln!(
                    t,
                    "[[flows]]\nfrom = \"service:edge\"\nto = \"service:s{i}\"\nports = [\"http\"]\nwhy = \"edge routes\"\n"
                );
            }
            let _ = writeln!(
                t,
                "[[flows]]\nfrom = \"service:edge\"\nto = \"zone:z0\"\nports = [\"tcp/80\"]\nwhy = \"edge to any app-tier Nginx\"\n"
            );
            for h in 1..hosts {
                let _ = writeln!(
                    t,
                    "[[flows]]\nfrom = \"service:edge\"\nto = \"host:h{h}\"\nports = [\"tcp/80\"]\nwhy = \"edge to the app-tier Nginx\"\n"
                );
            }
        }
        for f in self.flows.iter().take(8) {
            // Flows between services on ports they serve: the target's first port.
            if let (Ep::Service(a), Ep::Service(b)) = (&f.from, &f.to) {
                let (a, b) = (*a as usize % n.max(1), *b as usize % n.max(1));
                if n > 0 {
                    let _ = writeln!(
                        t,
                        "[[flows]]\nfrom = \"service:s{a}\"\nto = \"service:s{b}\"\nports = [\"tcp/{}\"]\nwhy = \"{}\"\n",
                        served[b],
                        pick(&TEXT[..1], f.why)
                    );
                }
            }
        }
        for (i, kind) in stateful {
            let method = match kind {
                "postgres" => "pg-basebackup\"\ncontinuous = true\nevery = \"24h",
                "redis" => "redis-rdb\"\nevery = \"1h",
                _ => "restic\"\nevery = \"1h",
            };
            let _ = writeln!(t, "[backups.b{i}]\nservice = \"s{i}\"\nmethod = \"{method}\"\ntarget = \"host:h0\"\n");
        }
        t
    }

    fn raw_toml(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "[site]\nname = \"fuzz\"\ndomain = \"fuzz.lan\"\npublic_domain = \"example.org\"\n\n[recovery]\nrto = \"4h\"\nrpo = \"{}\"\n",
            pick(EVERY, self.rpo)
        );
        for (i, z) in self.zones.iter().take(8).enumerate() {
            let _ = writeln!(
                t,
                "[zones.z{i}]\nvlan = {}\ncidr = \"10.{}.{}.0/{}\"",
                z.vlan % 4100,
                z.third % 4,
                z.third,
                if z.prefix { 24 } else { 25 }
            );
            if z.gateway {
                let _ = writeln!(t, "gateway = \"10.{}.{}.1\"", z.third % 4, z.third);
            }
            t.push('\n');
        }
        if self.zones.is_empty() {
            return t;
        }
        for (i, h) in self.hosts.iter().take(12).enumerate() {
            let _ = writeln!(t, "[hosts.h{i}]\nkind = \"{}\"", pick(HOST_KINDS, h.kind));
            if h.kind % 4 == 1 {
                let _ = writeln!(t, "on = \"{}\"", self.host(h.on));
            }
            let roles: Vec<String> =
                (0..6).filter(|b| h.roles & (1 << b) != 0).map(|b| format!("\"{}\"", ROLES[b])).collect();
            let _ = writeln!(t, "roles = [{}]", roles.join(", "));
            let ifaces: Vec<String> = h
                .interfaces
                .iter()
                .take(4)
                .map(|(z, last, named)| {
                    let name = if *named { ", name = \"eth0\"" } else { "" };
                    format!("{{ zone = \"{}\", address = \"{}\"{name} }}", self.zone(*z), self.addr(*z, *last))
                })
                .collect();
            let _ = writeln!(t, "interfaces = [{}]", ifaces.join(", "));
            let _ = writeln!(t, "description = \"{}\"\n", pick(TEXT, h.description));
        }
        for (i, s) in self.services.iter().take(12).enumerate() {
            let kind = pick(KINDS, s.kind);
            let _ = writeln!(t, "[services.s{i}]\nkind = \"{kind}\"");
            if matches!(kind, "container" | "minio") {
                let _ = writeln!(t, "image = \"ghcr.io/fuzz/s{i}:1.{}\"", s.user % 3);
                let _ = writeln!(t, "user = \"{}\"", ["1000:1000", "0:0", "root", "app"][s.user as usize % 4]);
            }
            let hosts: Vec<String> = s.hosts.iter().take(3).map(|h| format!("\"{}\"", self.host(*h))).collect();
            let _ = writeln!(t, "hosts = [{}]", hosts.join(", "));
            if let Some(p) = s.primary {
                let _ = writeln!(t, "primary = \"{}\"", self.host(p));
            }
            if s.replicas > 1 {
                let _ = writeln!(t, "replicas = {}", s.replicas % 4);
            }
            if !s.ports.is_empty() {
                let ports: Vec<String> = s
                    .ports
                    .iter()
                    .take(3)
                    .map(|(n, p, udp)| {
                        let v = if *udp { format!("\"udp/{p}\"") } else { p.to_string() };
                        format!("{} = {v}", ["http", "https", "api", "stats", "metrics"][*n as usize % 5])
                    })
                    .collect();
                let _ = writeln!(t, "ports = {{ {} }}", ports.join(", "));
            }
            match s.health % 4 {
                0 => {}
                1 => t.push_str("health = { http = \"/health\" }\n"),
                2 => t.push_str("health = { tcp = true }\n"),
                _ => t.push_str("health = { exec = [\"true\"] }\n"),
            }
            if s.volume {
                t.push_str("volumes = { data = \"/data\" }\n");
            }
            if let Some(b) = s.stateful {
                let _ = writeln!(t, "stateful = {b}");
            }
            if let Some(b) = s.read_only {
                let _ = writeln!(t, "read_only = {b}\nexceptions = {{ read_only = \"{}\" }}", pick(TEXT, s.text));
            }
            if let Some((z, last)) = s.vip {
                let _ = writeln!(t, "vip = \"{}\"", self.addr(z, last));
            }
            let deps: Vec<String> = s.depends.iter().take(3).map(|d| format!("\"{}\"", self.service(*d))).collect();
            if !deps.is_empty() {
                let _ = writeln!(t, "depends_on = [{}]", deps.join(", "));
            }
            let exposes: Vec<String> = s
                .exposes
                .iter()
                .take(3)
                .map(|(h, p, ws, waf)| {
                    format!(
                        "{{ hostname = \"{}.example.org\", path = \"{}\", websocket = {ws}, waf = \"{}\" }}",
                        ["a", "b", "c", "a.b"][*h as usize % 4],
                        ["/", "/api/", "/ws", "/a/b/"][*p as usize % 4],
                        pick(WAF, *waf)
                    )
                })
                .collect();
            if !exposes.is_empty() {
                let _ = writeln!(t, "expose = [{}]", exposes.join(", "));
            }
            let _ = writeln!(t, "description = \"{}\"\n", pick(TEXT, s.text));
        }
        for (i, (domains, acme)) in self.certificates.iter().take(3).enumerate() {
            let d: Vec<String> = domains
                .iter()
                .take(3)
                .map(|x| format!("\"{}\"", ["*.example.org", "a.example.org", "example.org", "*.a"][*x as usize % 4]))
                .collect();
            let _ = writeln!(
                t,
                "[certificates.c{i}]\ndomains = [{}]\nfile = \"/etc/haproxy/certs/c{i}.pem\"\nacme = {acme}\n",
                d.join(", ")
            );
        }
        for f in self.flows.iter().take(16) {
            let ports: Vec<String> = f
                .ports
                .iter()
                .take(3)
                .map(|(udp, p, named)| match named {
                    Some(n) => format!("\"{}\"", ["http", "https", "api", "stats", "metrics"][*n as usize % 5]),
                    None => format!("\"{}/{p}\"", if *udp { "udp" } else { "tcp" }),
                })
                .collect();
            let _ = writeln!(
                t,
                "[[flows]]\nfrom = \"{}\"\nto = \"{}\"\nports = [{}]\nwhy = \"{}\"\n",
                self.ep(&f.from),
                self.ep(&f.to),
                ports.join(", "),
                pick(TEXT, f.why)
            );
        }
        for (a, b, why) in self.guardrails.iter().take(4) {
            let _ = writeln!(
                t,
                "[[guardrails]]\ndeny = {{ from = \"{}\", to = \"{}\" }}\nwhy = \"{}\"\n",
                self.ep(a),
                self.ep(b),
                pick(TEXT, *why)
            );
        }
        for (i, b) in self.backups.iter().take(6).enumerate() {
            let _ = writeln!(
                t,
                "[backups.b{i}]\nservice = \"{}\"\nmethod = \"{}\"\nevery = \"{}\"\ncontinuous = {}\ntarget = \"{}\"\n",
                self.service(b.service),
                pick(METHODS, b.method),
                pick(EVERY, b.every),
                b.continuous,
                self.ep(&b.target)
            );
        }
        t
    }
}

fuzz_target!(|spec: Spec| {
    common::run(vec![("site.toml".to_string(), spec.toml().into_bytes())]);
});
