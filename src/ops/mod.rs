//! Operations behind the commands: [`compile`] runs the pipeline in memory; [`build`]
//! writes the result; [`check`] compares it with what is on disk. The CLI is a thin
//! layer over these, and tests call them directly. [`diff`] holds the git-backed review
//! operations and [`explain`] the provenance of generated files.

pub mod diff;
pub mod dump;
pub mod explain;
pub mod schema;
pub mod secrets;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Result;
use rayon::prelude::*;

use crate::artifact::{Artifact, ArtifactSet, check_rel_path, host_plans};
use crate::diag::{Diagnostic, Diagnostics, SourceMap};
use crate::emit::{self, Drift, WriteReport};
pub use crate::families::provenance::Depth;
use crate::model::Site;
pub use crate::paths::Paths;
use crate::{families, fingerprint, load, render, resolve, verify};

/// The result of running the pipeline in memory.
pub struct Compiled {
    /// Every generated file (without the manifest), by path.
    pub artifacts: ArtifactSet,
    /// The resolved site.
    pub site: Site,
    /// The templates used (built-in and overrides).
    pub templates: render::Templates,
    /// Every text diagnostics can point into.
    pub sources: SourceMap,
    /// Errors and warnings.
    pub diags: Diagnostics,
}

impl Compiled {
    /// Whether the site had errors (then `artifacts` is empty).
    pub fn failed(&self) -> bool {
        self.diags.has_errors()
    }
}

/// A site loaded, resolved and verified (no rendering).
pub struct Analysis {
    /// The resolved site (partial when there were errors).
    pub site: Site,
    /// Every text diagnostics can point into.
    pub sources: SourceMap,
    /// Errors and warnings.
    pub diags: Diagnostics,
}

/// load → resolve → verify of the site files in `raw`, registered under `display`.
fn analyze(raw: load::RawSite, display: &str, sources: SourceMap, mut diags: Diagnostics) -> Analysis {
    // The manifest names site files as `site/<path>` whatever `--site` was, so that the
    // output does not depend on where the site was read from.
    let file_names: Vec<String> = (0..sources.len())
        .map(|i| {
            format!("site/{}", sources.name(i).strip_prefix(display).unwrap_or(sources.name(i)).trim_start_matches('/'))
        })
        .collect();
    let mut site = resolve::resolve(&raw, &file_names, &mut diags);
    families::resolve(&raw, &mut site, &mut diags);
    // Freeing the parsed files (tens of MB on a large site) takes a while: let another
    // thread do it while this one verifies.
    rayon::spawn(move || drop(raw));
    verify::verify(&site, &mut diags);
    families::verify(&site, &mut diags);
    Analysis { site, sources, diags }
}

/// Analyzes site files given as `(path relative to site/, bytes)`, e.g. from a git tree.
pub fn analyze_files(files: Vec<(String, Vec<u8>)>, display: &str) -> Analysis {
    let mut sources = SourceMap::default();
    let mut diags = Diagnostics::default();
    let raw = load::load_files(files, display, &families::key_sets(), &mut sources, &mut diags);
    analyze(raw, display, sources, diags)
}

/// load → resolve → verify → lower → render, in memory. Artifacts are empty when any
/// stage reported an error; diagnostics hold everything that was found. Provenance is
/// kept as far as the manifest needs it (each file's site files).
pub fn compile(paths: &Paths) -> Compiled {
    compile_with(paths, Depth::Files)
}

/// [`compile`], keeping each file's provenance at `depth` ([`Depth::Traces`] for
/// `explain`: every value's text and place).
pub fn compile_with(paths: &Paths, depth: Depth) -> Compiled {
    let mut timer = Timer::start("load");
    let mut diags = Diagnostics::default();
    let files = load::read_site(&paths.site, &paths.display(&paths.site), &mut diags);
    let compiled = compile_timed(paths, files, diags, depth, &mut timer);
    timer.finish();
    compiled
}

/// The pipeline over site files already read (`diags` holds what reading them found).
fn compile_timed(
    paths: &Paths,
    files: Vec<(String, Vec<u8>)>,
    diags: Diagnostics,
    depth: Depth,
    timer: &mut Timer,
) -> Compiled {
    let mut sources = SourceMap::default();
    let mut diags = diags;
    let site_display = paths.display(&paths.site);
    let raw = load::load_files(files, &site_display, &families::key_sets(), &mut sources, &mut diags);
    timer.next("analyze");
    let Analysis { site, mut sources, mut diags } = analyze(raw, &site_display, sources, diags);
    timer.next("templates");
    let templates =
        render::Templates::load(Some(&paths.templates), &paths.display(&paths.templates), &mut sources, &mut diags);

    let mut artifacts = ArtifactSet::new();
    if !diags.has_errors() {
        timer.next("lower");
        let jobs = families::lower(&site, depth);
        timer.next("render");
        let rendered = templates.render_all(jobs, &mut diags);
        timer.next("plans");
        // Every file's hash, on every core: the plans, the manifest and the fingerprint
        // need them.
        rendered.par_iter().for_each(|a| {
            a.sha256();
        });
        let hosts: Vec<(String, Vec<String>)> =
            site.hosts.iter().map(|h| (h.name.clone(), families::sources_of(&site, [&h.loc]))).collect();
        collect(&mut artifacts, rendered, &mut diags);
        collect(&mut artifacts, crate::secrets::deliver::artifacts(&site), &mut diags);
        let mut plans = host_plans(&artifacts, &hosts);
        // A plan holds the host's name (the rest describes other files).
        for (plan, h) in plans.iter_mut().zip(&site.hosts) {
            plan.meta.traces = vec![std::sync::Arc::from([crate::artifact::Trace {
                what: "host",
                name: h.name.clone(),
                loc: h.loc.clone(),
            }])];
        }
        collect(&mut artifacts, plans, &mut diags);
    }
    if diags.has_errors() {
        artifacts.clear();
    }
    Compiled { artifacts, site, templates, sources, diags }
}

