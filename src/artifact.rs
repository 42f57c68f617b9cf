//! What a build produces: [`Artifact`]s keyed by their path under `generated/`, each
//! host's apply plan, and `manifest.json`.
//!
//! The manifest and the plans are data the host agent reads, so they are written with
//! serde (not templates) and their shape is versioned by `format`. The sha256 entries
//! catch accidental drift and corruption; authenticity comes from signed commits, which
//! the agent verifies separately.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Version of the manifest and plan formats.
pub const FORMAT: u32 = 1;

/// Name of the manifest at the root of `generated/`.
pub const MANIFEST: &str = "manifest.json";

/// A path under `generated/`: relative, `/`-separated, no `.`/`..`/empty segments.
pub fn check_rel_path(p: &str) -> Result<(), String> {
    if p.is_empty() || p.starts_with('/') || p.ends_with('/') {
        return Err(format!("`{p}` is not a relative file path"));
    }
    for seg in p.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." || seg.contains('\\') || seg.contains('\0') {
            return Err(format!("`{p}` has an unsafe segment `{seg}`"));
        }
    }
    Ok(())
}

/// A native check the agent runs on a staged file before any swap. One vocabulary for
/// the families that name it and the agent that runs it (`agent::actions`), so a name
/// is never matched as a string in two places; a plan naming another fails to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Validator {
    /// `nginx -t` on `etc/nginx/nginx.conf`.
    Nginx,
    /// `haproxy -c` on `etc/haproxy/haproxy.cfg`.
    Haproxy,
    /// `keepalived -t` on `etc/keepalived/keepalived.conf`.
    Keepalived,
    /// `nft -c -f` on `etc/nftables.conf`.
    Nft,
    /// `pdnsutil check-all-zones` on `etc/powerdns/` (its `pdns.conf`, `named.conf` and
    /// zone files), in a private mount namespace.
    Pdns,
    /// ifupdown2's parser, `ifup -a -s -i` on `etc/network/interfaces` (syntax and
    /// attribute values; nothing is brought up).
    Ifupdown2,
    /// `postgres -C data_directory` with each staged `etc/postgresql/<v>/main/postgresql.conf`
    /// (and its `conf.d`), as the `postgres` user: the server's own parser, no server started.
    Postgres,
    /// `promtool check config` on `etc/prometheus/prometheus.yml` (and the rule files it
    /// names, relative to it, so the staged ones).
    Promtool,
    /// `amtool check-config` on `etc/prometheus/alertmanager.yml`.
    Amtool,
    /// `rsyslogd -N1` on the medianest files of `etc/rsyslog.d` (`*-medianest*.conf`, in
    /// the order rsyslog includes them; rsyslog's own parser).
    Rsyslog,
    /// `prometheus-blackbox-exporter --config.check` on `etc/prometheus/blackbox.yml`.
    Blackbox,
    /// `docker compose -f etc/medianest/compose/compose.yaml config -q`: Compose's own
    /// parser and its reference checks (volumes, networks, secrets).
    Compose,
    /// `docker stack config -c` on each staged `etc/medianest/stacks/*.yml`: the Swarm
    /// v3 schema (works without an engine).
    Stack,
    /// `redis-server` on the staged `etc/redis/redis.conf`, started and stopped in private
    /// network and mount namespaces: Redis has no config-test mode, and it reads its whole
    /// configuration before it listens (no TCP port, a scratch socket and directory, the
    /// files it includes from `/run` empty stand-ins).
    Redis,
    /// `pgbouncer` on the staged `etc/pgbouncer/` (its `pgbouncer.ini` and the files it
    /// includes), started and stopped in private network and mount namespaces: PgBouncer
    /// has no check mode, and it reads its whole configuration before it listens (its
    /// listen addresses on a private loopback, scratch `/run` and log directory, the
    /// auth file an empty stand-in when it is not staged).
    Pgbouncer,
}

impl Validator {
    /// The name written in plans.
    pub fn name(self) -> &'static str {
        match self {
            Validator::Nginx => "nginx",
            Validator::Haproxy => "haproxy",
            Validator::Keepalived => "keepalived",
            Validator::Nft => "nft",
            Validator::Pdns => "pdns",
            Validator::Ifupdown2 => "ifupdown2",
            Validator::Postgres => "postgres",
            Validator::Promtool => "promtool",
            Validator::Amtool => "amtool",
            Validator::Rsyslog => "rsyslog",
            Validator::Blackbox => "blackbox",
            Validator::Compose => "compose",
            Validator::Stack => "stack",
            Validator::Redis => "redis",
            Validator::Pgbouncer => "pgbouncer",
        }
    }
}

