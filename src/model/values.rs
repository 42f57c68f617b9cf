//! Typed scalar values and their parsers.
//!
//! Everything a template can print passes through one of these parsers at load time, so
//! a value that could inject a directive into a config (a newline, `;`, `{`, `}`, a
//! quote, `#`, `$`, a backtick or a backslash) never reaches the renderer. Each parser
//! returns a [`ValueError`] with the message and the fix, which `resolve` turns into a
//! diagnostic at the value's span.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::Serialize;

/// Why a value was rejected, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError {
    /// The diagnostic code: `bad-value`, or `secret-value` for a credential.
    pub code: &'static str,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub help: String,
}

fn err<T>(message: impl Into<String>, help: impl Into<String>) -> Result<T, ValueError> {
    Err(ValueError { code: "bad-value", message: message.into(), help: help.into() })
}

/// A host's SSH host public key: `ssh-ed25519 AAAA… [comment]`.
pub fn ssh_host_key(s: &str) -> Result<crate::secrets::Recipient, ValueError> {
    let help = "copy the line of `/etc/ssh/ssh_host_ed25519_key.pub` on the host (`ssh-keyscan -t ed25519 <host>`)";
    match crate::secrets::parse_recipient(s) {
        Ok(r @ crate::secrets::Recipient::Ssh(_)) => Ok(r),
        Ok(_) => err("a host key is the host's SSH key, not an age key", help),
        Err(e) => err(e, help),
    }
}

/// An operator's recovery key: `age1…` or `ssh-ed25519 AAAA… [comment]`.
pub fn recovery_key(s: &str) -> Result<crate::secrets::Recipient, ValueError> {
    crate::secrets::parse_recipient(s).map_err(|e| ValueError {
        code: "bad-value",
        message: e,
        help:
            "write an age public key (`age-keygen -y key.txt`) or an SSH public key line (`cat ~/.ssh/id_ed25519.pub`)"
                .into(),
    })
}

/// Characters that could start a new directive, comment or interpolation in some
/// target format, and are therefore never accepted in site values.
pub const FORBIDDEN_CHARS: &[char] = &[';', '{', '}', '"', '\'', '#', '`', '$', '\\'];

pub use crate::diag::is_invisible;

/// `U+XXXX`, for messages about a character that cannot be shown.
pub fn code_point(c: char) -> String {
    format!("U+{:04X}", c as u32)
}

/// Free text (descriptions, `why`): one line, printable, none of [`FORBIDDEN_CHARS`],
/// no invisible characters, no credentials.
pub fn text(s: &str) -> Result<String, ValueError> {
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return err(
            format!("text contains the control character {c:?}"),
            "keep descriptions on one line without tabs or control characters",
        );
    }
    if let Some(c) = s.chars().find(|c| is_invisible(*c)) {
        return err(
            format!("text contains the invisible character {} ({c:?})", code_point(c)),
            "remove it: line separators, bidirectional overrides and zero-width characters hide or reorder what a reviewer reads",
        );
    }
    if looks_like_secret_value(s) {
        return Err(ValueError {
            code: "secret-value",
            message: "this text holds what looks like a credential".into(),
            help: "never write credentials in the site; provision them as secrets and refer to them by name".into(),
        });
    }
    if let Some(c) = s.chars().find(|c| FORBIDDEN_CHARS.contains(c)) {
        return err(
            format!("text contains `{c}`, which could inject a directive into a generated config"),
            "rephrase without ; { } quotes # $ ` or backslashes",
        );
    }
    let n = s.chars().count();
    if n > 200 {
        return err(format!("text is {n} characters long, more than 200"), "keep it to one short sentence");
    }
    Ok(s.to_string())
}

/// What an identifier may be used for; each use has its own character set.
#[derive(Debug, Clone, Copy)]
pub enum NameKind {
    /// Hosts and services: DNS labels (`[a-z][a-z0-9-]*`, at most 63).
    Label,
    /// Zones, networks, backups, ports, volumes: `[a-z][a-z0-9_-]*`.
    Ident,
    /// Secrets: `[a-z][a-z0-9_]*`.
    Secret,
    /// Environment variables: `[A-Z_][A-Z0-9_]*`.
    Env,
}