/// What `build` and `check` did.
pub enum Outcome<R> {
    /// The binary, the inputs and the output tree are what the last successful run left
    /// ([`fingerprint`]): nothing was compiled or written.
    Fresh {
        /// Files in the output tree.
        files: usize,
    },
    /// The pipeline ran; `R` is what writing or comparing found, unless the site failed.
    Compiled(Box<Compiled>, Option<R>),
}

/// Whether `build` and `check` may skip compiling when the fingerprint says nothing
/// changed (`--no-cache` turns it off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cache {
    /// Trust a matching fingerprint.
    Use,
    /// Always compile (the fingerprint is still recorded).
    Ignore,
}

/// The site files read: display path and bytes.
type Inputs = Vec<(String, Vec<u8>)>;

/// Reads the site files and hashes every input; `None` as the digest when some input
/// could not be read.
fn read_inputs(paths: &Paths) -> (Inputs, Diagnostics, Option<String>) {
    let mut diags = Diagnostics::default();
    let files = load::read_site(&paths.site, &paths.display(&paths.site), &mut diags);
    let digest = fingerprint::digest(&files, !diags.has_errors(), &paths.templates);
    (files, diags, digest)
}

static PROGRESS: AtomicBool = AtomicBool::new(false);

/// Whether long operations show their current phase on one updating stderr line. Off
/// by default; the CLI turns it on only when stderr is a terminal (never in CI or
/// pipes). The line appears after 300 ms, so quick builds print nothing extra, and it
/// is erased before anything else is printed.
pub fn show_progress(on: bool) {
    PROGRESS.store(on, Ordering::Relaxed);
}

/// Phases of an operation: per-phase wall-clock times (and memory) on stderr when
/// `MEDIANEST_TIMINGS` is set (a hidden aid for scripts/bench/, not part of the
/// interface), and the progress line when [`show_progress`] is on.
pub struct Timer {
    timings: bool,
    phase: &'static str,
    last: Instant,
    ticker: Option<(mpsc::Sender<&'static str>, std::thread::JoinHandle<()>)>,
}

impl Timer {
    /// Starts the first phase.
    pub fn start(phase: &'static str) -> Timer {
        let timings = std::env::var_os("MEDIANEST_TIMINGS").is_some_and(|v| !v.is_empty());
        let ticker = PROGRESS.load(Ordering::Relaxed).then(|| ticker(phase));
        Timer { timings, phase, last: Instant::now(), ticker }
    }

    /// Ends the current phase and starts `phase`.
    pub fn next(&mut self, phase: &'static str) {
        self.lap();
        self.phase = phase;
        if let Some((tx, _)) = &self.ticker {
            let _ = tx.send(phase);
        }
    }

    /// Ends the last phase and erases the progress line.
    pub fn finish(mut self) {
        self.lap();
        self.phase = "";
    }

