//! The edge tier against the real tools: every HAProxy, Nginx (+ModSecurity) and
//! keepalived config of the reference site passes its native check, and an end-to-end
//! run on loopback: HAProxy → Nginx + ModSecurity → a trivial backend, all started from
//! the generated files.
//!
//! Substitutions, the only ones made (and only these are allowed): certificate paths
//! (the crt-list path in haproxy.cfg and the PEM path in the crt-list point at a
//! self-signed test certificate) and run directories (HAProxy's stats socket and Nginx's
//! pid file go to the test's temp dir). Interface addresses that the configs bind to are
//! provided in private network namespaces (`unshare -n`), never by editing the configs.
//!
//! Needs root (network namespaces, Nginx's `user www-data`) and the Debian packages
//! that `scripts/test.sh` installs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

fn require_tools() {
    for tool in ["haproxy", "nginx", "keepalived", "openssl", "curl", "unshare", "ip", "python3"] {
        let found =
            Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().is_ok_and(|o| o.status.success());
        assert!(found, "`{tool}` is missing: run scripts/test.sh, which installs the test dependencies");
    }
    let uid = Command::new("id").arg("-u").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "the edge tests need root (network namespaces, nginx user)"
    );
}

fn sh(script: &str) -> Output {
    Command::new("sh").arg("-c").arg(script).output().expect("sh runs")
}

fn ok(o: &Output) -> String {
    format!("exit {:?}\nstdout:\n{}\nstderr:\n{}", o.status.code(), stdout(o), stderr(o))
}

