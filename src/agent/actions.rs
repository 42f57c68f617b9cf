//! The fixed vocabulary of commands the agent runs. A plan names actions (`nginx`,
//! `haproxy.service`); the agent maps them to argv built here and never runs command
//! text from the repository. Commands are found on `PATH`, so tests can put stubs first.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::artifact::{Deploy, Validator};

/// The command of a plan's validator, run against the staged tree.
pub fn validator(v: Validator, staged: &Path) -> Command {
    let p = |rel: &str| staged.join(rel);
    let mut c;
    match v {
        Validator::Nginx => {
            c = Command::new("nginx");
            c.arg("-t").arg("-q").arg("-c").arg(p("etc/nginx/nginx.conf"));
        }
        Validator::Haproxy => {
            c = Command::new("haproxy");
            c.arg("-c").arg("-q").arg("-f").arg(p("etc/haproxy/haproxy.cfg"));
        }
        Validator::Keepalived => {
            c = Command::new("keepalived");
            c.arg("-t").arg("-f").arg(p("etc/keepalived/keepalived.conf"));
        }
        Validator::Nft => {
            // A dry run: the kernel checks the whole transaction, nothing is applied.
            c = Command::new("nft");
            c.arg("-c").arg("-f").arg(p("etc/nftables.conf"));
        }
        Validator::Pdns => {
            // pdnsutil has no option for another configuration's paths, and the files
            // name each other by absolute path (pdns.conf → /etc/powerdns/named.conf →
            // the zone files). In a private mount namespace the staged /etc/powerdns
            // covers the live one, and a scratch DNSSEC database (the path the dns
            // family writes in pdns.conf) covers the host's, which holds the signing
            // keys and may not exist before the first start, and a scratch /run holds
            // the empty directory pdns.conf includes (the API key's tmpfs, filled
            // before each start). PowerDNS's own parser then reads the staged files;
            // nothing on the host changes.
            c = Command::new("unshare");
            c.args(["--mount", "--propagation", "private", "sh", "-ec", PDNS_CHECK, "sh"]).arg(p("etc/powerdns"));
        }
        Validator::Ifupdown2 => {
            // `-s` runs ifupdown2's parser and its addons' checks of every attribute
            // value; nothing is brought up or down. The staged file's `source` line
            // reads the host's own `/etc/network/interfaces.d`, as the live file will.
            c = Command::new("ifup");
            c.args(["-a", "-s", "-i"]).arg(p("etc/network/interfaces"));
        }
        Validator::Postgres => {
            // PostgreSQL refuses root and reads `conf.d` next to the file it is given: a
            // copy of the staged `etc/postgresql` owned by `postgres`, each version's
            // file parsed by that version's server (`-C` prints a value and exits).
            c = Command::new("sh");
            c.args(["-ec", POSTGRES_CHECK, "sh"]).arg(p("etc/postgresql"));
        }
        Validator::Promtool => {
            // `rule_files` are relative to the configuration, so the staged rules are
            // the ones checked with it.
            c = Command::new("promtool");
            c.args(["check", "config"]).arg(p("etc/prometheus/prometheus.yml"));
        }
        Validator::Amtool => {
            c = Command::new("amtool");
            c.arg("check-config").arg(p("etc/prometheus/alertmanager.yml"));
        }
        Validator::Rsyslog => {
            // Level 1 parses the files with their modules loaded and starts nothing. They
            // are includes of Debian's rsyslog.conf (checked together: HAProxy's file calls
            // the forwarding ruleset of 60-medianest.conf), which sets the work directory the
            // queues and imfile's state need: a scratch one stands in for it.
            c = Command::new("sh");
            c.args(["-ec", RSYSLOG_CHECK, "sh"]).arg(p("etc/rsyslog.d"));
        }
        Validator::Blackbox => {
            c = Command::new("prometheus-blackbox-exporter");
            c.arg("--config.check").arg(format!("--config.file={}", p("etc/prometheus/blackbox.yml").display()));
        }
        Validator::Compose => {
            // Compose's own parser, with its reference checks; `-q` prints nothing.
            c = Command::new("docker");
            c.args(["compose", "-f"]).arg(p("etc/medianest/compose/compose.yaml")).args(["config", "-q"]);
        }
        Validator::Stack => {
            c = Command::new("sh");
            c.args(["-ec", STACK_CHECK, "sh"]).arg(p("etc/medianest/stacks"));
        }
        Validator::Redis => {
            // Starting it is the only check Redis has; in its own network namespace it
            // can take no port, and a private /run hides the live password file.
            c = Command::new("unshare");
            c.args(["--net", "--mount", "--propagation", "private", "sh", "-ec", REDIS_CHECK, "sh"])
                .arg(p("etc/redis/redis.conf"));
        }
        Validator::Pgbouncer => {
            // As Redis: starting it is the only check; the staged directory covers
            // /etc/pgbouncer, whose files name each other by absolute path.
            c = Command::new("unshare");
            c.args(["--net", "--mount", "--propagation", "private", "sh", "-ec", PGBOUNCER_CHECK, "sh"])
                .arg(p("etc/pgbouncer"));
        }
    }
    c
}

