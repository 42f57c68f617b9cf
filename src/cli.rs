//! The command line: argument definitions and the thin commands over [`crate::ops`].

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::diag::{ColorOut, PlainOut, WriteColorish};
use crate::ops::{self, Paths};

/// Exit codes: part of the interface, documented in `--help` and tested.
pub mod exit {
    /// Success: built, or `check` found no drift.
    pub const OK: i32 = 0;
    /// The site has errors, or `check` found drift.
    pub const FAILED: i32 = 1;
    /// Usage or I/O error.
    pub const ERROR: i32 = 2;
}

const EXIT_CODES: &str = "\
Exit codes:
  0    success (`check`: generated/ is up to date)
  1    the site has errors, or `check` found a difference
  2    usage error, or a file could not be read or written
  101  a bug in medianest (please report it)";

/// medianest: a GitOps compiler for homelabs.
///
/// Compiles the site inventory in `site/` (TOML) and the templates into every file the
/// homelab runs on, under `generated/`.
#[derive(Debug, Parser)]
#[command(name = "medianest", version, after_help = EXIT_CODES, propagate_version = true)]
pub struct Cli {
    /// Run as if started in <DIR> (the repository root).
    #[arg(short = 'C', value_name = "DIR", global = true)]
    pub dir: Option<PathBuf>,
    /// Site directory [default: <DIR>/site].
    #[arg(long, value_name = "DIR", global = true)]
    pub site: Option<PathBuf>,
    /// Template overrides [default: <DIR>/templates].
    #[arg(long, value_name = "DIR", global = true)]
    pub templates: Option<PathBuf>,
    /// Output directory [default: <DIR>/generated].
    #[arg(long, value_name = "DIR", global = true)]
    pub out: Option<PathBuf>,
    /// Print only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print every file written.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// When to use colour.
    #[arg(long, value_enum, default_value_t = Color::Auto, global = true)]
    pub color: Color,
    /// build, check: compile even when the inputs and `generated/` are what the last
    /// successful run left (see `.medianest/fingerprint.json`).
    #[arg(long, global = true)]
    pub no_cache: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// When to colour output.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Color {
    /// When stderr is a terminal.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compile the site and write generated/ (only files that changed).
    #[command(after_help = EXIT_CODES)]
    Build,
    /// Compile in memory and compare with generated/; fail on any difference.
    #[command(after_help = EXIT_CODES)]
    Check {
        /// Also fail when site/ or generated/ has changes that are not committed (CI).
        #[arg(long)]
        committed: bool,
    },
    /// Show what the working site changes against a git revision: per host, per file,
    /// and what it means (flows, services, exposures, images, ...).
    #[command(after_help = DIFF_EXIT_CODES)]
    Diff {
        /// Revision to compare with (any rev-spec: HEAD, main, HEAD~1, a commit).
        #[arg(default_value = "HEAD", conflicts_with = "worktree")]
        base: String,
        /// Compare with the working generated/ instead of a revision.
        #[arg(long)]
        worktree: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Summary and per-file line counts only, no diffs.
        #[arg(long)]
        stat: bool,
        /// Exit with 1 when there are changes, like `git diff --exit-code`.
        #[arg(long)]
        exit_code: bool,
    },
    /// The host agent: fetch this host's rendered files from git, verify them, and apply
    /// them atomically, rolling back on failure.
    #[command(after_help = PULL_EXIT_CODES)]
    Pull(Box<PullArgs>),
    /// Say where a generated file, or one of its lines, comes from.
    #[command(after_help = EXIT_CODES)]
    Explain {
        /// A file under generated/: `generated/...`, a path relative to generated/, or an
        /// absolute path inside it; optionally with `:<line>`.
        #[arg(value_name = "PATH[:LINE]")]
        target: String,
    },
    /// Manage the age-encrypted secrets under site/secrets/ (never prints a value).
    #[command(subcommand, after_help = EXIT_CODES)]
    Secrets(SecretsCommand),
    /// Print the site-key reference (every key, its type, whether it is required, its
    /// default and meaning), generated from the schema: what SITE-REFERENCE.md holds.
    Schema,
    /// Write every render job (template, output path, JSON context) as JSON lines, for
    /// the Jinja2 benchmark peer in scripts/bench/. Not a stable interface.
    #[command(hide = true, name = "dump-contexts")]
    DumpContexts {
        /// Write to this file instead of stdout.
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
    },
}