impl std::fmt::Display for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where each family's host files may go, shared by the compiler (a test holds every
/// family's rendered targets to it) and the agent, which refuses a plan target outside
/// its family's list whatever the signature: a compiler bug or a signed malicious commit
/// cannot write `/etc/shadow`, `/etc/sudoers.d/`, `/etc/ld.so.preload` or `/etc/cron.d/`.
/// An entry ending in `/`, `-` or `@` is a prefix; any other is one exact file.
pub const FAMILY_TARGETS: &[(&str, &[&str])] = &[
    ("acme", &["/etc/medianest/acme/", "/etc/systemd/system/medianest-acme-"]),
    ("alertmanager", &["/etc/default/prometheus-alertmanager", "/etc/prometheus/"]),
    (
        "backups",
        &[
            "/etc/medianest/backup/",
            "/etc/medianest/minio/",
            "/etc/pgbackrest/",
            "/etc/sanoid/",
            "/etc/systemd/system/medianest-backup-",
            "/etc/systemd/system/medianest-restore-test-",
            "/etc/systemd/system/medianest-minio-buckets.service",
            "/etc/medianest/tls/minio-ca.crt",
            "/etc/systemd/system/medianest-minio-tls.service",
            "/etc/systemd/system/medianest-minio-tls-",
        ],
    ),
    ("base", &["/etc/hosts"]),
    ("containers", &["/etc/exports.d/", "/etc/medianest/compose/", "/etc/medianest/stacks/"]),
    (
        "delivery",
        &[
            "/etc/medianest/agent.toml",
            "/etc/medianest/allowed_signers",
            "/etc/sysctl.d/90-medianest.conf",
            "/etc/systemd/system/medianest-pull.service",
            "/etc/systemd/system/medianest-pull.timer",
            "/etc/systemd/system/medianest-secrets.service",
        ],
    ),
    ("dns", &["/etc/powerdns/", "/etc/medianest/powerdns/", "/etc/systemd/system/pdns.service.d/"]),
    ("grafana", &["/etc/medianest/grafana/"]),
    ("haproxy", &["/etc/haproxy/"]),
    ("keepalived", &["/etc/keepalived/"]),
    ("logship", &["/etc/medianest/elasticsearch/", "/etc/rsyslog.d/"]),
    ("nftables", &["/etc/nftables.conf"]),
    ("nginx", &["/etc/nginx/"]),
    ("pgbouncer", &["/etc/medianest/pgbouncer/", "/etc/pgbouncer/", "/etc/systemd/system/pgbouncer.service.d/"]),
    (
        "postgres",
        &[
            "/etc/medianest/postgres-replica-init",
            "/etc/medianest/postgres/",
            "/etc/postgresql/",
            "/etc/systemd/system/medianest-postgres-setup.service",
            "/etc/systemd/system/postgresql@",
        ],
    ),
    ("prometheus", &["/etc/default/prometheus", "/etc/prometheus/"]),
    ("proxmox", &["/etc/network/"]),
    ("redis", &["/etc/medianest/redis/", "/etc/redis/", "/etc/systemd/system/redis-server.service.d/"]),
];

/// Whether family `family` may write `target` ([`FAMILY_TARGETS`]).
pub fn family_may_write(family: &str, target: &str) -> bool {
    FAMILY_TARGETS
        .iter()
        .filter(|(f, _)| *f == family)
        .flat_map(|(_, t)| t.iter())
        .any(|e| target == *e || (e.ends_with(['/', '-', '@']) && target.starts_with(e) && target.len() > e.len()))
}

/// A check the agent makes after a reload, on top of the unit being active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Probe {
    /// The host still reaches its repository (a firewall change must never cut it off
    /// the commit that would fix it): otherwise the previous files are restored.
    Refetch,
}

/// How the agent runs a file's containers after the swap, then waits until they
/// converge (else it restores the previous file and deploys that again).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Deploy {
    /// `docker compose -f <file> up -d --remove-orphans` (the project is the file's
    /// `name:`), converged when every container runs and every health check passes.
    Compose,
    /// `docker stack deploy --prune --with-registry-auth -c <file> <stem>`, converged
    /// when every service of the stack runs its replica count.
    Stack,
}