/// The script of [`Validator::Pgbouncer`] (`$1`: the staged `etc/pgbouncer`). The files
/// are the staged ones, unchanged, at their real paths; around them: the listen
/// addresses on the private namespace's loopback, a private `/run` (the socket and pid
/// file; the auth file the unit renders from the delivered secrets, an empty stand-in)
/// and log directory, an empty auth file when none is staged. It runs as `postgres`
/// (it refuses root). Up means its unix socket exists: the configuration was read whole.
const PGBOUNCER_CHECK: &str = "t=$(mktemp -d)
trap 'rm -rf \"$t\"' EXIT
mount --bind \"$1\" /etc/pgbouncer
conf=/etc/pgbouncer/pgbouncer.ini
mount -t tmpfs medianest-check /run
mkdir -p /run/postgresql /var/log/postgresql
mount -t tmpfs medianest-check /var/log/postgresql
chown postgres:postgres /run/postgresql /var/log/postgresql
f=$(sed -n 's/^auth_file *= *//p' \"$conf\")
case $f in
  /run/*|/etc/pgbouncer/*) [ -e \"$f\" ] || { mkdir -p \"${f%/*}\"; : > \"$f\"; chown postgres \"$f\"; } ;;
esac
ip link set lo up
for a in $(sed -n 's/^listen_addr *= *//p' \"$conf\" | tr ',' ' '); do
  case $a in
    '*'|127.0.0.1|::1|localhost) ;;
    *:*) ip addr add \"$a/128\" dev lo ;;
    *) ip addr add \"$a/32\" dev lo ;;
  esac