/// `medianest secrets …`.
#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Each secret: its status (ok, missing, rekey, unused, invalid), the hosts it is
    /// encrypted to and the services that use it.
    List,
    /// Encrypt the value read from stdin (exactly its bytes) to the hosts that need the
    /// secret and the recovery keys, into site/secrets/<NAME>.age.
    Set {
        /// The secret's name, as services list it.
        name: String,
    },
    /// Decrypt with your recovery key into $VISUAL/$EDITOR (in a private tmpfs
    /// directory), and re-encrypt what you save.
    Edit {
        /// The secret's name.
        name: String,
        /// Your identity: an OpenSSH private key or an age identity file whose public key
        /// is in `[secrets] recovery` [env: MEDIANEST_AGE_IDENTITY].
        #[arg(long, short = 'i')]
        identity: Option<PathBuf>,
    },
    /// Re-encrypt every secret whose recipients are not what the site implies now (after
    /// a host, a host key, a recovery key or a service's `secrets` changed).
    Rekey {
        /// Your identity (see `edit`) [env: MEDIANEST_AGE_IDENTITY].
        #[arg(long, short = 'i')]
        identity: Option<PathBuf>,
        /// Re-encrypt every secret, even those already right.
        #[arg(long)]
        all: bool,
    },
}

/// Arguments of `pull`.
#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// Read the settings from this file (`/etc/medianest/agent.toml`, written by the
    /// bootstrap); options given on the command line win.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Repository URL or path (file:// or a local path; https and ssh need those features).
    #[arg(long)]
    pub repo: Option<String>,
    /// Branch to follow [default: main].
    #[arg(long)]
    pub branch: Option<String>,
    /// This host's name in the site.
    #[arg(long)]
    pub host: Option<String>,
    /// Root the files are written under.
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
    /// Where the agent keeps its mirror, state, journal, lock and metrics
    /// [default: /var/lib/medianest].
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// `allowed_signers` file: every commit from the applied one to the tip must be
    /// SSH-signed by a listed key. Mandatory (a run without it is refused).
    #[arg(long)]
    pub allowed_signers: Option<PathBuf>,
    /// Apply without verifying signatures. Never in agent.toml: an operator's explicit
    /// choice on the command line, logged as a warning on every run.
    #[arg(long)]
    pub insecure_no_verify: bool,
    /// Node exporter's textfile directory, where the metrics are also written when it
    /// exists [default: /var/lib/prometheus/node-exporter, Debian's].
    #[arg(long)]
    pub textfile_dir: Option<PathBuf>,
    /// The host's SSH private key, which decrypts its secrets (a path on the host, under
    /// --root) [default: /etc/ssh/ssh_host_ed25519_key].
    #[arg(long)]
    pub host_key: Option<PathBuf>,
    /// Fetch, verify and report what would change; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Run once and exit (the systemd timer's mode); otherwise run every --interval.
    #[arg(long)]
    pub once: bool,
    /// Only deliver the applied commit's secrets again, from the local mirror: no fetch,
    /// no reload (medianest-secrets.service, at boot, before the services that read them).
    #[arg(long, conflicts_with_all = ["dry_run", "allow_rollback"])]
    pub boot: bool,
    /// Time between runs without --once.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub interval: u64,
    /// Accept a commit that does not descend from the applied one (operators only).
    #[arg(long)]
    pub allow_rollback: bool,
    /// What to do with managed files changed on the host [default: enforce].
    #[arg(long, value_enum)]
    pub drift: Option<crate::agent::DriftPolicy>,
    /// Where the applied commit is recorded a second time, outside the state directory
    /// (a path on the host, under --root): with the state lost, anything older is refused.
    #[arg(long, default_value = "/etc/medianest/floor")]
    pub floor: PathBuf,
    /// Most bytes a fetch may transfer.
    #[arg(long, default_value_t = 256 << 20)]
    pub max_bytes: usize,
    /// Longest a fetch may take.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub deadline: u64,
    /// Report format on stdout.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