/// An identifier of the given kind.
pub fn name(s: &str, kind: NameKind) -> Result<String, ValueError> {
    type CharRule = fn(char) -> bool;
    let (ok_first, ok_rest, rule): (CharRule, CharRule, &str) = match kind {
        NameKind::Label => (
            |c| c.is_ascii_lowercase(),
            |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-',
            "lowercase letters, digits and `-`, starting with a letter (it becomes a DNS name)",
        ),
        NameKind::Ident => (
            |c| c.is_ascii_lowercase(),
            |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_',
            "lowercase letters, digits, `-` and `_`, starting with a letter",
        ),
        NameKind::Secret => (
            |c| c.is_ascii_lowercase(),
            |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_',
            "lowercase letters, digits and `_`, starting with a letter",
        ),
        NameKind::Env => (
            |c| c.is_ascii_uppercase() || c == '_',
            |c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_',
            "uppercase letters, digits and `_`",
        ),
    };
    let mut chars = s.chars();
    let valid = match chars.next() {
        Some(c) => ok_first(c) && chars.all(ok_rest),
        None => false,
    };
    if let Some(c) = s.chars().find(|c| !c.is_ascii()) {
        return err(
            format!("`{}` is not a valid name: `{c}` ({}) is not ASCII", printable(s), code_point(c)),
            format!("use {rule}; a look-alike letter from another script makes another name"),
        );
    }
    if !valid || s.len() > 63 || s.ends_with('-') {
        return err(format!("`{}` is not a valid name", printable(s)), format!("use {rule}, at most 63 characters"));
    }
    Ok(s.to_string())
}

/// A value shown inside a message: control characters escaped, length capped.
pub fn printable(s: &str) -> String {
    let mut out: String = s.chars().take(60).flat_map(|c| c.escape_debug()).collect();
    if s.chars().count() > 60 {
        out.push('…');
    }
    out.replace('`', "'")
}

/// A DNS name such as `media.example.org`.
pub fn dns_name(s: &str) -> Result<String, ValueError> {
    let bad = || {
        err(
            format!("`{}` is not a valid DNS name", printable(s)),
            "use lowercase labels of letters, digits and `-` separated by dots, e.g. `media.example.org`",
        )
    };
    if s.is_empty() || s.len() > 253 {
        return bad();
    }
    for label in s.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok {
            return bad();
        }
    }
    Ok(s.to_string())
}

/// An IP address.
/// An IPv4 address written as IPv4-mapped IPv6 (`::ffff:10.1.2.10`) is that IPv4
/// address: compared as written, it escaped the overlap and duplicate checks.
pub fn address(s: &str) -> Result<IpAddr, ValueError> {
    let addr = IpAddr::from_str(s).or_else(|_| {
        err(
            format!("`{}` is not an IP address", printable(s)),
            if s.contains('/') {
                "write the address without a prefix length, e.g. `10.0.3.11`"
            } else {
                "write an address such as `10.0.3.11`"
            },
        )
    })?;
    Ok(match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(addr),
        v4 => v4,
    })
}

/// A network in CIDR notation with no host bits set.
pub fn cidr(s: &str) -> Result<IpNet, ValueError> {
    let net = IpNet::from_str(s).or_else(|_| {
        err(format!("`{}` is not a network in CIDR notation", printable(s)), "write it as `10.0.3.0/24`")
    })?;
    if net != net.trunc() {
        return err(
            format!("`{s}` has host bits set"),
            format!("did you mean `{}`? a network address has all host bits zero", net.trunc()),
        );
    }
    // IPv4-mapped IPv6 (`::ffff:10.1.2.0/120`) is the IPv4 network it maps.
    if let IpNet::V6(v6) = net
        && v6.prefix_len() >= 96
        && let Some(v4) = v6.network().to_ipv4_mapped()
        && let Ok(n) = ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
    {
        return Ok(IpNet::V4(n));
    }
    Ok(net)
}

/// A duration in whole seconds, written `30s`, `5m`, `4h`, `30d` or `2w`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub u64);