    fn lap(&mut self) {
        let now = Instant::now();
        if self.timings && !self.phase.is_empty() {
            eprintln!(
                "timing: {:<11} {:>10.3} ms{}",
                self.phase,
                (now - self.last).as_secs_f64() * 1e3,
                memory_now().map(|(rss, peak)| format!("  rss {rss:>4} MiB  peak {peak:>4} MiB")).unwrap_or_default()
            );
        }
        self.last = now;
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if let Some((tx, handle)) = self.ticker.take() {
            drop(tx);
            let _ = handle.join();
        }
    }
}

/// The resident and peak resident memory of this process in MiB (Linux), for the
/// phase timings.
fn memory_now() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? / 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// The progress line: redrawn every 100 ms with the current phase once the operation
/// has run for 300 ms; erased when the sender is dropped.
fn ticker(first: &'static str) -> (mpsc::Sender<&'static str>, std::thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel::<&'static str>();
    let handle = std::thread::spawn(move || {
        use std::io::Write;
        let start = Instant::now();
        let mut phase = first;
        let mut shown = false;
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(p) => phase = p,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if start.elapsed() >= Duration::from_millis(300) {
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r\x1b[2Kmedianest: {phase}… {:.1} s", start.elapsed().as_secs_f64());
                let _ = err.flush();
                shown = true;
            }
        }
        if shown {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    });
    (tx, handle)
}

fn collect(set: &mut ArtifactSet, items: Vec<Artifact>, diags: &mut Diagnostics) {
    for a in items {
        if let Err(e) = check_rel_path(&a.meta.path) {
            diags.push(
                Diagnostic::error_nowhere(
                    "bad-output-path",
                    format!("an artifact would be written outside `generated/`: {e}"),
                )
                .help("this is a bug in an artifact family; please report it"),
            );
            continue;
        }
        if set.contains_key(&a.meta.path) {
            diags.push(
                Diagnostic::error_nowhere(
                    "output-collision",
                    format!("two artifacts would be written to `generated/{}`", a.meta.path),
                )
                .help("this is a bug in an artifact family; please report it"),
            );
            continue;
        }
        set.insert(a.meta.path.clone(), a);
    }
}

/// Compiles and writes `generated/`, unless the fingerprint shows that it is already
/// what the inputs compile to.
pub fn build(paths: &Paths, cache: Cache) -> Result<Outcome<WriteReport>> {
    unless_fresh(paths, cache, "write", |compiled| Ok((emit::write_tree(&compiled.artifacts, &paths.out)?, true)))
}

/// Compiles in memory and compares with `generated/`, unless the fingerprint shows that
/// it is already what the inputs compile to.
pub fn check(paths: &Paths, cache: Cache) -> Result<Outcome<Drift>> {
    unless_fresh(paths, cache, "compare", |compiled| {
        let drift = emit::compare(&compiled.artifacts, &paths.out)?;
        let clean = drift.is_clean();
        Ok((drift, clean))
    })
}

/// What `build` and `check` share: the fingerprint when it matches, else the pipeline,
/// then `finish` (phase `phase`: write or compare), which says whether the tree is now
/// what was compiled; then the fingerprint is recorded, or dropped.
fn unless_fresh<R>(
    paths: &Paths,
    cache: Cache,
    phase: &'static str,
    finish: impl FnOnce(&Compiled) -> Result<(R, bool)>,
) -> Result<Outcome<R>> {
    let mut timer = Timer::start("fingerprint");
    let (files, diags, digest) = read_inputs(paths);
    if cache == Cache::Use
        && let Some(files) = fingerprint::fresh(paths, digest.as_deref())
    {
        timer.finish();
        return Ok(Outcome::Fresh { files });
    }
    timer.next("load");
    let compiled = compile_timed(paths, files, diags, Depth::Files, &mut timer);
    if compiled.failed() {
        return Ok(Outcome::Compiled(Box::new(compiled), None));
    }
    timer.next(phase);
    // Before the tree is looked at: what changes after this instant cannot keep a stamp.
    let checked = SystemTime::now();
    let finished = finish(&compiled);
    timer.next("record");
    match &finished {
        // A run with warnings is never skipped: they are shown again until fixed.
        Ok((_, true)) if compiled.diags.is_empty() => {
            fingerprint::record(paths, digest.as_deref(), &compiled.artifacts, checked)
        }
        _ => fingerprint::forget(paths),
    }
    timer.finish();
    let (result, _) = finished?;
    Ok(Outcome::Compiled(Box::new(compiled), Some(result)))
}

/// A human report of drift: one line per file and unified diffs for changed text files.
/// The fix depends on git (what to commit, `rm` or `git rm`): [`diff::drift_report`]
/// adds it.
pub fn render_drift(drift: &Drift, out_name: &str) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let total = drift.changed.len() + drift.missing.len() + drift.extra.len();
    let _ = writeln!(
        s,
        "error: `{out_name}` is not what the site compiles to ({total} file{} differ{})",
        crate::diag::plural(total),
        if total == 1 { "s" } else { "" }
    );
    for (p, _, _) in &drift.changed {
        let _ = writeln!(s, "  changed  {out_name}/{p}");
    }
    for p in &drift.missing {
        let _ = writeln!(s, "  missing  {out_name}/{p}");
    }
    for p in &drift.extra {
        let _ = writeln!(s, "  extra    {out_name}/{p}");
    }
    for (p, expected, actual) in &drift.changed {
        let (Ok(e), Ok(a)) = (std::str::from_utf8(expected), std::str::from_utf8(actual)) else {
            let _ = writeln!(s, "\nbinary file {out_name}/{p} differs");
            continue;
        };
        let diff = similar::TextDiff::configure().timeout(Duration::from_secs(2)).diff_lines(a, e);
        let _ = write!(
            s,
            "\n{}",
            diff.unified_diff()
                .context_radius(3)
                .header(&format!("{out_name}/{p} (on disk)"), &format!("{out_name}/{p} (compiled)"))
        );
    }
    s.push('\n');
    s
}