fn parse_duration(s: &str) -> Result<u64, String> {
    crate::model::values::Duration::parse(s).map(|d| d.0).map_err(|e| format!("{}; {}", e.message, e.help))
}

const PULL_EXIT_CODES: &str = "\
Exit codes:
  0    applied, or nothing to do
  1    refused: the repository did not prove itself, or there is nothing to verify
       it with (no allowed_signers); nothing was written
  2    usage or I/O error, or a rollback that could not restore every file (the
       reason names them; the next run retries)
  3    the new files did not validate (nothing changed), or the apply failed and
       the previous files were restored and reloaded
  4    another run holds the lock
  5    the fetch failed, or the branch is gone from the remote (the host keeps its
       last applied commit)
  101  a bug in medianest (please report it)";

/// Output format of `diff`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// For terminals.
    Text,
    /// For a pull-request comment.
    Markdown,
    /// For programs (stable, versioned).
    Json,
}

const DIFF_EXIT_CODES: &str = "\
Exit codes:
  0    success (with --exit-code: no changes)
  1    the site has errors (with --exit-code: there are changes)
  2    usage error, git or I/O error
  101  a bug in medianest (please report it)";

impl Cli {
    fn paths(&self) -> Paths {
        let root = self.dir.clone().unwrap_or_else(|| PathBuf::from("."));
        let mut p = Paths::under(&root);
        let rel = |x: &PathBuf| {
            if x.is_absolute() { x.clone() } else { root.join(x) }
        };
        if let Some(s) = &self.site {
            p.site = rel(s);
        }
        if let Some(t) = &self.templates {
            p.templates = rel(t);
        }
        if let Some(o) = &self.out {
            p.out = rel(o);
        }
        p
    }

    fn stderr(&self) -> Box<dyn WriteColorish> {
        use codespan_reporting::term::termcolor::{ColorChoice, StandardStream};
        let color = match self.color {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        };
        if color {
            Box::new(ColorOut(StandardStream::stderr(ColorChoice::Always)))
        } else {
            Box::new(PlainOut(std::io::stderr()))
        }
    }
}