impl Duration {
    /// Parses `30s`, `5m`, `4h`, `30d`, `2w`.
    pub fn parse(s: &str) -> Result<Self, ValueError> {
        let help = "write a whole number and a unit: `30s`, `5m`, `4h`, `30d` or `2w`";
        let Some(unit) = s.chars().last() else {
            return err("empty duration", help);
        };
        let num: u64 = match s[..s.len() - unit.len_utf8()].parse() {
            Ok(n) => n,
            Err(_) => return err(format!("`{}` is not a duration", printable(s)), help),
        };
        let mult = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            'w' => 604800,
            _ => {
                return err(format!("`{}` has an unknown duration unit", printable(s)), help);
            }
        };
        if num == 0 {
            return err("a duration must be greater than zero", help);
        }
        num.checked_mul(mult).map(Duration).ok_or_else(|| ValueError {
            code: "bad-value",
            message: format!("`{s}` is too long"),
            help: help.into(),
        })
    }
}

/// The most a target accepts of a value it renders: `max`, and how the message names the
/// target and the limit. The site's types are wider than some targets (a `u64` of
/// seconds, of bytes), so a value each target would refuse is refused at load time, with
/// the limit, instead of reaching a config the tool rejects on the host.
pub struct Limit<T> {
    /// The largest value accepted.
    pub max: T,
    /// What holds the value, e.g. `HAProxy's timers`.
    pub target: &'static str,
    /// The limit as the target states it, e.g. `2147483647 ms, about 24.8 days`.
    pub limit: &'static str,
}

/// HAProxy's timers (`inter`, `timeout`): 2^31 - 1 milliseconds.
pub const HAPROXY_TIMER: Limit<Duration> =
    Limit { max: Duration(2_147_483), target: "HAProxy's timers", limit: "2147483647 ms, about 24.8 days" };

/// systemd's time spans (`OnUnitActiveSec=`, `RandomizedDelaySec=`): microseconds in a
/// `u64`, all ones meaning infinity (`systemd-analyze timespan` refuses one second more).
pub const SYSTEMD_TIMESPAN: Limit<Duration> = Limit {
    max: Duration(18_446_744_073_708),
    target: "systemd's time spans",
    limit: "2^64 - 2 µs, about 584,542 years",
};

/// nginx's sizes (`client_max_body_size`): an `off_t`, 2^63 - 1 bytes (`nginx -t`
/// refuses `8589934592g`).
pub const NGINX_SIZE: Limit<Size> =
    Limit { max: Size(i64::MAX as u64), target: "nginx's client_max_body_size", limit: "2^63 - 1 bytes" };

fn beyond<T>(s: &str, limit: &Limit<T>, at_most: String) -> ValueError {
    ValueError {
        code: "bad-value",
        message: format!("`{}` is more than {} can hold: at most {}", printable(s), limit.target, limit.limit),
        help: format!("use at most `{at_most}`"),
    }
}

/// pgBackRest's `repo1-retention-full` (type `time`), which a `pg-basebackup` policy's
/// retention becomes in whole days: at most 9999999 (`10000000` is out of range).
pub const PGBACKREST_RETENTION: Limit<Duration> =
    Limit { max: Duration(9_999_999 * 86400), target: "pgBackRest's repo1-retention-full", limit: "9999999 days" };

impl Limit<Duration> {
    /// `d`, written `s`, when it is within the limit.
    pub fn check(&self, d: Duration, s: &str) -> Result<Duration, ValueError> {
        if d > self.max {
            // The limit rounded down to whole days: a value one can write.
            let days = self.max.0 / 86400;
            let at_most = if days > 0 { format!("{days}d") } else { self.max.to_string() };
            return Err(beyond(s, self, at_most));
        }
        Ok(d)
    }
}

impl Duration {
    /// A parser of durations no longer than `limit`.
    pub fn within(limit: &'static Limit<Duration>) -> impl Fn(&str) -> Result<Duration, ValueError> {
        move |s| limit.check(Duration::parse(s)?, s)
    }
}

impl fmt::Display for Duration {
    /// The largest unit that divides the value exactly: 7200 → `2h`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.in_units(&[("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)]))
    }
}

impl Duration {
    /// In the largest of `units` (`(suffix, seconds)`, largest first) that divides the
    /// value exactly, else in seconds.
    fn in_units(&self, units: &[(&str, u64)]) -> String {
        match units.iter().find(|(_, secs)| self.0.is_multiple_of(*secs)) {
            Some((unit, secs)) => format!("{}{unit}", self.0 / secs),
            None => format!("{}s", self.0),
        }
    }

