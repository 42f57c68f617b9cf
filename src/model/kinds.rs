//! The fixed vocabularies of the model: host kinds, host roles and service kinds, with
//! what each built-in service kind implies (default ports, whether it runs in a
//! container, whether it holds state). One table per vocabulary, so the docs, the
//! resolver and the README reference all read the same facts.

use super::values::{PortSpec, Proto};

/// What a host is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HostKind {
    /// Runs VMs (Proxmox VE).
    Hypervisor,
    /// A virtual machine on a hypervisor.
    Vm,
    /// The firewall / router appliance (pfSense).
    Firewall,
    /// Bare metal that is not a hypervisor.
    Physical,
}

impl HostKind {
    /// Names as written in the site.
    pub const ALL: &[(&str, HostKind)] = &[
        ("hypervisor", HostKind::Hypervisor),
        ("vm", HostKind::Vm),
        ("firewall", HostKind::Firewall),
        ("physical", HostKind::Physical),
    ];
    /// The name as written in the site.
    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, k)| *k == self).map(|(n, _)| *n).unwrap_or("?")
    }
    /// Whether medianest manages the host's files (Linux hosts; pfSense gets its
    /// `config.xml` through its own family).
    pub fn is_linux(self) -> bool {
        !matches!(self, HostKind::Firewall)
    }
}

/// A role a host plays; roles decide packages and system setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Docker engine.
    Docker,
    /// Docker Swarm manager.
    SwarmManager,
    /// Docker Swarm worker.
    SwarmWorker,
    /// ZFS pools.
    Zfs,
    /// NFS exports.
    NfsServer,
    /// Proxmox VE node.
    Proxmox,
}

impl Role {
    /// Names as written in the site.
    pub const ALL: &[(&str, Role)] = &[
        ("docker", Role::Docker),
        ("swarm-manager", Role::SwarmManager),
        ("swarm-worker", Role::SwarmWorker),
        ("zfs", Role::Zfs),
        ("nfs-server", Role::NfsServer),
        ("proxmox", Role::Proxmox),
    ];
    /// The name as written in the site.
    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, k)| *k == self).map(|(n, _)| *n).unwrap_or("?")
    }
}

/// What a service is. Built-in kinds drive specialised output in their artifact family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServiceKind {
    /// A generic container (Compose / Swarm).
    Container,
    /// HAProxy load balancer.
    Haproxy,
    /// keepalived VRRP.
    Keepalived,
    /// Nginx reverse proxy (with ModSecurity).
    Nginx,
    /// PostgreSQL.
    Postgres,
    /// PgBouncer.
    Pgbouncer,
    /// Redis.
    Redis,
    /// MinIO object storage (container).
    Minio,
    /// Prometheus.
    Prometheus,
    /// Alertmanager.
    Alertmanager,
    /// PowerDNS authoritative server.
    Powerdns,
    /// Prometheus node exporter.
    NodeExporter,
    /// Prometheus blackbox exporter: probes from outside a service.
    BlackboxExporter,
    /// pfSense firewall rules.
    Pfsense,
}

/// What a service kind implies.
#[derive(Debug)]
pub struct KindInfo {
    /// Name as written in the site.
    pub name: &'static str,
    /// The kind.
    pub kind: ServiceKind,
    /// Runs as a container (needs a pinned image and the container hardening rules).
    pub container: bool,
    /// Holds data that needs a backup policy, unless `stateful = false`.
    pub stateful: bool,
    /// Ports it listens on when the site declares none.
    pub ports: &'static [(&'static str, Proto, u16)],
    /// Debian package that provides it (native kinds).
    pub package: Option<&'static str>,
    /// One line for the docs.
    pub summary: &'static str,
}

use Proto::{Tcp, Udp, Vrrp};