/// Runs the parsed command line and returns the exit code.
pub fn run(cli: Cli) -> i32 {
    let paths = cli.paths();
    let mut err = cli.stderr();
    if cli.dir.as_ref().is_some_and(|d| !d.is_dir()) {
        let _ = writeln!(
            err.writer(),
            "error: `{}` is not a directory",
            cli.dir.as_ref().map(|d| d.display().to_string()).unwrap_or_default()
        );
        return exit::ERROR;
    }
    let out_name = paths.display(&paths.out);
    // The progress line of long builds: only for a person at a terminal.
    ops::show_progress(
        !cli.quiet
            && std::io::stderr().is_terminal()
            && std::env::var_os("CI").is_none()
            && std::env::var_os("TERM").is_none_or(|t| t != "dumb"),
    );
    let cache = if cli.no_cache { ops::Cache::Ignore } else { ops::Cache::Use };
    let started = std::time::Instant::now();
    let result = match cli.command {
        Command::Build => ops::build(&paths, cache).map(|outcome| {
            let (compiled, report) = match outcome {
                ops::Outcome::Fresh { files } => {
                    if !cli.quiet {
                        let _ = writeln!(
                            err.writer(),
                            "built {files} files into `{out_name}`: 0 written, {files} unchanged, 0 removed in {} ms (nothing changed since the last build)",
                            started.elapsed().as_millis()
                        );
                    }
                    return exit::OK;
                }
                ops::Outcome::Compiled(compiled, report) => (compiled, report),
            };
            if compiled.failed() || !compiled.diags.is_empty() {
                let _ = compiled.diags.emit(&compiled.sources, err.as_mut());
            }
            let Some(report) = report else { return exit::FAILED };
            if !cli.quiet {
                if cli.verbose {
                    for p in &report.written {
                        let _ = writeln!(err.writer(), "   wrote {out_name}/{p}");
                    }
                    for p in &report.removed {
                        let _ = writeln!(err.writer(), " removed {out_name}/{p}");
                    }
                }
                for p in &report.unknown {
                    let _ = writeln!(
                        err.writer(),
                        "warning: `{out_name}/{p}` was not made by medianest; `check` will fail until it is removed"
                    );
                }
                let _ = writeln!(
                    err.writer(),
                    "built {} files into `{out_name}`: {} written, {} unchanged, {} removed in {} ms",
                    compiled.artifacts.len() + 1,
                    report.written.len(),
                    report.unchanged,
                    report.removed.len(),
                    started.elapsed().as_millis()
                );
            }
            // The process ends here: freeing the site model and every artifact one by one
            // would only cost time (a few percent of a large build).
            std::mem::forget(compiled);
            exit::OK
        }),
        Command::Check { committed } => {
            // `--committed` cannot pass outside a repository: say so before compiling.
            let repo = if committed { ops::diff::open_repo(&paths, "check --committed").map(Some) } else { Ok(None) };
            repo.and_then(|repo| ops::check(&paths, cache).map(|outcome| (repo, outcome))).and_then(|(repo, outcome)| {
                let files = match outcome {
                    ops::Outcome::Fresh { files } => files,
                    ops::Outcome::Compiled(compiled, drift) => {
                        if !compiled.diags.is_empty() {
                            let _ = compiled.diags.emit(&compiled.sources, err.as_mut());
                        }
                        let Some(drift) = drift else { return Ok(exit::FAILED) };
                        if !drift.is_clean() {
                            print!("{}", ops::diff::drift_report(&paths, &drift, &out_name));
                            return Ok(exit::FAILED);
                        }
                        let files = compiled.artifacts.len() + 1;
                        std::mem::forget(compiled);
                        files
                    }
                };
                if let Some(repo) = repo {
                    let found = ops::diff::uncommitted(&repo, &paths)?;
                    if !found.files.is_empty() {
                        let n = found.files.len();
                        let dirs: Vec<String> = found.dirs.iter().map(|d| format!("`{d}`")).collect();
                        println!(
                            "error: `{out_name}` is up to date, but {n} file{} under {} differ{} from what is committed:",
                            crate::diag::plural(n),
                            dirs.join(" and "),
                            if n == 1 { "s" } else { "" }
                        );
                        for d in &found.files {
                            println!("  {:<10} {}", d.state, d.path);
                        }
                        println!(
                            "help: run `{}`; CI and the hosts only see what is committed",
                            found.fix()
                        );
                        return Ok(exit::FAILED);
                    }
                }
                if !cli.quiet {
                    let what = if committed { "up to date and committed" } else { "up to date" };
                    let _ = writeln!(err.writer(), "`{out_name}` is {what} ({files} files)");
                }
                Ok(exit::OK)
            })
        }
        Command::Diff { ref base, worktree, format, stat, exit_code } => {
            let base = if worktree { ops::diff::Base::Worktree } else { ops::diff::Base::Rev(base.clone()) };
            ops::diff::diff(&paths, &base).map(|(compiled, review)| {
                if !compiled.diags.is_empty() {
                    let _ = compiled.diags.emit(&compiled.sources, err.as_mut());
                }
                let Some(review) = review else { return exit::FAILED };
                let style = crate::review::format::Style { stat };
                let text = match format {
                    Format::Text => crate::review::format::text(&review, style),
                    Format::Markdown => crate::review::format::markdown(&review, style),
                    Format::Json => crate::review::format::json(&review, style),
                };
                print!("{text}");
                if exit_code && !review.is_empty() { exit::FAILED } else { exit::OK }
            })
        }
        Command::Pull(ref a) => return pull(a),
        Command::Explain { ref target } => {
            let compiled = ops::compile_with(&paths, ops::Depth::Traces);
            if compiled.failed() {
                let _ = compiled.diags.emit(&compiled.sources, err.as_mut());
                return exit::FAILED;
            }
            let known = |p: &str| p == crate::artifact::MANIFEST || compiled.artifacts.contains_key(p);
            ops::explain::parse_target(target, &paths.out, &out_name, known)
                .and_then(|(path, line)| ops::explain::explain(&compiled, &path, line, &out_name))
                .map(|text| {
                    print!("{text}");
                    exit::OK
                })
        }
        Command::Secrets(ref c) => return secrets(&paths, c, cli.quiet, err.as_mut()),
        Command::Schema => {
            print!("{}", ops::schema::reference_markdown());
            return exit::OK;
        }
        Command::DumpContexts { ref file } => {
            let written = match file {
                Some(f) => std::fs::File::create(f)
                    .map_err(|e| anyhow::anyhow!("failed to create `{}`: {e}", f.display()))
                    .and_then(|f| ops::dump::dump_contexts(&paths, &mut std::io::BufWriter::new(f))),
                None => ops::dump::dump_contexts(&paths, &mut std::io::BufWriter::new(std::io::stdout().lock())),
            };
            written.map(|(analysis, jobs)| {
                if !analysis.diags.is_empty() {
                    let _ = analysis.diags.emit(&analysis.sources, err.as_mut());
                }
                if analysis.diags.has_errors() {
                    return exit::FAILED;
                }
                if !cli.quiet {
                    let _ = writeln!(err.writer(), "dumped {jobs} render jobs");
                }
                exit::OK
            })
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(err.writer(), "error: {e:#}");
            exit::ERROR
        }
    }
}