    /// As Go's `time.ParseDuration` reads it (Compose and Swarm health checks): hours at
    /// most, no `d` or `w` (`docker stack config`: `interval: 1d` does not match format
    /// 'duration').
    pub fn go(&self) -> String {
        self.in_units(&[("h", 3600), ("m", 60)])
    }

    /// As Elasticsearch reads a time value (an ILM phase's `min_age`): days at most, no
    /// `w`.
    pub fn elasticsearch(&self) -> String {
        self.in_units(&[("d", 86400), ("h", 3600), ("m", 60)])
    }
}

impl Serialize for Duration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A size in bytes, written `64m`, `1g` (binary units k, m, g, t).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Size(pub u64);

impl Size {
    /// Parses `512k`, `64m`, `1g`, `2t` (case-insensitive unit, optional `b`).
    pub fn parse(s: &str) -> Result<Self, ValueError> {
        let help = "write a whole number and a unit: `512k`, `64m`, `1g` or `2t`";
        let lower = s.to_ascii_lowercase();
        let t = lower.strip_suffix('b').unwrap_or(&lower);
        let Some(unit) = t.chars().last() else {
            return err("empty size", help);
        };
        let mult: u64 = match unit {
            'k' => 1 << 10,
            'm' => 1 << 20,
            'g' => 1 << 30,
            't' => 1 << 40,
            _ => return err(format!("`{}` has no size unit", printable(s)), help),
        };
        let num: u64 = t[..t.len() - 1].parse().or_else(|_| err(format!("`{}` is not a size", printable(s)), help))?;
        if num == 0 {
            return err("a size must be greater than zero", help);
        }
        num.checked_mul(mult).map(Size).ok_or_else(|| ValueError {
            code: "bad-value",
            message: format!("`{s}` is too large"),
            help: help.into(),
        })
    }

    /// Mebibytes, rounded down.
    pub fn mib(&self) -> u64 {
        self.0 >> 20
    }
}

impl fmt::Display for Size {
    /// The largest unit that divides the value exactly: 1073741824 → `1g`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, shift) in [("t", 40), ("g", 30), ("m", 20), ("k", 10)] {
            if self.0.is_multiple_of(1u64 << shift) {
                return write!(f, "{}{unit}", self.0 >> shift);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl Size {
    /// As nginx writes a size (`client_max_body_size`): `k`, `m` or `g`, no `t`.
    pub fn nginx(&self) -> String {
        for (unit, shift) in [("g", 30), ("m", 20), ("k", 10)] {
            if self.0.is_multiple_of(1u64 << shift) {
                return format!("{}{unit}", self.0 >> shift);
            }
        }
        self.0.to_string()
    }
}

impl Size {
    /// A parser of sizes no larger than `limit`.
    pub fn within(limit: &'static Limit<Size>) -> impl Fn(&str) -> Result<Size, ValueError> {
        move |s| {
            let v = Size::parse(s)?;
            if v > limit.max {
                // The limit rounded down to its largest unit: a value one can write.
                let (unit, shift) = [("t", 40), ("g", 30), ("m", 20), ("k", 10)]
                    .into_iter()
                    .find(|(_, b)| limit.max.0 >> b > 0)
                    .unwrap_or(("k", 10));
                return Err(beyond(s, limit, format!("{}{unit}", limit.max.0 >> shift)));
            }
            Ok(v)
        }
    }
}

impl Serialize for Size {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The protocol of a port, or an IP protocol that has no ports (VRRP between a
/// keepalived pair, ICMP echo): a firewall passes those by protocol alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// VRRP (IP protocol 112), written `vrrp`.
    Vrrp,
    /// ICMP echo (ping), written `icmp`.
    Icmp,
}

impl Proto {
    /// Whether the protocol has port numbers.
    pub fn has_ports(self) -> bool {
        matches!(self, Proto::Tcp | Proto::Udp)
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Vrrp => "vrrp",
            Proto::Icmp => "icmp",
        })
    }
}

/// A protocol and port number, written `tcp/5432` (or just `5432` for TCP); `vrrp` and
/// `icmp` are written alone and carry port 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortSpec {
    /// Protocol.
    pub proto: Proto,
    /// Port number, 1–65535.
    pub port: u16,
}