done
port=$(sed -n 's/^listen_port *= *//p' \"$conf\")
pgbouncer -u postgres \"$conf\" > \"$t/out\" 2>&1 &
pid=$!
i=0
until [ -S \"/run/postgresql/.s.PGSQL.${port:-6432}\" ]; do
  if ! kill -0 \"$pid\" 2>/dev/null; then
    rc=0; wait \"$pid\" || rc=$?
    cat \"$t/out\" /var/log/postgresql/*.log >&2 2>/dev/null || true
    echo \"pgbouncer stopped at once (exit $rc) on the staged pgbouncer.ini\" >&2
    exit 1
  fi
  i=$((i+1))
  if [ \"$i\" -ge 200 ]; then kill \"$pid\"; cat \"$t/out\" >&2; echo 'pgbouncer did not start in 10 s' >&2; exit 1; fi
  sleep 0.05
done
kill -INT \"$pid\"
wait \"$pid\" || true";

/// The script of [`Validator::Redis`] (`$1`: the staged `redis.conf`). The command line
/// overrides only where it runs (no TCP port, a scratch socket, directory and pid file,
/// no log file, no persistence, not supervised); every other directive is the staged
/// file's. The files it includes under `/run` (the password file the unit renders from
/// the delivered secret before each start, which may not exist yet) are empty: the
/// check reads no secret. Up means its socket exists: the configuration was read whole.
const REDIS_CHECK: &str = "t=$(mktemp -d)
trap 'rm -rf \"$t\"' EXIT
mount -t tmpfs medianest-check /run
for f in $(sed -n 's/^include //p' \"$1\"); do
  case $f in /run/*) mkdir -p \"${f%/*}\"; : > \"$f\" ;; esac
done
redis-server \"$1\" --port 0 --unixsocket \"$t/redis.sock\" --pidfile \"$t/redis.pid\" --dir \"$t\" \\
  --logfile '' --daemonize no --supervised no --appendonly no --save '' > \"$t/out\" 2>&1 &
pid=$!
i=0
until [ -S \"$t/redis.sock\" ]; do
  if ! kill -0 \"$pid\" 2>/dev/null; then
    rc=0; wait \"$pid\" || rc=$?
    cat \"$t/out\" >&2
    echo \"redis-server stopped at once (exit $rc) on the staged redis.conf\" >&2
    exit 1
  fi
  i=$((i+1))
  if [ \"$i\" -ge 200 ]; then kill \"$pid\"; cat \"$t/out\" >&2; echo 'redis-server did not start in 10 s' >&2; exit 1; fi
  sleep 0.05
done
kill \"$pid\"
wait \"$pid\" || true";

/// The script of [`Validator::Stack`] (`$1`: the staged `etc/medianest/stacks`).
const STACK_CHECK: &str = "found=
for f in \"$1\"/*.yml; do
  [ -f \"$f\" ] || continue
  docker stack config -c \"$f\" >/dev/null
  found=1
done
[ -n \"$found\" ]";

/// The name a stack file deploys as: its file stem, which must be a plain name (it
/// becomes an argument of `docker stack`).
pub fn stack_name(file: &Path) -> Result<String> {
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    let ok = !stem.is_empty()
        && stem.len() <= 63
        && stem.starts_with(|c: char| c.is_ascii_alphanumeric())
        && stem.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        bail!("`{}` is not a stack file the agent deploys", file.display());
    }
    Ok(stem.to_string())
}

/// Deploys the containers of `file` (a Compose file's project is its `name:`).
pub fn deploy(d: Deploy, file: &Path) -> Result<()> {
    let mut c = Command::new("docker");
    match d {
        Deploy::Compose => {
            c.args(["compose", "-f"]).arg(file).args(["up", "-d", "--remove-orphans"]);
            run(c, &format!("docker compose up ({})", file.display()))
        }
        Deploy::Stack => {
            let name = stack_name(file)?;
            c.args(["stack", "deploy", "--prune", "--with-registry-auth", "-c"]).arg(file).arg(&name);
            run(c, &format!("docker stack deploy {name}"))
        }
    }
}

/// Stops what `file` deployed (a rollback of a file that did not exist before).
pub fn teardown(d: Deploy, file: &Path) -> Result<()> {
    let mut c = Command::new("docker");
    match d {
        Deploy::Compose => {
            c.args(["compose", "-f"]).arg(file).args(["down", "--remove-orphans"]);
            run(c, &format!("docker compose down ({})", file.display()))
        }
        Deploy::Stack => {
            let name = stack_name(file)?;
            c.args(["stack", "rm", &name]);
            run(c, &format!("docker stack rm {name}"))
        }
    }
}

/// How long the agent waits for a deployment to converge: `MEDIANEST_CONVERGE_SECS`
/// (tests), else five minutes, enough for image pulls and start periods.
pub fn converge_deadline() -> std::time::Duration {
    let secs = std::env::var("MEDIANEST_CONVERGE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(300u64);
    std::time::Duration::from_secs(secs)
}

/// Waits until the containers of `file` converge (see [`Deploy`]), polling until
/// `deadline`; the error says what had not.
pub fn converge(d: Deploy, file: &Path, deadline: std::time::Duration) -> Result<()> {
    let start = std::time::Instant::now();
    let poll = (deadline / 10).clamp(std::time::Duration::from_millis(100), std::time::Duration::from_secs(2));
    loop {
        let waiting = match d {
            Deploy::Compose => compose_waiting(file)?,
            Deploy::Stack => stack_waiting(&stack_name(file)?)?,
        };
        if waiting.is_empty() {
            return Ok(());
        }
        if start.elapsed() >= deadline {
            bail!("not converged after {}s: {}", deadline.as_secs(), waiting.join(", "));
        }
        std::thread::sleep(poll);
    }
}

/// Output of a command that must succeed.
fn output(mut c: Command, what: &str) -> Result<String> {
    let out = c.output().with_context(|| format!("failed to run {what}"))?;
    if !out.status.success() {
        bail!("{what} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The containers of a Compose file that do not run healthy yet (`docker compose ps
/// --format json`: one object per line, or an array from older releases); a file with
/// no container at all has not converged either.
fn compose_waiting(file: &Path) -> Result<Vec<String>> {
    let mut c = Command::new("docker");
    c.args(["compose", "-f"]).arg(file).args(["ps", "--all", "--format", "json"]);
    let text = output(c, "docker compose ps")?;
    let mut items: Vec<serde_json::Value> = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match serde_json::from_str::<serde_json::Value>(line).context("docker compose ps printed no JSON")? {
            serde_json::Value::Array(v) => items.extend(v),
            v => items.push(v),
        }
    }
    if items.is_empty() {
        return Ok(vec!["no container is running".into()]);
    }
    let field = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or_default().to_string();
    Ok(items
        .iter()
        .filter(|v| field(v, "State") != "running" || !matches!(field(v, "Health").as_str(), "" | "healthy"))
        .map(|v| {
            let health = field(v, "Health");
            let state = if health.is_empty() { field(v, "State") } else { format!("{}, {health}", field(v, "State")) };
            format!("{} ({state})", field(v, "Name"))
        })
        .collect())
}

/// The services of a stack below their replica count (`docker service ls`, `n/m`).
fn stack_waiting(name: &str) -> Result<Vec<String>> {
    let mut c = Command::new("docker");
    c.args(["service", "ls", "--filter"])
        .arg(format!("label=com.docker.stack.namespace={name}"))
        .args(["--format", "{{.Name}} {{.Replicas}}"]);
    let text = output(c, "docker service ls")?;
    let mut waiting = Vec::new();
    let mut seen = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        seen += 1;
        let mut words = line.split_whitespace();
        let (svc, replicas) = (words.next().unwrap_or("?"), words.next().unwrap_or(""));
        let done = replicas.split_once('/').is_some_and(|(a, b)| a == b && !b.is_empty());
        if !done {
            waiting.push(format!("{svc} ({replicas})"));
        }
    }
    if seen == 0 {
        waiting.push(format!("stack {name} has no service"));
    }
    Ok(waiting)
}

/// The script of [`Validator::Postgres`] (`$1`: the staged `etc/postgresql`). The
/// server binary is `$MEDIANEST_PG_BIN` when set (tests), else Debian's for the version.
const POSTGRES_CHECK: &str = "t=$(mktemp -d)
trap 'rm -rf \"$t\"' EXIT
cp -R \"$1/.\" \"$t/\"
chown -R postgres:postgres \"$t\"
found=
for conf in \"$t\"/*/main/postgresql.conf; do
  [ -f \"$conf\" ] || continue
  v=${conf#\"$t\"/}; v=${v%%/*}
  bin=${MEDIANEST_PG_BIN:-/usr/lib/postgresql/$v/bin}
  runuser -u postgres -- \"$bin/postgres\" -C data_directory -c config_file=\"$conf\" >/dev/null
  found=1
done
[ -n \"$found\" ]";

/// The script of [`Validator::Rsyslog`] (`$1`: the staged file).
const RSYSLOG_CHECK: &str = "t=$(mktemp -d)
trap 'rm -rf \"$t\"' EXIT
printf 'global(workDirectory=\"%s\")\\ninclude(file=\"%s/*-medianest*.conf\")\\n' \"$t\" \"$1\" > \"$t/check.conf\"
rsyslogd -N1 -f \"$t/check.conf\"";

/// The script of [`Validator::Pdns`] (`$1`: the staged `etc/powerdns`).
const PDNS_CHECK: &str = "mount --bind \"$1\" /etc/powerdns
mount -t tmpfs medianest-check /var/lib/powerdns
mkdir /var/lib/powerdns/dnssec
mount -t tmpfs medianest-check /run
mkdir -p /run/medianest/powerdns
pdnsutil create-bind-db /var/lib/powerdns/dnssec/bind-dnssec.sqlite3 >/dev/null
exec pdnsutil check-all-zones";

/// Runs a command; an error carries its output.
pub fn run(mut c: Command, what: &str) -> Result<()> {
    let out = c.output().with_context(|| format!("failed to run {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// How the agent reloads a unit: `reload-or-restart`, which also starts a unit that is
/// not running. Debian's keepalived unit stays inactive until its config exists
/// (`ConditionFileNotEmpty`), and `systemctl reload` of an inactive unit fails, so a
/// plain reload rolled back every first apply.
pub const RELOAD: &str = "reload-or-restart";

/// `systemctl <verb> <unit>`; the reload action `daemon-reload` (a changed unit file)
/// is `systemctl daemon-reload`. Services and timers only; restarting a timer enables it.
pub fn systemctl(verb: &str, unit: &str) -> Result<()> {
    if unit == "daemon-reload" {
        if verb == "is-active" {
            return Ok(());
        }
        let mut c = Command::new("systemctl");
        c.arg("daemon-reload");
        return run(c, "systemctl daemon-reload");
    }
    let timer = unit.ends_with(".timer");
    if !(unit.ends_with(".service") || timer)
        || unit.starts_with('-')
        || !unit.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
    {
        bail!("`{unit}` is not a unit the agent manages");
    }
    if timer && verb == "restart" {
        // A timer the plan starts must also survive a reboot (a backup schedule that
        // stops at the next boot is a silent gap): enable it, then restart it, which
        // also reschedules a changed one.
        let mut c = Command::new("systemctl");
        c.args(["enable", "--"]).arg(unit);
        run(c, &format!("systemctl enable {unit}"))?;
    }
    // `--`: a unit name never reaches systemctl as an option, whatever the checks above.
    let mut c = Command::new("systemctl");
    c.arg(verb).arg("--").arg(unit);
    run(c, &format!("systemctl {verb} {unit}"))
}