/// What the agent does with a host file, from a fixed vocabulary built into the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Apply {
    /// Absolute path on the host.
    pub target: String,
    /// Native validation to run on the staged file.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub validate: Option<Validator>,
    /// systemd unit to reload after the swap.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reload: Option<String>,
    /// systemd unit to restart after the swap (when a reload is not enough).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub restart: Option<String>,
    /// A check after the reload.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub probe: Option<Probe>,
    /// Containers to deploy from it after the swap.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub deploy: Option<Deploy>,
}

/// Everything about a generated file except its bytes.
#[derive(Debug, Clone)]
pub struct ArtifactMeta {
    /// Path under `generated/`.
    pub path: String,
    /// Artifact family that produced it (`docs`, `base`, …).
    pub family: &'static str,
    /// Mode on the host (or in the tree for docs).
    pub mode: u32,
    /// `user:group` on the host.
    pub owner: String,
    /// Host that applies it, if any.
    pub host: Option<String>,
    /// Site files it was compiled from, sorted.
    pub sources: Vec<String>,
    /// How the host applies it.
    pub apply: Option<Apply>,
    /// Template it was rendered from (set by the renderer; empty for data files).
    pub template: String,
    /// For a secret's ciphertext (`hosts/<host>/secrets/<name>.age`): where the agent
    /// delivers its plaintext.
    pub secret: Option<SecretMeta>,
    /// The branch hosts follow (the site's `[agent] branch`), on the files that carry
    /// it: the manifest records it, and the agent refuses a tree made for another.
    pub branch: Option<String>,
    /// The site values its template context held (recorded by the builder, see
    /// `families::provenance`), for `explain` and `sources`. In chunks, some shared:
    /// many files hold the same values (every `/etc/hosts` names every host), and one
    /// copy per file made memory quadratic in the number of hosts.
    pub traces: Vec<Arc<[Trace]>>,
}

/// A site entity that a generated file mentions by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// What it is: `host`, `service`, `zone`, …
    pub what: &'static str,
    /// Its name as it appears in the output.
    pub name: String,
    /// Where it is defined.
    pub loc: crate::diag::Loc,
}

impl ArtifactMeta {
    /// Every trace, chunk by chunk.
    pub fn all_traces(&self) -> impl Iterator<Item = &Trace> {
        self.traces.iter().flat_map(|c| c.iter())
    }

    /// A cluster-wide file (docs, plans) readable by everyone. A family's file gets its
    /// `sources` from what its context records (`families::Lowering::add`); data files
    /// built here pass theirs.
    pub fn shared(family: &'static str, path: String, sources: Vec<String>) -> Self {
        ArtifactMeta {
            path,
            family,
            mode: 0o644,
            owner: "root:root".into(),
            host: None,
            sources,
            apply: None,
            template: String::new(),
            secret: None,
            branch: None,
            traces: Vec::new(),
        }
    }

    /// A file that `host` installs at the absolute path `target` (its `sources` are
    /// derived when a family adds it).
    pub fn host_file(family: &'static str, host: &str, target: &str, mode: u32, owner: &str) -> Self {
        ArtifactMeta {
            path: format!("hosts/{host}/root{target}"),
            family,
            mode,
            owner: owner.into(),
            host: Some(host.into()),
            sources: Vec::new(),
            apply: Some(Apply {
                target: target.into(),
                validate: None,
                reload: None,
                restart: None,
                probe: None,
                deploy: None,
            }),
            template: String::new(),
            secret: None,
            branch: None,
            traces: Vec::new(),
        }
    }
}

/// A secret's ciphertext in a host's tree, and where the agent decrypts it to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretMeta {
    /// The secret's name.
    pub name: String,
    /// One delivery per service of the host that lists it.
    pub deliveries: Vec<SecretDelivery>,
}

/// One decrypted copy of a secret on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretDelivery {
    /// The service that reads it.
    pub service: String,
    /// `/run/medianest/secrets/<service>/<name>`.
    pub target: String,
    /// `user:group` of the file (mode 0400): the service's user.
    pub owner: String,
    /// Unit to reload when the secret changes.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reload: Option<String>,
    /// Unit to restart when the secret changes (when a reload does not re-read it).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub restart: Option<String>,
}

/// One secret in a host's `plan.json`: names and the ciphertext's hash, never a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanSecret {
    /// The secret's name (bound into the ciphertext: the agent checks it).
    pub name: String,
    /// The ciphertext, relative to the host's folder (`secrets/<name>.age`).
    pub source: String,
    /// sha256 of the ciphertext.
    pub sha256: String,
    /// Where it is decrypted to.
    pub deliveries: Vec<SecretDelivery>,
}