impl PortSpec {
    /// A number (TCP) or `tcp/N` / `udp/N`.
    pub fn parse_int(n: i64) -> Result<Self, ValueError> {
        match u16::try_from(n) {
            Ok(p) if p > 0 => Ok(PortSpec { proto: Proto::Tcp, port: p }),
            _ => err(format!("port {n} is out of range"), "use a port from 1 to 65535"),
        }
    }

    /// `tcp/N`, `udp/N`, `vrrp` or `icmp`; `None` when `s` is none of those (it may be
    /// a port name).
    pub fn parse_str(s: &str) -> Option<Result<Self, ValueError>> {
        match s {
            "vrrp" => return Some(Ok(PortSpec { proto: Proto::Vrrp, port: 0 })),
            "icmp" => return Some(Ok(PortSpec { proto: Proto::Icmp, port: 0 })),
            _ => {}
        }
        let (proto, num) = s.split_once('/')?;
        let proto = match proto {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            _ => {
                return Some(err(
                    format!("unknown protocol `{}`", printable(proto)),
                    "use `tcp/N` or `udp/N` (or `vrrp` / `icmp` alone, which have no ports)",
                ));
            }
        };
        Some(match num.parse::<i64>() {
            Ok(n) => PortSpec::parse_int(n).map(|p| PortSpec { proto, ..p }),
            Err(_) => err(
                format!("`{}` is not a port number", printable(num)),
                "use `tcp/N` or `udp/N` with N from 1 to 65535",
            ),
        })
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.proto.has_ports() { write!(f, "{}/{}", self.proto, self.port) } else { write!(f, "{}", self.proto) }
    }
}

impl Serialize for PortSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A container image reference with a pinned tag or digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Image {
    /// Registry and repository, e.g. `ghcr.io/medianest/backend`.
    pub repository: String,
    /// Tag, e.g. `1.4.2`.
    pub tag: Option<String>,
    /// Digest, e.g. `sha256:…`.
    pub digest: Option<String>,
}

impl Image {
    /// Parses `repo[:tag][@sha256:hex]` and requires a pin other than `latest`.
    pub fn parse(s: &str) -> Result<Self, ValueError> {
        let bad = || {
            err(
                format!("`{}` is not a valid image reference", printable(s)),
                "write `registry/repository:tag`, e.g. `ghcr.io/medianest/backend:1.4.2`",
            )
        };
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                let ok = d
                    .strip_prefix("sha256:")
                    .is_some_and(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()));
                if !ok {
                    return err(
                        format!("`{}` has an invalid digest", printable(s)),
                        "a digest is `sha256:` followed by 64 hex digits",
                    );
                }
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        let slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (repository, tag) = match rest[slash..].rfind(':') {
            Some(i) => (&rest[..slash + i], Some(&rest[slash + i + 1..])),
            None => (rest, None),
        };
        let repo_ok = !repository.is_empty()
            && repository.split('/').all(|part| {
                !part.is_empty()
                    && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-:".contains(c))
            });
        if !repo_ok {
            return bad();
        }
        if let Some(t) = tag {
            let ok =
                !t.is_empty() && t.len() <= 128 && t.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
            if !ok {
                return bad();
            }
        }
        match (tag, &digest) {
            (None, None) => err(
                format!("image `{}` has no tag, so it silently means `latest`", printable(s)),
                format!("pin a version, e.g. `{repository}:1.2.3`, or a digest `@sha256:…`"),
            ),
            (Some("latest"), None) => err(
                format!("image `{}` is pinned to `latest`, which changes under you", printable(s)),
                format!("pin a version, e.g. `{repository}:1.2.3`, or a digest `@sha256:…`"),
            ),
            _ => Ok(Image { repository: repository.to_string(), tag: tag.map(str::to_string), digest }),
        }
    }
}

