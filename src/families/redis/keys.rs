//! Redis's own keys on `[services.<name>]`: memory limit, eviction and persistence.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::diag::Diagnostics;
use crate::families::{Part, parts_of, service_keys};
use crate::load::schema::{Named, Str};
use crate::model::values::{Duration, Size, ValueError};
use crate::model::{At, ServiceId, ServiceKind, Site};
use crate::resolve::cx::Cx;

crate::keys! {
    /// Redis's keys in one site file.
    #[derive(Debug, Default, Deserialize)]
    pub struct RedisFile {
        /// Redis's keys on services.
        #[serde(default)]
        pub services: Named<RedisService>,
    }
}

crate::keys! {
    /// Redis's keys of `[services.<name>]` (`kind = "redis"` only).
    #[derive(Debug, Deserialize)]
    pub struct RedisService {
        /// Memory for data before `maxmemory_policy` applies (`256m`; default half the service's `resources.memory`, at least 1m). Above the service's memory limit is an error; leave headroom for the fork of AOF rewrites and RDB saves, which copies the pages written meanwhile.
        pub maxmemory: Option<Str>,
        /// What Redis does at `maxmemory` (default `noeviction`: writes fail, nothing is dropped, what job queues such as Bull need): `noeviction`, `allkeys-lru`, `allkeys-lfu`, `allkeys-random`, `volatile-lru`, `volatile-lfu`, `volatile-random` or `volatile-ttl`.
        pub maxmemory_policy: Option<Str>,
        /// Append-only file persistence (default `true`): every write is logged and replayed at start.
        pub appendonly: Option<Spanned<bool>>,
        /// When the append-only file is flushed to disk (default `everysec`: at most a second of writes lost): `always`, `everysec` or `no` (the kernel decides).
        pub appendfsync: Option<Str>,
        /// RDB snapshot interval (default `1h`): `save <seconds> 1`, a snapshot when at least one key changed in that time (what the backup ships), or `off` for none.
        pub save: Option<Str>,
    }
}

/// The eviction policies, as Redis writes them.
pub const POLICIES: &[(&str, &str)] = &[
    ("noeviction", "noeviction"),
    ("allkeys-lru", "allkeys-lru"),
    ("allkeys-lfu", "allkeys-lfu"),
    ("allkeys-random", "allkeys-random"),
    ("volatile-lru", "volatile-lru"),
    ("volatile-lfu", "volatile-lfu"),
    ("volatile-random", "volatile-random"),
    ("volatile-ttl", "volatile-ttl"),
];
/// `appendfsync` values.
pub const FSYNC: &[(&str, &str)] = &[("always", "always"), ("everysec", "everysec"), ("no", "no")];
/// The RDB interval when a service writes none.
pub const DEFAULT_SAVE: Duration = Duration(3600);
/// The least `maxmemory`.
pub const MIN_MAXMEMORY: u64 = 1 << 20;

/// The redis family's model: what each service writes, where.
#[derive(Debug, Default)]
pub struct Model {
    /// `maxmemory`.
    pub maxmemory: BTreeMap<ServiceId, At<Size>>,
    /// `maxmemory_policy`.
    pub maxmemory_policy: BTreeMap<ServiceId, At<&'static str>>,
    /// `appendonly`.
    pub appendonly: BTreeMap<ServiceId, At<bool>>,
    /// `appendfsync`.
    pub appendfsync: BTreeMap<ServiceId, At<&'static str>>,
    /// `save` (`None`: off).
    pub save: BTreeMap<ServiceId, At<Option<Duration>>>,
}