/// A self-signed certificate for `names` as one PEM (chain + key); returns (pem, cert).
fn certificate(dir: &Path, names: &[&str]) -> (PathBuf, PathBuf) {
    let (key, cert, pem) = (dir.join("key.pem"), dir.join("cert.pem"), dir.join("site.pem"));
    let san = names.iter().map(|n| format!("DNS:{n}")).collect::<Vec<_>>().join(",");
    let o = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj"])
        .arg(format!("/CN={}", names[0]))
        .arg("-addext")
        .arg(format!("subjectAltName={san}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", ok(&o));
    let mut bytes = std::fs::read(&cert).unwrap();
    bytes.extend(std::fs::read(&key).unwrap());
    std::fs::write(&pem, bytes).unwrap();
    (pem, cert)
}

/// Copies the HAProxy config and crt-list of `host_root`, pointing them at `pem` and the
/// run directory `run`. Returns the config path.
fn haproxy_config(host_root: &Path, dir: &Path, pem: &Path, run: &Path) -> PathBuf {
    let crt_list = std::fs::read_to_string(host_root.join("etc/haproxy/crt-list.txt")).unwrap();
    let crt_list: String = crt_list
        .lines()
        .map(|l| {
            if l.starts_with('/') {
                format!("{} {}\n", pem.display(), l.split_once(' ').unwrap().1)
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let list_path = dir.join("crt-list.txt");
    std::fs::write(&list_path, crt_list).unwrap();
    let cfg = std::fs::read_to_string(host_root.join("etc/haproxy/haproxy.cfg"))
        .unwrap()
        .replace("crt-list /etc/haproxy/crt-list.txt", &format!("crt-list {}", list_path.display()))
        .replace("/run/haproxy/admin.sock", &run.join("haproxy.sock").display().to_string());
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    path
}

/// `nginx -t` on a generated `nginx.conf`, in a private network namespace holding the
/// address its `listen` binds (IPv4 or, bracketed, IPv6).
fn nginx_check(conf_path: &Path) -> Output {
    let conf = std::fs::read_to_string(conf_path).unwrap();
    let listen = conf.lines().find_map(|l| l.trim().strip_prefix("listen ")).unwrap();
    let socket = listen.split([' ', ';']).next().unwrap();
    let addr = socket.rsplit_once(':').unwrap().0.trim_start_matches('[').trim_end_matches(']');
    let prefix = if addr.contains(':') { 128 } else { 32 };
    sh(&format!(
        "unshare -n sh -c 'ip link set lo up && ip addr add {addr}/{prefix} dev lo && nginx -t -c {}'",
        conf_path.display()
    ))
}

/// `keepalived -t` on a keepalived.conf, in a private network namespace holding every
/// interface it names (keepalived checks that they exist).
fn keepalived_check(conf_path: &Path) -> Output {
    let conf = std::fs::read_to_string(conf_path).unwrap();
    let ifaces: std::collections::BTreeSet<&str> =
        conf.lines().filter_map(|l| l.trim().strip_prefix("interface ")).map(str::trim).collect();
    let links: String = ifaces.iter().map(|i| format!("ip link add {i} type veth peer name {i}p && ")).collect();
    sh(&format!("unshare -n sh -c '{links}keepalived -t -f {}'", conf_path.display()))
}

#[test]
fn reference_site_edge_configs_pass_their_native_checks() {
    require_tools();
    let generated = repo_root().join("generated/hosts");
    let tmp = tempfile::tempdir().unwrap();
    let (pem, _) = certificate(tmp.path(), &["media.example.org"]);
    let mut checked = 0;
    for host in std::fs::read_dir(&generated).unwrap().map(|e| e.unwrap().path()) {
        let root = host.join("root");
        let name = host.file_name().unwrap().to_string_lossy().into_owned();
        if root.join("etc/haproxy/haproxy.cfg").exists() {
            let dir = tmp.path().join(&name);
            std::fs::create_dir_all(&dir).unwrap();
            let cfg = haproxy_config(&root, &dir, &pem, &dir);
            let o = Command::new("haproxy").args(["-dW", "-c", "-f"]).arg(&cfg).output().unwrap();
            assert!(o.status.success(), "haproxy -c for {name}: {}", ok(&o));
            checked += 1;
        }
        if root.join("etc/nginx/nginx.conf").exists() {
            let o = nginx_check(&root.join("etc/nginx/nginx.conf"));
            assert!(o.status.success(), "nginx -t for {name}: {}", ok(&o));
            assert!(stderr(&o).contains("test is successful"), "{}", ok(&o));
            checked += 1;
        }
        if root.join("etc/keepalived/keepalived.conf").exists() {
            let o = keepalived_check(&root.join("etc/keepalived/keepalived.conf"));
            assert!(o.status.success(), "keepalived -t for {name}: {}", ok(&o));
            checked += 1;
        }
    }
    // edge1 and edge2 (haproxy + keepalived), app1 and app2 (nginx), db1 and db2
    // (keepalived for the database failover address).
    assert_eq!(checked, 8, "every edge config of the reference site was checked");
}

#[test]
fn keepalived_check_rejects_a_broken_config() {
    // The native check is real: a config it must refuse is refused.
    require_tools();
    let tmp = tempfile::tempdir().unwrap();
    let conf =
        std::fs::read_to_string(repo_root().join("generated/hosts/edge1/root/etc/keepalived/keepalived.conf")).unwrap();
    let broken = tmp.path().join("k.conf");
    std::fs::write(&broken, conf.replace("virtual_router_id 60", "virtual_router_id 600")).unwrap();
    let o = keepalived_check(&broken);
    assert!(!o.status.success(), "{}", ok(&o));
}

/// Everything the end-to-end test starts, stopped on drop (also when a check fails).
#[derive(Default)]
struct Running {
    children: Vec<Child>,
    pid_files: Vec<PathBuf>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for p in &self.pid_files {
            if let Ok(pid) = std::fs::read_to_string(p) {
                let pid = pid.trim().to_string();
                let _ = Command::new("kill").arg(&pid).status();
                // Wait for the process to be gone, so no test leaves a server behind.
                let start = Instant::now();
                while Path::new(&format!("/proc/{pid}")).exists() && start.elapsed() < Duration::from_secs(5) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn curl(args: &[&str]) -> String {
    let o = Command::new("curl").args(["-s", "--max-time", "5"]).args(args).output().unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn end_to_end_on_loopback() {
    require_tools();
    let repo = tempfile::tempdir().unwrap();
    copy_tree(&suite("fixtures/edge-site"), &repo.path().join("site"));
    let out = medianest(repo.path(), &["build"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let hosts = repo.path().join("generated/hosts");
    let run = repo.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    let (pem, cert) = certificate(repo.path(), &["media.test"]);
    let mut running = Running::default();

    // The trivial backends, one per app host.
    let backend = suite("fixtures/edge-backend.py");
    let flag = |h: &str| run.join(format!("{h}.unhealthy"));
    for (h, addr) in [("app1", "127.0.20.11"), ("app2", "127.0.20.12")] {
        let child = Command::new("python3")
            .arg(&backend)
            .args([h, addr, "18090"])
            .arg(flag(h))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        running.children.push(child);
    }
    // Nginx on each app host, from its generated tree (pid file moved to the run dir).
    for h in ["app1", "app2"] {
        let conf_path = hosts.join(h).join("root/etc/nginx/nginx.conf");
        let pid = run.join(format!("nginx-{h}.pid"));
        let conf = std::fs::read_to_string(&conf_path)
            .unwrap()
            .replace("pid /run/nginx.pid;", &format!("pid {};", pid.display()));
        std::fs::write(&conf_path, conf).unwrap();
        let o = Command::new("nginx").arg("-c").arg(&conf_path).output().unwrap();
        assert!(o.status.success(), "nginx {h}: {}", ok(&o));
        running.pid_files.push(pid);
    }
    // HAProxy on the edge host.
    let edge = hosts.join("edge1/root");
    let cfg = haproxy_config(&edge, repo.path(), &pem, &run);
    let pid = run.join("haproxy.pid");
    let o = Command::new("haproxy").arg("-f").arg(&cfg).arg("-D").arg("-p").arg(&pid).output().unwrap();
    assert!(o.status.success(), "haproxy: {}", ok(&o));
    running.pid_files.push(pid);

    let resolve = "media.test:18443:127.0.10.10";
    let https = |path: &str, extra: &[&str]| -> String {
        let mut args = vec!["--resolve", resolve, "--cacert", cert.to_str().unwrap()];
        args.extend_from_slice(extra);
        let url = format!("https://media.test:18443{path}");
        args.push(&url);
        curl(&args)
    };
    wait_for("both app hosts behind HAProxy", Duration::from_secs(20), || {
        let seen: Vec<String> = (0..6).map(|_| https("/", &[])).collect();
        seen.iter().any(|b| b == "hello from app1\n") && seen.iter().any(|b| b == "hello from app2\n")
    });

    // HTTPS with SNI: the certificate verifies against the test CA for `media.test`.
    let body = https("/", &[]);
    assert!(body.starts_with("hello from app"), "{body:?}");
    let headers = https("/", &["-D", "-", "-o", "/dev/null"]);
    assert!(headers.to_lowercase().contains("strict-transport-security: max-age=63072000"), "{headers}");

    // HTTP redirects to HTTPS.
    let redirect = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{redirect_url}",
        "-H",
        "Host: media.test",
        "http://127.0.10.10:18080/x?y=1",
    ]);
    assert_eq!(redirect, "301 https://media.test/x?y=1");

    // An attack gets 403 where the WAF blocks, and passes (logged only) where it detects.
    let attack = "?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E";
    let code = https(&format!("/{attack}"), &["-o", "/dev/null", "-w", "%{http_code}"]);
    assert_eq!(code, "403", "block mode");
    let code = https(&format!("/logs/{attack}"), &["-o", "/dev/null", "-w", "%{http_code}"]);
    assert_eq!(code, "200", "detect mode");
    // The same attacks as JSON bodies meet the same rules; clean JSON passes, and a body
    // that does not parse as its type is refused.
    let post = |body: &str, kind: &str| {
        let header = format!("Content-Type: {kind}");
        https("/", &["-o", "/dev/null", "-w", "%{http_code}", "-H", &header, "--data-binary", body])
    };
    let json = "application/json";
    assert_eq!(post(r#"{"q":"<script>alert(1)</script>"}"#, json), "403", "XSS in JSON");
    assert_eq!(post(r#"{"id":"1' UNION SELECT password FROM users--"}"#, json), "403", "SQLi in JSON");
    assert_eq!(post(r#"{"title":"The Matrix","year":1999}"#, json), "200", "clean JSON");
    assert_eq!(post(r#"{"title":"#, json), "400", "JSON that does not parse");
    let form = "application/x-www-form-urlencoded";
    assert_eq!(post("q=%3Cscript%3Ealert(1)%3C%2Fscript%3E", form), "403", "XSS in a form");

    // The health checks are the edge's own: the public cannot reach them.
    let code = https("/.medianest/health/web", &["-o", "/dev/null", "-w", "%{http_code}"]);
    assert_eq!(code, "403");

    // The WebSocket upgrade passes through HAProxy and Nginx.
    let code = https(
        "/socket",
        &[
            "--http1.1",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "Connection: Upgrade",
            "-H",
            "Upgrade: websocket",
            "-H",
            "Sec-WebSocket-Version: 13",
            "-H",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        ],
    );
    assert_eq!(code, "101", "websocket upgrade");

    // A backend whose health check fails is taken out of rotation, and comes back.
    std::fs::write(flag("app2"), "").unwrap();
    wait_for("app2 out of rotation", Duration::from_secs(20), || {
        (0..8).all(|_| https("/", &[]) == "hello from app1\n")
    });
    let bodies: Vec<String> = (0..10).map(|_| https("/", &[])).collect();
    assert!(bodies.iter().all(|b| b == "hello from app1\n"), "{bodies:?}");
    std::fs::remove_file(flag("app2")).unwrap();
    wait_for("app2 back in rotation", Duration::from_secs(20), || {
        (0..6).any(|_| https("/", &[]) == "hello from app2\n")
    });
    // An app host that stops answering (its Nginx killed) before any health check
    // notices: every request is retried on the other one, none gets a 503.
    let master = std::fs::read_to_string(run.join("nginx-app2.pid")).unwrap();
    // The whole process group (the daemon's setsid): workers would keep serving
    // without their master.
    let o = Command::new("/bin/kill").args(["-KILL", "--", &format!("-{}", master.trim())]).output().unwrap();
    assert!(o.status.success(), "{}", ok(&o));
    let codes: Vec<String> = (0..10).map(|_| https("/", &["-o", "/dev/null", "-w", "%{http_code}"])).collect();
    assert!(codes.iter().all(|c| c == "200"), "an app host down shows: {codes:?}");
    // And the live traffic took it out (`observe layer4`): its "health analyze" failures
    // count, and it is down, without waiting for `fall` failed checks.
    let stat = stats(&run.join("haproxy.sock"), "show stat");
    let header: Vec<&str> = stat.lines().next().unwrap().trim_start_matches("# ").split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let app2 = stat
        .lines()
        .map(|l| l.split(',').collect::<Vec<_>>())
        .find(|f| f[0] == "be_web" && f[1] == "app2")
        .unwrap_or_else(|| panic!("no be_web/app2 in\n{stat}"));
    assert!(app2[col("hanafail")].parse::<u32>().unwrap_or(0) >= 1, "no health-analyze failure:\n{stat}");
    assert!(app2[col("status")].starts_with("DOWN"), "app2 is {}:\n{stat}", app2[col("status")]);
    drop(running);
}

/// One command on HAProxy's stats socket, its answer.
fn stats(socket: &Path, command: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).unwrap();
    s.write_all(format!("{command}\n").as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// An IPv6 app tier behind a dual-stack edge, end to end: HAProxy on `[::]` reaches
/// Nginx on an IPv6-only host from its own IPv6 address (`source`), Nginx its upstream
/// at a bracketed address, and a request over either family gets 200. All of it runs in
/// private network and PID namespaces (the addresses exist only there, and every process
/// ends with the namespace).
#[test]
fn ipv6_backend_through_the_edge_on_loopback() {
    require_tools();
    let repo = tempfile::tempdir().unwrap();
    copy_tree(&suite("fixtures/edge-site-v6"), &repo.path().join("site"));
    let out = medianest(repo.path(), &["build"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let hosts = repo.path().join("generated/hosts");
    let run = repo.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    let (pem, cert) = certificate(repo.path(), &["media.test"]);
    let nginx = hosts.join("app1/root/etc/nginx/nginx.conf");
    let conf = std::fs::read_to_string(&nginx)
        .unwrap()
        .replace("pid /run/nginx.pid;", &format!("pid {};", run.join("nginx.pid").display()));
    std::fs::write(&nginx, conf).unwrap();
    let cfg = haproxy_config(&hosts.join("edge1/root"), repo.path(), &pem, &run);
    let get = |to: &str, extra: &str| {
        format!(
            "curl -s --max-time 5 {extra} --resolve 'media.test:18443:{to}' --cacert {} https://media.test:18443/",
            cert.display()
        )
    };
    let v6 = get("[fd00:10::10]", "");
    let script = format!(
        "set -e
ip link set lo up
ip addr add fd00:10::10/128 dev lo nodad
ip addr add fd00:20::11/128 dev lo nodad
python3 {backend} app1 fd00:20::11 18090 {flag} >/dev/null 2>&1 &
nginx -c {nginx}
haproxy -f {cfg} -D -p {run}/haproxy.pid
for i in $(seq 1 100); do
  [ \"$({code})\" = 200 ] && break
  sleep 0.2
done
echo \"code $({code})\"
echo \"v6 $({v6})\"
echo \"v4 $({v4})\"
",
        backend = suite("fixtures/edge-backend.py").display(),
        flag = run.join("app1.unhealthy").display(),
        nginx = nginx.display(),
        cfg = cfg.display(),
        run = run.display(),
        code = get("[fd00:10::10]", "-o /dev/null -w '%{http_code}'"),
        v4 = get("127.0.10.10", ""),
    );
    let o = Command::new("unshare").args(["-n", "-p", "-f", "sh", "-c", &script]).output().unwrap();
    let text = stdout(&o);
    assert!(text.contains("code 200\n"), "{}", ok(&o));
    assert!(text.contains("v6 hello from app1\n"), "{}", ok(&o));
    assert!(text.contains("v4 hello from app1\n"), "{}", ok(&o));
}

// --- Random valid sites pass the native checks ----------------------------------------

/// One exposed container of a random site.
#[derive(Debug, Clone)]
struct RandomService {
    routes: Vec<(String, String)>,
    waf: &'static str,
    websocket: bool,
    rate: Option<(u32, &'static str, u32)>,
    max_body: &'static str,
    balance: &'static str,
    http_health: Option<String>,
}

fn random_service() -> impl proptest::strategy::Strategy<Value = RandomService> {
    use proptest::prelude::*;
    let seg = "[a-z][a-z0-9_-]{0,8}";
    let route = (
        prop_oneof![Just(String::new()), "[a-z]([a-z0-9-]{0,9}[a-z0-9])?".prop_map(|l| format!("{l}."))],
        proptest::collection::vec(seg, 0..3),
    )
        .prop_map(|(sub, segs)| {
            let path = if segs.is_empty() { "/".to_string() } else { format!("/{}/", segs.join("/")) };
            (format!("{sub}lab.example.org"), path)
        });
    (
        proptest::collection::vec(route, 1..3),
        prop_oneof![Just("off"), Just("detect"), Just("block")],
        any::<bool>(),
        proptest::option::of((1u32..1000, prop_oneof![Just("s"), Just("m")], 0u32..50)),
        prop_oneof![Just("1m"), Just("512k"), Just("8m"), Just("1g"), Just("1t")],
        prop_oneof![Just("roundrobin"), Just("leastconn"), Just("source")],
        proptest::option::of("/[a-z]{1,10}"),
    )
        .prop_map(|(routes, waf, websocket, rate, max_body, balance, http_health)| RandomService {
            routes,
            waf,
            websocket,
            rate,
            max_body,
            balance,
            http_health,
        })
}

/// The address families of a random site's app tier: the services on the base
/// fixture's IPv4 host app1, on an IPv6-only host app6 (in an IPv6-only zone), or on
/// both (backends with servers of both families). With IPv6, the edge hosts are
/// dual-stack: an IPv4 interface in `dmz` and an IPv6 one in `dmz6`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Families {
    V4,
    V6,
    Both,
}

impl Families {
    fn app_hosts(self) -> &'static str {
        match self {
            Families::V4 => r#"["app1"]"#,
            Families::V6 => r#"["app6"]"#,
            Families::Both => r#"["app1", "app6"]"#,
        }
    }
}

/// Writes a random site over the base fixture: [`random_overlay`], and, for IPv6 or an
/// edge pair, the base hosts and services with the edge hosts it needs (named
/// interfaces for keepalived, an IPv6 one each, edge2 in the HAProxy service).
fn write_random_site(repo: &Repo, services: &[RandomService], proxy: bool, families: Families, pair: bool) {
    let base = suite("fixtures/base-site");
    let mut overlay = random_overlay(services, proxy, families);
    if families != Families::V4 || pair {
        let edge = |n: u8| {
            let v6 = if families == Families::V4 {
                String::new()
            } else {
                format!(r#", {{ zone = "dmz6", address = "fd00:60::1{n}", name = "ens19" }}"#)
            };
            format!(
                "[hosts.edge{}]\nkind = \"vm\"\non = \"pve1\"\n\
                 interfaces = [{{ zone = \"dmz\", address = \"10.1.6.1{n}\", name = \"ens18\" }}{v6}]\n",
                n + 1
            )
        };
        let hosts = std::fs::read_to_string(base.join("hosts.toml")).unwrap();
        let one =
            "[hosts.edge1]\nkind = \"vm\"\non = \"pve1\"\ninterfaces = [{ zone = \"dmz\", address = \"10.1.6.10\" }]\n";
        assert!(hosts.contains(one), "the base fixture's edge1 changed");
        let edges = if pair { format!("{}\n{}", edge(0), edge(1)) } else { edge(0) };
        repo.write("site/hosts.toml", &hosts.replace(one, &edges));
    }
    if families != Families::V4 {
        overlay.push_str(
            "[zones.dmz6]\nvlan = 61\ncidr = \"fd00:60::/64\"\ngateway = \"fd00:60::1\"\n\n\
             [zones.app6]\nvlan = 21\ncidr = \"fd00:20::/64\"\ngateway = \"fd00:20::1\"\n\n\
             [hosts.app6]\nkind = \"vm\"\non = \"pve1\"\nroles = [\"docker\"]\n\
             interfaces = [{ zone = \"app6\", address = \"fd00:20::10\" }]\n\n",
        );
    }
    if pair {
        let services = std::fs::read_to_string(base.join("services.toml")).unwrap();
        let one = "kind = \"haproxy\"\nhosts = [\"edge1\"]";
        assert!(services.contains(one), "the base fixture's proxy changed");
        repo.write("site/services.toml", &services.replace(one, "kind = \"haproxy\"\nhosts = [\"edge1\", \"edge2\"]"));
        // The floating address in the edge pair's IPv6 zone when it has one.
        let vip = if families == Families::V4 { "10.1.6.5" } else { "fd00:60::5" };
        overlay.push_str(&format!(
            "[services.keepalived]\nkind = \"keepalived\"\nhosts = [\"edge1\", \"edge2\"]\nvip = \"{vip}\"\nvrid = 60\n\n\
             [[flows]]\nfrom = \"service:keepalived\"\nto = \"service:keepalived\"\nports = [\"vrrp\"]\nwhy = \"VRRP\"\n\n\
             [[flows]]\nfrom = \"service:proxy\"\nto = \"service:proxy\"\nports = [\"peers\"]\nwhy = \"shared stick tables\"\n\n"
        ));
    }
    repo.write("site/zz-random.toml", &overlay);
}

/// The overlay on the base fixture: the services on the app hosts of `families`, their
/// flows from the edge, and (when `proxy`) an app-tier Nginx on those hosts that the
/// edge goes through.
fn random_overlay(services: &[RandomService], proxy: bool, families: Families) -> String {
    let mut seen = std::collections::BTreeSet::new();
    // The base site already publishes lab.example.org/.
    seen.insert(("lab.example.org".to_string(), "/".to_string()));
    let mut s = String::new();
    for (i, svc) in services.iter().enumerate() {
        let port = 9100 + i;
        let exposes: Vec<String> = svc
            .routes
            .iter()
            .filter(|r| seen.insert((*r).clone()))
            .map(|(host, path)| {
                let rate = svc
                    .rate
                    .map(|(n, per, burst)| format!(", rate_limit = {{ rate = \"{n}r/{per}\", burst = {burst} }}"))
                    .unwrap_or_default();
                format!(
                    "{{ hostname = \"{host}\", path = \"{path}\", waf = \"{}\", websocket = {}, max_body = \"{}\"{rate} }}",
                    svc.waf, svc.websocket, svc.max_body
                )
            })
            .collect();
        let health = match &svc.http_health {
            Some(p) => format!("{{ http = \"{p}\" }}"),
            None => "{ tcp = true }".to_string(),
        };
        s.push_str(&format!(
            "[services.svc{i}]\nimage = \"ghcr.io/lab/svc{i}:1.0.0\"\nhosts = {}\nuser = \"1001:1001\"\n\
             ports = {{ http = {port} }}\nhealth = {health}\nbalance = \"{}\"\nexpose = [{}]\n\n\
             [[flows]]\nfrom = \"service:proxy\"\nto = \"service:svc{i}\"\nports = [\"http\"]\nwhy = \"edge\"\n\n",
            families.app_hosts(),
            svc.balance,
            exposes.join(", ")
        ));
    }
    if proxy {
        s.push_str(&format!(
            "[services.appproxy]\nkind = \"nginx\"\nhosts = {}\n\n\
             [[flows]]\nfrom = \"service:proxy\"\nto = \"service:appproxy\"\nports = [\"http\"]\nwhy = \"edge to the app tier\"\n\n",
            families.app_hosts()
        ));
    }
    s
}

/// Runs the native check of every HAProxy and Nginx config under `generated/hosts`.
fn native_checks(generated: &Path, tmp: &Path, pem: &Path) -> Result<usize, String> {
    let mut checked = 0;
    for host in std::fs::read_dir(generated.join("hosts")).unwrap().map(|e| e.unwrap().path()) {
        let root = host.join("root");
        let name = host.file_name().unwrap().to_string_lossy().into_owned();
        if root.join("etc/haproxy/haproxy.cfg").exists() {
            let dir = tmp.join(&name);
            std::fs::create_dir_all(&dir).unwrap();
            let cfg = haproxy_config(&root, &dir, pem, &dir);
            let o = Command::new("haproxy").args(["-dW", "-c", "-f"]).arg(&cfg).output().unwrap();
            if !o.status.success() {
                return Err(format!("haproxy -c for {name}: {}", ok(&o)));
            }
            checked += 1;
        }
        if root.join("etc/nginx/nginx.conf").exists() {
            let o = nginx_check(&root.join("etc/nginx/nginx.conf"));
            if !o.status.success() {
                return Err(format!("nginx -t for {name}: {}", ok(&o)));
            }
            checked += 1;
        }
        if root.join("etc/keepalived/keepalived.conf").exists() {
            let o = keepalived_check(&root.join("etc/keepalived/keepalived.conf"));
            if !o.status.success() {
                return Err(format!("keepalived -t for {name}: {}", ok(&o)));
            }
            checked += 1;
        }
    }
    Ok(checked)
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: 200,
        failure_persistence: None,
        ..proptest::prelude::ProptestConfig::default()
    })]

    /// Random valid edge sites (1 to 4 exposed services with random routes, WAF modes,
    /// rate limits, body sizes, balance algorithms and health checks, with or without an
    /// app-tier Nginx, on IPv4, IPv6 or both, with one edge host or a keepalived pair)
    /// build, and every HAProxy, Nginx and keepalived config they produce passes the
    /// tool's own check.
    #[test]
    fn random_valid_edge_sites_pass_the_native_checks(
        services in proptest::collection::vec(random_service(), 1..5),
        proxy in proptest::prelude::any::<bool>(),
        families in proptest::prop_oneof![
            proptest::strategy::Just(Families::V4),
            proptest::strategy::Just(Families::V6),
            proptest::strategy::Just(Families::Both),
        ],
        pair in proptest::prelude::any::<bool>(),
    ) {
        require_tools();
        let repo = Repo::base();
        write_random_site(&repo, &services, proxy, families, pair);
        let out = repo.run(&["build"]);
        proptest::prop_assert!(out.status.success(), "a random valid site does not build:\n{}", stderr(&out));
        let tmp = tempfile::tempdir().unwrap();
        let (pem, _) = certificate(tmp.path(), &["lab.example.org", "*.lab.example.org"]);
        let checked = native_checks(&repo.path().join("generated"), tmp.path(), &pem);
        proptest::prop_assert!(checked.is_ok(), "{}", checked.unwrap_err());
        // HAProxy and keepalived on each edge host, Nginx on each app host it runs on.
        let edges = if pair { 4 } else { 1 };
        let nginx = if !proxy { 0 } else if families == Families::Both { 2 } else { 1 };
        proptest::prop_assert_eq!(checked.unwrap(), edges + nginx);
    }
}