impl fmt::Display for Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// An absolute path (container mount point, HTTP path): `/` followed by
/// `[A-Za-z0-9._~/-]`, no `..` segment.
pub fn abs_path(s: &str) -> Result<String, ValueError> {
    let ok = s.starts_with('/')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "._~/-".contains(c))
        && !s.split('/').any(|seg| seg == "..")
        && s.len() <= 200;
    if !ok {
        return err(
            format!("`{}` is not a clean absolute path", printable(s)),
            "start with `/` and use letters, digits, `.`, `_`, `~`, `-` and `/` only (no spaces, `..` or `;`)",
        );
    }
    Ok(s.to_string())
}

/// A container user: `uid`, `uid:gid` or a user name.
pub fn user(s: &str) -> Result<String, ValueError> {
    let part_ok = |p: &str| {
        !p.is_empty()
            && (p.chars().all(|c| c.is_ascii_digit())
                || (p.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                    && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')))
    };
    let ok = match s.split_once(':') {
        Some((u, g)) => part_ok(u) && part_ok(g),
        None => part_ok(s),
    };
    if !ok {
        return err(format!("`{}` is not a user", printable(s)), "write `uid:gid` such as `1001:1001`");
    }
    Ok(s.to_string())
}

/// Whether a container user is root: `root`, or uid 0 however it is written (`0`, `00`).
pub fn is_root_user(u: &str) -> bool {
    let first = u.split(':').next().unwrap_or(u);
    first == "root" || (!first.is_empty() && first.chars().all(|c| c == '0'))
}

/// A git branch name, by git's ref-name rules (`git check-ref-format --branch`): what
/// hosts fetch must be a name git accepts, and never an option (`--upload-pack`).
pub fn branch(s: &str) -> Result<String, ValueError> {
    let bad_char = |c: char| c.is_ascii_control() || c == ' ' || "~^:?*[\\".contains(c) || !c.is_ascii();
    let ok = !s.is_empty()
        && s.len() <= 200
        && !s.starts_with('-')
        && !s.starts_with('/')
        && !s.ends_with('/')
        && !s.ends_with('.')
        && !s.ends_with(".lock")
        && s != "@"
        && !s.contains("..")
        && !s.contains("@{")
        && !s.contains("//")
        && !s.split('/').any(|c| c.starts_with('.') || c.ends_with(".lock"))
        && !s.chars().any(bad_char);
    if !ok {
        return err(
            if s.is_empty() {
                "an empty branch name is not one git accepts".to_string()
            } else {
                format!("`{}` is not a branch name git accepts", printable(s))
            },
            "use letters, digits, `-`, `_`, `.` and `/` (no `..`, no leading `-` or `.`), e.g. `main` or `release/2026`",
        );
    }
    Ok(s.to_string())
}

/// A word of a command line (health `exec`): printable, no spaces or shell metacharacters.
pub fn word(s: &str) -> Result<String, ValueError> {
    let ok = !s.is_empty()
        && s.len() <= 200
        && s.chars().all(|c| c.is_ascii_graphic() && !FORBIDDEN_CHARS.contains(&c) && !"|&<>()*?![]".contains(c));
    if !ok {
        return err(
            format!("`{}` is not a plain command-line word", printable(s)),
            "commands run without a shell: one word per list item, no spaces or shell metacharacters",
        );
    }
    Ok(s.to_string())
}

/// Names that suggest someone is about to write a secret into the site.
pub fn looks_like_secret_name(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "passwd", "secret", "token", "api_key", "apikey", "private_key", "credential"]
        .iter()
        .any(|w| k.contains(w))
        || k.ends_with("_key")
        || k == "key"
}

/// Prefixes of well-known credential formats.
const SECRET_VALUE_PREFIXES: &[&str] =
    &["-----BEGIN", "ghp_", "gho_", "github_pat_", "glpat-", "xoxb-", "xoxp-", "AKIA", "sk_live_", "sk-"];

/// Whether a value holds something shaped like a credential anywhere in it: a token
/// that starts like a well-known key format (`--access AKIA…`, `Bearer xoxb-…`), a PEM
/// block, or `user:password@` (in a URL or not).
pub fn looks_like_secret_value(v: &str) -> bool {
    if v.contains("-----BEGIN") {
        return true;
    }
    v.split(|c: char| c.is_whitespace() || "=,(<>\"'".contains(c)).any(|token| {
        if SECRET_VALUE_PREFIXES.iter().any(|p| token.starts_with(p)) {
            return true;
        }
        // user:password@ — after `scheme://` when there is one.
        let rest = token.split_once("://").map(|(_, r)| r).unwrap_or(token);
        match rest.split_once('@') {
            Some((userinfo, _)) => {
                userinfo.split_once(':').is_some_and(|(u, p)| !u.is_empty() && !p.is_empty() && !userinfo.contains('/'))
            }
            None => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_credentials() {
        assert!(looks_like_secret_value("postgres://app:hunter2@db:5432/app"));
        assert!(looks_like_secret_value("ghp_abcdef"));
        assert!(looks_like_secret_value("--access AKIAABCDEFGHIJKLMNOP"));
        assert!(looks_like_secret_value("Bearer xoxb-123-456"));
        assert!(looks_like_secret_value("key: -----BEGIN PRIVATE KEY-----"));
        assert!(looks_like_secret_value("the admin:hunter2@ account"));
        assert!(!looks_like_secret_value("postgres://app@db:5432/app"));
        assert!(!looks_like_secret_value("production"));
        assert!(!looks_like_secret_value("ssh://git@host:22/site.git"));
        assert!(!looks_like_secret_value("at 10:30 every day, mail ops@lab"));
    }

    #[test]
    fn text_refuses_invisible_characters_and_counts_characters() {
        for bad in ["a\u{2028}b", "a\u{202E}b", "a\u{2066}b", "a\u{200B}b", "a\u{0085}b", "a\u{FEFF}"] {
            assert!(text(bad).is_err(), "{bad:?}");
        }
        let e = text(&"é".repeat(201)).unwrap_err();
        assert_eq!(e.message, "text is 201 characters long, more than 200");
        assert!(text(&"é".repeat(150)).is_ok(), "150 characters of 2 bytes each are fine");
        assert_eq!(text("admin:hunter2@ is the account").unwrap_err().code, "secret-value");
    }

    #[test]
    fn names_say_which_character_is_not_ascii() {
        let e = name("\u{0430}pp1", NameKind::Label).unwrap_err();
        assert!(e.message.contains("U+0430"), "{}", e.message);
    }

    #[test]
    fn nginx_sizes_have_no_t_suffix() {
        assert_eq!(Size::parse("1t").unwrap().nginx(), "1024g");
        assert_eq!(Size::parse("8m").unwrap().nginx(), "8m");
        assert_eq!(Size::parse("1536k").unwrap().nginx(), "1536k");
    }

    #[test]
    fn go_and_elasticsearch_durations_have_no_weeks() {
        let two_weeks = Duration::parse("2w").unwrap();
        assert_eq!(two_weeks.to_string(), "2w");
        assert_eq!(two_weeks.go(), "336h");
        assert_eq!(two_weeks.elasticsearch(), "14d");
        assert_eq!(Duration::parse("90s").unwrap().go(), "90s");
        assert_eq!(Duration::parse("36h").unwrap().elasticsearch(), "36h");
    }

    #[test]
    fn limits_name_the_target_and_the_largest_value() {
        let inter = Duration::within(&HAPROXY_TIMER);
        assert_eq!(inter("2147483s").unwrap(), Duration(2_147_483));
        let e = inter("2147484s").unwrap_err();
        assert!(e.message.contains("2147483647 ms"), "{}", e.message);
        assert_eq!(e.help, "use at most `24d`");
        assert!(Duration::within(&SYSTEMD_TIMESPAN)("999999999999w").is_err());
        let body = Size::within(&NGINX_SIZE);
        assert_eq!(body("8388607t").unwrap().nginx(), "8589933568g");
        assert_eq!(body("8388608t").unwrap_err().help, "use at most `8388607t`");
    }

    #[test]
    fn ipv4_mapped_ipv6_is_ipv4() {
        assert_eq!(address("::ffff:10.1.2.10").unwrap(), address("10.1.2.10").unwrap());
        assert_eq!(cidr("::ffff:10.1.2.0/120").unwrap(), cidr("10.1.2.0/24").unwrap());
        assert!(address("fd00::1").unwrap().is_ipv6());
    }

    #[test]
    fn root_by_any_spelling() {
        for u in ["0", "00", "000:1000", "root", "root:root"] {
            assert!(is_root_user(u), "{u}");
        }
        for u in ["1001", "10", "rooty"] {
            assert!(!is_root_user(u), "{u}");
        }
    }

    #[test]
    fn branch_names_follow_git() {
        for ok in ["main", "release/2026", "feature-x_1.2"] {
            assert!(branch(ok).is_ok(), "{ok}");
        }
        for bad in ["", "--upload-pack", "x..y", "a b", "/main", "main/", "main.lock", ".hidden", "a@{b", "@", "a//b"] {
            assert!(branch(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn durations_parse_and_print_canonically() {
        assert_eq!(Duration::parse("4h").unwrap().0, 14400);
        assert_eq!(Duration::parse("90m").unwrap().to_string(), "90m");
        assert_eq!(Duration::parse("120m").unwrap().to_string(), "2h");
        assert!(Duration::parse("4").is_err());
        assert!(Duration::parse("h").is_err());
        assert!(Duration::parse("0s").is_err());
        assert!(Duration::parse("99999999999999999w").is_err());
    }

    #[test]
    fn sizes_parse_and_print_canonically() {
        assert_eq!(Size::parse("1g").unwrap().0, 1 << 30);
        assert_eq!(Size::parse("1024M").unwrap().to_string(), "1g");
        assert_eq!(Size::parse("512mb").unwrap().mib(), 512);
        assert!(Size::parse("12").is_err());
        assert!(Size::parse("-1g").is_err());
    }

    #[test]
    fn cidrs_reject_host_bits() {
        assert!(cidr("10.0.3.0/24").is_ok());
        let e = cidr("10.0.3.5/24").unwrap_err();
        assert!(e.help.contains("10.0.3.0/24"), "{e:?}");
        assert!(cidr("10.0.3.0").is_err());
    }

    #[test]
    fn images_must_be_pinned() {
        assert_eq!(Image::parse("ghcr.io/medianest/backend:1.4.2").unwrap().tag.as_deref(), Some("1.4.2"));
        assert!(Image::parse("localhost:5000/app:1.0").is_ok());
        assert!(Image::parse("redis").unwrap_err().message.contains("no tag"));
        assert!(Image::parse("redis:latest").unwrap_err().message.contains("latest"));
        assert!(Image::parse("localhost:5000/app").is_err());
        let digest = format!("redis@sha256:{}", "a".repeat(64));
        assert!(Image::parse(&digest).is_ok());
        assert!(Image::parse("Redis:7").is_err());
        assert!(Image::parse("redis:7;rm").is_err());
    }

    #[test]
    fn text_rejects_injection_characters() {
        for bad in ["a\nb", "a;b", "a{b", "a}b", "a\"b", "a'b", "a#b", "a$b", "a`b", "a\\b"] {
            assert!(text(bad).is_err(), "{bad:?}");
        }
        assert!(text("application database (primary), via PgBouncer").is_ok());
    }

    #[test]
    fn names_follow_their_kind() {
        assert!(name("db1", NameKind::Label).is_ok());
        assert!(name("db_1", NameKind::Label).is_err());
        assert!(name("postgres_password", NameKind::Secret).is_ok());
        assert!(name("NODE_ENV", NameKind::Env).is_ok());
        assert!(name("node_env", NameKind::Env).is_err());
        assert!(name("", NameKind::Ident).is_err());
        assert!(name("a-", NameKind::Ident).is_err());
    }

    #[test]
    fn ports_parse() {
        assert_eq!(PortSpec::parse_str("udp/53").unwrap().unwrap().to_string(), "udp/53");
        assert!(PortSpec::parse_str("tcp/70000").unwrap().is_err());
        assert!(PortSpec::parse_str("http").is_none());
        assert!(PortSpec::parse_int(0).is_err());
    }

    #[test]
    fn paths_and_words_are_clean() {
        assert!(abs_path("/api/health").is_ok());
        assert!(abs_path("/a b").is_err());
        assert!(abs_path("/a/../b").is_err());
        assert!(abs_path("relative").is_err());
        assert!(word("pg_isready").is_ok());
        assert!(word("a;b").is_err());
        assert!(user("1001:1001").is_ok());
        assert!(is_root_user("0:0") && is_root_user("root"));
    }
}