/// A generated file.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// The bytes, `\n` line ends, final newline.
    pub bytes: Vec<u8>,
    /// What it is.
    pub meta: ArtifactMeta,
    /// sha256 of `bytes`, computed once: the plans, the manifest and the fingerprint
    /// all need it.
    sha256: std::sync::OnceLock<String>,
}

impl Artifact {
    /// A file with these bytes.
    pub fn new(bytes: Vec<u8>, meta: ArtifactMeta) -> Artifact {
        Artifact { bytes, meta, sha256: std::sync::OnceLock::new() }
    }

    /// Lowercase hex sha256 of the bytes.
    pub fn sha256(&self) -> &str {
        self.sha256.get_or_init(|| sha256_hex(&self.bytes))
    }
}

/// Lowercase hex sha256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    base16ct::lower::encode_string(&Sha256::digest(bytes))
}

/// Every artifact of a build, by path: the order in which everything is written,
/// compared and listed.
pub type ArtifactSet = BTreeMap<String, Artifact>;

/// One entry of `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Path under `generated/`.
    pub path: String,
    /// sha256 of the content.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Octal mode, e.g. `0644`.
    pub mode: String,
    /// `user:group`.
    pub owner: String,
    /// Host that applies it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub host: Option<String>,
    /// Family that produced it.
    pub family: String,
    /// Site files it came from.
    pub sources: Vec<String>,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version.
    pub format: u32,
    /// What the hashes mean.
    pub note: String,
    /// The branch the hosts follow (the site's `[agent] branch`, when it has one): a
    /// signed commit moved from another branch carries another, and the agent refuses it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub branch: Option<String>,
    /// Every generated file except the manifest itself, sorted by path.
    pub files: Vec<ManifestEntry>,
}

impl Manifest {
    /// The manifest of a set of artifacts.
    pub fn of(set: &ArtifactSet) -> Manifest {
        Manifest {
            format: FORMAT,
            note: "written by `medianest build`; do not edit. sha256 values catch drift and corruption; authenticity comes from signed commits".into(),
            branch: set.values().find_map(|a| a.meta.branch.clone()),
            files: set
                .values()
                .map(|a| ManifestEntry {
                    path: a.meta.path.clone(),
                    sha256: a.sha256().to_string(),
                    size: a.bytes.len() as u64,
                    mode: format!("{:04o}", a.meta.mode),
                    owner: a.meta.owner.clone(),
                    host: a.meta.host.clone(),
                    family: a.meta.family.to_string(),
                    sources: a.meta.sources.clone(),
                })
                .collect(),
        }
    }
}

/// One file in a host's `plan.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanFile {
    /// Absolute path on the host.
    pub target: String,
    /// Path of the content, relative to the host's folder (`root/etc/hosts`).
    pub source: String,
    /// sha256 of the content.
    pub sha256: String,
    /// Octal mode.
    pub mode: String,
    /// `user:group`.
    pub owner: String,
    /// Validation, reload and restart actions.
    #[serde(flatten)]
    pub actions: PlanActions,
}

/// Actions of a plan entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanActions {
    /// Native validation.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub validate: Option<Validator>,
    /// Unit to reload.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reload: Option<String>,
    /// Unit to restart.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub restart: Option<String>,
    /// Check after the reload.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub probe: Option<Probe>,
    /// Containers deployed from the file.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub deploy: Option<Deploy>,
}

/// `hosts/<host>/plan.json`: what the agent on that host applies and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostPlan {
    /// Format version.
    pub format: u32,
    /// Host name.
    pub host: String,
    /// Files, sorted by target path.
    pub files: Vec<PlanFile>,
    /// Units to reload after the swap, sorted and unique.
    pub reload: Vec<String>,
    /// Units to restart after the swap, sorted and unique.
    pub restart: Vec<String>,
    /// Secrets to decrypt with the host key, sorted by name.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub secrets: Vec<PlanSecret>,
}