/// Every service kind.
pub const KINDS: &[KindInfo] = &[
    KindInfo {
        name: "container",
        kind: ServiceKind::Container,
        container: true,
        stateful: false,
        ports: &[],
        package: None,
        summary: "a container run by Docker Compose or Swarm",
    },
    KindInfo {
        name: "haproxy",
        kind: ServiceKind::Haproxy,
        container: false,
        stateful: false,
        ports: &[
            ("http", Tcp, 80),
            ("https", Tcp, 443),
            ("stats", Tcp, 8404),
            ("acme", Tcp, 8888),
            ("peers", Tcp, 10000),
        ],
        package: Some("haproxy"),
        summary: "HAProxy: TLS termination and load balancing at the edge",
    },
    KindInfo {
        name: "keepalived",
        kind: ServiceKind::Keepalived,
        container: false,
        stateful: false,
        ports: &[("vrrp", Vrrp, 0)],
        package: Some("keepalived"),
        summary: "keepalived: a VRRP virtual IP for the edge pair",
    },
    KindInfo {
        name: "nginx",
        kind: ServiceKind::Nginx,
        container: false,
        stateful: false,
        ports: &[("http", Tcp, 80)],
        package: Some("nginx"),
        summary: "Nginx reverse proxy with ModSecurity",
    },
    KindInfo {
        name: "postgres",
        kind: ServiceKind::Postgres,
        container: false,
        stateful: true,
        ports: &[("postgres", Tcp, 5432)],
        package: Some("postgresql"),
        summary: "PostgreSQL primary with streaming replicas",
    },
    KindInfo {
        name: "pgbouncer",
        kind: ServiceKind::Pgbouncer,
        container: false,
        stateful: false,
        ports: &[("pgbouncer", Tcp, 6432)],
        package: Some("pgbouncer"),
        summary: "PgBouncer connection pooler",
    },
    KindInfo {
        name: "redis",
        kind: ServiceKind::Redis,
        container: false,
        stateful: true,
        ports: &[("redis", Tcp, 6379)],
        package: Some("redis-server"),
        summary: "Redis cache, sessions and queues",
    },
    KindInfo {
        name: "minio",
        kind: ServiceKind::Minio,
        container: true,
        stateful: true,
        ports: &[("api", Tcp, 9000), ("console", Tcp, 9001)],
        package: None,
        summary: "MinIO S3-compatible object storage",
    },
    KindInfo {
        name: "prometheus",
        kind: ServiceKind::Prometheus,
        container: false,
        stateful: false,
        ports: &[("http", Tcp, 9090)],
        package: Some("prometheus"),
        summary: "Prometheus metrics and alert rules",
    },
    KindInfo {
        name: "alertmanager",
        kind: ServiceKind::Alertmanager,
        container: false,
        stateful: false,
        ports: &[("http", Tcp, 9093), ("cluster", Tcp, 9094)],
        package: Some("prometheus-alertmanager"),
        summary: "Alertmanager routing to PagerDuty and Slack",
    },
    KindInfo {
        name: "powerdns",
        kind: ServiceKind::Powerdns,
        container: false,
        stateful: true,
        ports: &[("dns", Udp, 53), ("dns-tcp", Tcp, 53), ("api", Tcp, 8081)],
        package: Some("pdns-server"),
        summary: "PowerDNS authoritative DNS with DNSSEC",
    },
    KindInfo {
        name: "node-exporter",
        kind: ServiceKind::NodeExporter,
        container: false,
        stateful: false,
        ports: &[("metrics", Tcp, 9100)],
        package: Some("prometheus-node-exporter"),
        summary: "Prometheus node exporter",
    },
    KindInfo {
        name: "blackbox-exporter",
        kind: ServiceKind::BlackboxExporter,
        container: false,
        stateful: false,
        ports: &[("http", Tcp, 9115)],
        package: Some("prometheus-blackbox-exporter"),
        summary: "Prometheus blackbox exporter: HTTPS probes of every public hostname, with certificate expiry",
    },
    KindInfo {
        name: "pfsense",
        kind: ServiceKind::Pfsense,
        container: false,
        stateful: false,
        ports: &[("dns", Udp, 53), ("dns-tcp", Tcp, 53)],
        package: None,
        summary: "pfSense firewall rules from the flows, and its Unbound resolver",
    },
];

impl ServiceKind {
    /// What the kind implies.
    pub fn info(self) -> &'static KindInfo {
        KINDS.iter().find(|k| k.kind == self).expect("every kind is in KINDS")
    }
    /// Looks a kind up by name.
    pub fn from_name(name: &str) -> Option<ServiceKind> {
        KINDS.iter().find(|k| k.name == name).map(|k| k.kind)
    }
    /// The kind's default ports.
    pub fn default_ports(self) -> Vec<(String, PortSpec)> {
        self.info()
            .ports
            .iter()
            .map(|(n, proto, port)| (n.to_string(), PortSpec { proto: *proto, port: *port }))
            .collect()
    }
}