/// `agent.toml`, as the bootstrap writes it.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentFile {
    repository: Option<String>,
    branch: Option<String>,
    host: Option<String>,
    state_dir: Option<PathBuf>,
    allowed_signers: Option<PathBuf>,
    textfile_dir: Option<PathBuf>,
    host_key: Option<PathBuf>,
    drift: Option<crate::agent::DriftPolicy>,
}

fn pull(a: &PullArgs) -> i32 {
    let file: AgentFile = match &a.config {
        Some(p) => match std::fs::read_to_string(p)
            .map_err(anyhow::Error::from)
            .and_then(|t| toml::from_str(&t).map_err(anyhow::Error::from))
        {
            Ok(f) => f,
            Err(e) => {
                eprintln!("error: failed to read `{}`: {e}", p.display());
                return crate::agent::exit::ERROR;
            }
        },
        None => AgentFile::default(),
    };
    let (Some(repo), Some(host)) = (a.repo.clone().or(file.repository), a.host.clone().or(file.host)) else {
        eprintln!("error: `pull` needs --repo and --host, or a --config file that names them");
        return crate::agent::exit::ERROR;
    };
    let opts = crate::agent::PullOptions {
        repo,
        branch: a.branch.clone().or(file.branch).unwrap_or_else(|| "main".into()),
        host,
        root: a.root.clone(),
        state_dir: a.state_dir.clone().or(file.state_dir).unwrap_or_else(|| PathBuf::from("/var/lib/medianest")),
        allowed_signers: a.allowed_signers.clone().or(file.allowed_signers),
        insecure_no_verify: a.insecure_no_verify,
        floor: a.floor.clone(),
        textfile_dir: a
            .textfile_dir
            .clone()
            .or(file.textfile_dir)
            .unwrap_or_else(|| PathBuf::from("/var/lib/prometheus/node-exporter")),
        host_key: a
            .host_key
            .clone()
            .or(file.host_key)
            .unwrap_or_else(|| PathBuf::from("/etc/ssh/ssh_host_ed25519_key")),
        dry_run: a.dry_run,
        allow_rollback: a.allow_rollback,
        drift: a.drift.or(file.drift).unwrap_or(crate::agent::DriftPolicy::Enforce),
        boot: a.boot,
        limits: crate::agent::source::Limits {
            max_bytes: a.max_bytes,
            deadline: std::time::Duration::from_secs(a.deadline),
            ..Default::default()
        },
    };
    loop {
        let report = crate::agent::pull(&opts);
        match a.format {
            Format::Json => println!("{}", serde_json::to_string(&report).expect("reports serialize")),
            _ => {
                println!(
                    "{}: {}",
                    report.result,
                    report
                        .reason
                        .clone()
                        .unwrap_or_else(|| format!("commit {}", report.applied_commit.clone().unwrap_or_default()))
                );
                for f in report.files.iter().filter(|f| f.action != "unchanged") {
                    println!("  {:<18} {}", f.action, f.target);
                }
                for x in report.secrets.iter().filter(|x| x.action != "unchanged") {
                    println!("  {:<18} secret {} for {} (ciphertext {})", x.action, x.name, x.service, &x.sha256[..12]);
                }
            }
        }
        if a.once || a.dry_run || a.boot {
            return report.exit_code;
        }
        std::thread::sleep(std::time::Duration::from_secs(a.interval));
    }
}