/// Builds the apply plan of every host from the host files in `set`; `hosts` lists all
/// hosts so that a host with no files still gets an (empty) plan. A plan's sources are
/// the host's own and those of every file it lists.
pub fn host_plans(set: &ArtifactSet, hosts: &[(String, Vec<String>)]) -> Vec<Artifact> {
    // Each host's files, found in one pass over the set.
    let mut by_host: BTreeMap<&str, Vec<&Artifact>> = BTreeMap::new();
    for a in set.values() {
        if let Some(h) = a.meta.host.as_deref() {
            by_host.entry(h).or_default().push(a);
        }
    }
    let mut out = Vec::new();
    for (host, sources) in hosts {
        let mut files: Vec<PlanFile> = by_host
            .get(host.as_str())
            .into_iter()
            .flatten()
            .filter_map(|a| {
                let apply = a.meta.apply.as_ref()?;
                Some(PlanFile {
                    target: apply.target.clone(),
                    source: a.meta.path.trim_start_matches(&format!("hosts/{host}/")).to_string(),
                    sha256: a.sha256().to_string(),
                    mode: format!("{:04o}", a.meta.mode),
                    owner: a.meta.owner.clone(),
                    actions: PlanActions {
                        validate: apply.validate,
                        reload: apply.reload.clone(),
                        restart: apply.restart.clone(),
                        probe: apply.probe,
                        deploy: apply.deploy,
                    },
                })
            })
            .collect();
        files.sort_by(|a, b| a.target.cmp(&b.target));
        let mut reload: Vec<String> = files.iter().filter_map(|f| f.actions.reload.clone()).collect();
        reload.sort();
        reload.dedup();
        let mut restart: Vec<String> = files.iter().filter_map(|f| f.actions.restart.clone()).collect();
        restart.sort();
        restart.dedup();
        let secrets: Vec<PlanSecret> = by_host
            .get(host.as_str())
            .into_iter()
            .flatten()
            .filter_map(|a| {
                let s = a.meta.secret.as_ref()?;
                Some(PlanSecret {
                    name: s.name.clone(),
                    source: a.meta.path.trim_start_matches(&format!("hosts/{host}/")).to_string(),
                    sha256: a.sha256().to_string(),
                    deliveries: s.deliveries.clone(),
                })
            })
            .collect();
        let plan = HostPlan { format: FORMAT, host: host.clone(), files, reload, restart, secrets };
        let mut bytes = serde_json::to_vec_pretty(&plan).expect("plans always serialize");
        bytes.push(b'\n');
        // The plan holds every file's hash: it comes from what they come from.
        let mut sources: Vec<String> = sources.clone();
        sources.extend(by_host.get(host.as_str()).into_iter().flatten().flat_map(|a| a.meta.sources.iter().cloned()));
        sources.sort();
        sources.dedup();
        let mut meta = ArtifactMeta::shared("plan", format!("hosts/{host}/plan.json"), sources);
        meta.host = Some(host.clone());
        out.push(Artifact::new(bytes, meta));
    }
    out
}

/// The bytes of `manifest.json` for a set.
pub fn manifest_bytes(set: &ArtifactSet) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(&Manifest::of(set)).expect("manifests always serialize");
    bytes.push(b'\n');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rel_paths_stay_inside() {
        assert!(check_rel_path("hosts/db1/root/etc/hosts").is_ok());
        for bad in ["", "/etc/x", "a/../b", "a//b", "./a", "a/", "a\\b"] {
            assert!(check_rel_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_plan_names_only_known_validators() {
        let known: PlanActions = serde_json::from_str(r#"{"validate": "haproxy"}"#).unwrap();
        assert_eq!(known.validate, Some(Validator::Haproxy));
        assert_eq!(serde_json::to_string(&known).unwrap(), r#"{"validate":"haproxy"}"#);
        for bad in [r#"{"validate": "sh -c reboot"}"#, r#"{"validate": "Nginx"}"#] {
            assert!(serde_json::from_str::<PlanActions>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plans_list_host_files_sorted() {
        let mut set = ArtifactSet::new();
        for target in ["/etc/b", "/etc/a"] {
            let meta = ArtifactMeta::host_file("base", "h1", target, 0o644, "root:root");
            set.insert(meta.path.clone(), Artifact::new(b"x\n".to_vec(), meta));
        }
        let plans = host_plans(&set, &[("h1".into(), vec![]), ("h2".into(), vec![])]);
        let p: HostPlan = serde_json::from_slice(&plans[0].bytes).unwrap();
        assert_eq!(p.files.iter().map(|f| f.target.as_str()).collect::<Vec<_>>(), ["/etc/a", "/etc/b"]);
        assert_eq!(p.files[0].source, "root/etc/a");
        let p2: HostPlan = serde_json::from_slice(&plans[1].bytes).unwrap();
        assert!(p2.files.is_empty());
    }
}