impl Model {
    /// A service's `maxmemory` (default: half its memory), and where it is decided.
    pub fn maxmemory(&self, site: &Site, id: ServiceId) -> At<Size> {
        let s = site.service(id);
        self.maxmemory.get(&id).cloned().unwrap_or_else(|| At {
            value: Size((s.resources.memory.0 / 2).max(MIN_MAXMEMORY) >> 20 << 20),
            loc: s.loc.clone(),
        })
    }
    /// A service's eviction policy.
    pub fn maxmemory_policy(&self, site: &Site, id: ServiceId) -> At<&'static str> {
        self.maxmemory_policy
            .get(&id)
            .cloned()
            .unwrap_or_else(|| At { value: "noeviction", loc: site.service(id).loc.clone() })
    }
    /// Whether the service keeps an append-only file.
    pub fn appendonly(&self, site: &Site, id: ServiceId) -> At<bool> {
        self.appendonly.get(&id).cloned().unwrap_or_else(|| At { value: true, loc: site.service(id).loc.clone() })
    }
    /// A service's `appendfsync`.
    pub fn appendfsync(&self, site: &Site, id: ServiceId) -> At<&'static str> {
        self.appendfsync
            .get(&id)
            .cloned()
            .unwrap_or_else(|| At { value: "everysec", loc: site.service(id).loc.clone() })
    }
    /// A service's RDB interval (`None`: no snapshots).
    pub fn save(&self, site: &Site, id: ServiceId) -> At<Option<Duration>> {
        self.save
            .get(&id)
            .cloned()
            .unwrap_or_else(|| At { value: Some(DEFAULT_SAVE), loc: site.service(id).loc.clone() })
    }
}

/// `off`, or a duration of at least a minute.
fn save(s: &str) -> Result<Option<Duration>, ValueError> {
    if s == "off" {
        return Ok(None);
    }
    let d = Duration::parse(s)
        .map_err(|e| ValueError { help: format!("{}, or `off` for no RDB snapshots", e.help), ..e })?;
    if d.0 < 60 {
        return Err(ValueError {
            code: "bad-value",
            message: format!("an RDB snapshot every {s} would fork Redis all the time"),
            help: "snapshot at most once a minute (`1h` is usual), or write `off`".into(),
        });
    }
    Ok(Some(d))
}

/// Types Redis's keys of every file.
pub fn resolve(parts: &[Part], site: &Site, diags: &mut Diagnostics) -> Model {
    let files = parts_of::<RedisFile>(parts);
    let services: Vec<_> = files.iter().map(|(f, x)| (*f, &x.services)).collect();
    let mut out = Model::default();
    for (file, id, k) in service_keys(site, &services) {
        let svc = site.service(id);
        let mut cx = Cx::new(file, site, diags);
        if svc.declared.kind_known && svc.kind.value != ServiceKind::Redis {
            let spans = [
                ("maxmemory", k.maxmemory.as_ref().map(|v| v.span())),
                ("maxmemory_policy", k.maxmemory_policy.as_ref().map(|v| v.span())),
                ("appendonly", k.appendonly.as_ref().map(|v| v.span())),
                ("appendfsync", k.appendfsync.as_ref().map(|v| v.span())),
                ("save", k.save.as_ref().map(|v| v.span())),
            ];
            for (key, span) in spans {
                if let Some(span) = span {
                    cx.not_for_kind(key, "redis", svc, span);
                }
            }
            continue;
        }
        if let Some(v) = k.maxmemory.as_ref().and_then(|v| cx.value(v, Size::parse)) {
            out.maxmemory.insert(id, v);
        }
        if let Some(v) = k.maxmemory_policy.as_ref().and_then(|v| cx.vocabulary(v, "eviction policy", POLICIES)) {
            out.maxmemory_policy.insert(id, v);
        }
        if let Some(v) = &k.appendonly {
            let loc = cx.loc(v.span());
            out.appendonly.insert(id, At { value: *v.get_ref(), loc });
        }
        if let Some(v) = k.appendfsync.as_ref().and_then(|v| cx.vocabulary(v, "appendfsync", FSYNC)) {
            out.appendfsync.insert(id, v);
        }
        if let Some(v) = k.save.as_ref().and_then(|v| cx.value(v, save)) {
            out.save.insert(id, v);
        }
    }
    out
}