/// `medianest secrets …`: thin over [`ops::secrets`]; no value is ever printed.
fn secrets(paths: &Paths, c: &SecretsCommand, quiet: bool, err: &mut dyn WriteColorish) -> i32 {
    use crate::ops::secrets as s;
    let identity = |given: &Option<PathBuf>| -> anyhow::Result<Vec<Box<dyn age::Identity>>> {
        let path = given.clone().or_else(|| std::env::var_os("MEDIANEST_AGE_IDENTITY").map(PathBuf::from)).ok_or_else(
            || anyhow::anyhow!("give your recovery identity with `--identity <file>` or MEDIANEST_AGE_IDENTITY"),
        )?;
        crate::secrets::read_identity(&path)
    };
    let done = (|| -> anyhow::Result<i32> {
        let analysis = s::load(paths)?;
        let site = &analysis.site;
        match c {
            SecretsCommand::List => {
                let rows = s::list(site);
                for r in &rows {
                    println!(
                        "{:<32} {:<8} hosts: {}{}  services: {}",
                        r.name,
                        r.status,
                        if r.hosts.is_empty() { "-".to_string() } else { r.hosts.join(", ") },
                        if r.recovery > 0 { format!(" (+{} recovery)", r.recovery) } else { String::new() },
                        if r.services.is_empty() { "-".to_string() } else { r.services.join(", ") },
                    );
                }
                Ok(if rows.iter().all(|r| r.status == "ok") { exit::OK } else { exit::FAILED })
            }
            SecretsCommand::Set { name } => {
                use std::io::Read;
                let mut value = zeroize::Zeroizing::new(Vec::new());
                std::io::stdin().read_to_end(&mut value).map_err(|e| anyhow::anyhow!("failed to read stdin: {e}"))?;
                let path = s::set(paths, site, name, &value)?;
                if !quiet {
                    let _ = writeln!(err.writer(), "wrote {}", paths.display(&path));
                }
                Ok(exit::OK)
            }
            SecretsCommand::Edit { name, identity: i } => {
                let id = identity(i)?;
                let editor =
                    std::env::var("VISUAL").or_else(|_| std::env::var("EDITOR")).unwrap_or_else(|_| "vi".into());
                let changed = s::edit(paths, site, name, &id, &editor)?;
                if !quiet {
                    let what = if changed { "wrote" } else { "unchanged:" };
                    let _ = writeln!(err.writer(), "{what} {}", paths.display(&s::path_of(paths, name)));
                }
                Ok(exit::OK)
            }
            SecretsCommand::Rekey { identity: i, all } => {
                let id = identity(i)?;
                let done = s::rekey(paths, site, &id, *all)?;
                if !quiet {
                    let _ = writeln!(
                        err.writer(),
                        "re-encrypted {} secret{}{}",
                        done.len(),
                        crate::diag::plural(done.len()),
                        if done.is_empty() { String::new() } else { format!(": {}", done.join(", ")) }
                    );
                }
                Ok(exit::OK)
            }
        }
    })();
    done.unwrap_or_else(|e| {
        let _ = writeln!(err.writer(), "error: {e:#}");
        exit::ERROR
    })
}
