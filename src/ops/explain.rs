//! `medianest explain <generated path>[:<line>]`: where a generated file, or one of its
//! lines, comes from.

use std::fmt::Write;
use std::path::{Component, Path, PathBuf};

use anyhow::{Result, anyhow, bail};

use super::Compiled;
use crate::artifact::{MANIFEST, Trace};
use crate::diag::Loc;
use crate::render::TemplateOrigin;

/// Reads `explain`'s target, `<path>[:<line>]`, into a path relative to the output
/// directory and a line.
///
/// The path may be absolute (it must then lie inside `out_dir`), start with the output
/// directory's name as shown (`generated/…`, `./generated/…`), or be relative to the
/// output directory (`docs/inventory.md`). `exists` says whether a path (relative to the
/// output directory) is in the compiled set: when the whole target names such a file,
/// it is taken as a path even if it ends in `:<digits>`; otherwise a trailing
/// `:<digits>` is the line.
pub fn parse_target(
    target: &str,
    out_dir: &Path,
    out_name: &str,
    exists: impl Fn(&str) -> bool,
) -> Result<(String, Option<usize>)> {
    let whole = out_relative(target, out_dir, out_name, &exists);
    if let Ok(p) = &whole
        && exists(p)
    {
        return Ok((p.clone(), None));
    }
    if let Some((p, l)) = target.rsplit_once(':')
        && !p.is_empty()
        && !l.is_empty()
        && l.chars().all(|c| c.is_ascii_digit())
    {
        let n: usize = l.parse().map_err(|_| anyhow!("line `{l}` is out of range"))?;
        if n == 0 {
            bail!("line numbers start at 1");
        }
        return Ok((out_relative(p, out_dir, out_name, &exists)?, Some(n)));
    }
    whole.map(|p| (p, None))
}

/// `path` relative to the output directory: see [`parse_target`]. A relative path that
/// starts with the output directory's name is taken as relative to the root, unless only
/// the path relative to the output directory names a file.
fn out_relative(path: &str, out_dir: &Path, out_name: &str, exists: &impl Fn(&str) -> bool) -> Result<String> {
    if Path::new(path).is_absolute() {
        let out_abs = normalize(&std::path::absolute(out_dir)?);
        let target = normalize(Path::new(path));
        if let Ok(rel) = target.strip_prefix(&out_abs) {
            return Ok(slashed(rel));
        }
        // The same directory through a symlink (`/tmp` and `/private/tmp`, …).
        if let (Ok(out_real), Some(real)) = (out_abs.canonicalize(), canonical_prefix(&target))
            && let Ok(rel) = real.strip_prefix(&out_real)
        {
            return Ok(slashed(rel));
        }
        bail!(
            "`{path}` is outside the output directory `{}`; `explain` takes a file under it, e.g. `{out_name}/docs/inventory.md:3`",
            out_abs.display()
        );
    }
    let rel = normalize(Path::new(path));
    let prefix = normalize(Path::new(out_name));
    let (rel, prefixed) = (slashed(&rel), rel.strip_prefix(&prefix).ok().map(slashed));
    match prefixed {
        // `generated/x` is `x` in the output directory, unless only `generated/x` exists there.
        Some(inside) if !prefix.as_os_str().is_empty() && (exists(&inside) || !exists(&rel)) => Ok(inside),
        _ => Ok(rel),
    }
}

/// `.` and empty components dropped, `..` applied, without touching the file system.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(".."),
            },
            other => out.push(other),
        }
    }
    out
}

/// The canonical form of `p`: of the longest part that exists, with the rest appended.
fn canonical_prefix(p: &Path) -> Option<PathBuf> {
    let mut rest = Vec::new();
    let mut cur = p;
    loop {
        if let Ok(real) = cur.canonicalize() {
            return Some(rest.iter().rev().fold(real, |acc: PathBuf, c| acc.join(c)));
        }
        rest.push(cur.file_name()?.to_os_string());
        cur = cur.parent()?;
    }
}

fn slashed(p: &Path) -> String {
    p.to_string_lossy().replace('\\', "/")
}

fn at(c: &Compiled, loc: &Loc) -> String {
    let (l, col) = c.sources.line_col(loc.file, loc.span.start);
    format!("{}:{l}:{col}", c.sources.name(loc.file))
}

/// Whether `name` occurs in `line` as a whole word (not inside a longer name).
pub fn mentions(line: &str, name: &str) -> bool {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    line.match_indices(name).any(|(i, _)| {
        let before = line[..i].chars().next_back();
        let after = line[i + name.len()..].chars().next();
        !before.is_some_and(is_word) && !after.is_some_and(is_word)
    })
}

/// The explanation of a file (and a line of it) in a compiled site.
pub fn explain(c: &Compiled, path: &str, line: Option<usize>, out_name: &str) -> Result<String> {
    let mut s = String::new();
    if path == MANIFEST {
        let _ = writeln!(s, "{out_name}/{MANIFEST}");
        let _ = writeln!(
            s,
            "  made by:   `medianest build`, from every other generated file (path, sha256, size, mode, owner, host, family, site files)"
        );
        let _ = writeln!(
            s,
            "  used by:   `medianest check`, `diff` and the host agent, to verify files and find stale ones"
        );
        return Ok(s);
    }
    let Some(a) = c.artifacts.get(path) else {
        let near: Vec<&str> = c
            .artifacts
            .keys()
            .map(String::as_str)
            .filter(|p| p.ends_with(path.rsplit('/').next().unwrap_or(path)))
            .take(5)
            .collect();
        let hint = if near.is_empty() { String::new() } else { format!("; similar: {}", near.join(", ")) };
        bail!("`{out_name}/{path}` is not a file that the site compiles to{hint}");
    };
    let m = &a.meta;
    let _ = writeln!(s, "{out_name}/{path}");
    let _ = writeln!(s, "  family:    {}", m.family);
    if m.template.is_empty() {
        let _ = writeln!(s, "  made by:   medianest itself (data, not a template)");
    } else {
        let origin = match c.templates.origin(&m.template) {
            Some(TemplateOrigin::Site) => "the site's override".to_string(),
            _ => format!("built-in; override it with `templates/{}`", m.template),
        };
        let _ = writeln!(s, "  template:  {} ({origin})", m.template);
    }
    if let (Some(h), Some(apply)) = (&m.host, &m.apply) {
        let _ =
            writeln!(s, "  host:      {h} installs it at {} (mode {:04o}, owner {})", apply.target, m.mode, m.owner);
        let mut acts = Vec::new();
        acts.extend(apply.validate.as_ref().map(|v| format!("validate with {v}")));
        acts.extend(apply.reload.as_ref().map(|v| format!("reload {v}")));
        acts.extend(apply.restart.as_ref().map(|v| format!("restart {v}")));
        let _ = writeln!(
            s,
            "  on apply:  {}",
            if acts.is_empty() { "nothing to validate or reload".into() } else { acts.join(", ") }
        );
    } else if let Some(h) = &m.host {
        let _ = writeln!(s, "  host:      {h} (read by its agent)");
    }
    let _ = writeln!(s, "  from:      {}", if m.sources.is_empty() { "-".into() } else { m.sources.join(", ") });
    let Some(n) = line else {
        let values = m.all_traces().count();
        if values > 0 {
            let _ = writeln!(s, "  holds:     {values} site values; add `:<line>` to see which a line comes from");
        }
        return Ok(s);
    };
    let text = String::from_utf8_lossy(&a.bytes);
    let Some(l) = text.lines().nth(n - 1) else {
        bail!("`{out_name}/{path}` has {} lines, not {n}", text.lines().count());
    };
    let _ = writeln!(s, "line {n}: {l}");
    let found = line_values(&m.all_traces().collect::<Vec<_>>(), l);
    if found.is_empty() {
        let _ = writeln!(s, "  fixed template text: no site value appears on this line");
    }
    for t in found {
        let _ = writeln!(s, "  {} `{}`, from {}", t.what, t.name, at(c, &t.loc));
    }
    Ok(s)
}

/// The recorded site values that appear on `line` (as whole words), longest first, one
/// per value and place. Values shorter than two characters say nothing about a line.
pub fn line_values<'a>(traces: &[&'a Trace], line: &str) -> Vec<&'a Trace> {
    let mut found: Vec<&Trace> =
        traces.iter().copied().filter(|t| t.name.chars().count() >= 2 && mentions(line, &t.name)).collect();
    found.sort_by(|a, b| {
        (std::cmp::Reverse(a.name.len()), &a.name, a.loc.file, a.loc.span.start, a.what).cmp(&(
            std::cmp::Reverse(b.name.len()),
            &b.name,
            b.loc.file,
            b.loc.span.start,
            b.what,
        ))
    });
    found.dedup_by(|a, b| a.name == b.name && a.loc == b.loc);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(target: &str, files: &[&str]) -> Result<(String, Option<usize>)> {
        parse_target(target, Path::new("/abs/repo/generated"), "generated", |p| files.contains(&p))
    }

    fn ok(path: &str, line: Option<usize>) -> (String, Option<usize>) {
        (path.to_string(), line)
    }

    #[test]
    fn parses_targets() {
        let files = ["docs/a.md"];
        assert_eq!(parse("generated/docs/a.md:12", &files).unwrap(), ok("docs/a.md", Some(12)));
        assert_eq!(parse("docs/a.md", &files).unwrap(), ok("docs/a.md", None));
        assert!(parse("docs/a.md:0", &files).unwrap_err().to_string().contains("line numbers start at 1"));
        assert!(parse("docs/a.md:99999999999999999999999", &files).is_err());
        // A trailing colon or a non-number is part of the path.
        assert_eq!(parse("docs/a.md:", &files).unwrap(), ok("docs/a.md:", None));
        assert_eq!(parse("docs/a.md:x1", &files).unwrap(), ok("docs/a.md:x1", None));
    }

    #[test]
    fn takes_generated_dotted_and_output_relative_paths() {
        let files = ["docs/a.md"];
        for t in ["generated/docs/a.md:3", "./generated/docs/a.md:3", ".//generated/./docs/a.md:3", "docs/a.md:3"] {
            assert_eq!(parse(t, &files).unwrap(), ok("docs/a.md", Some(3)), "{t}");
        }
        // The output directory shown as a longer relative path (`--out build/out`).
        let p = parse_target("./build/out/docs/a.md:2", Path::new("/r/build/out"), "build/out", |p| p == "docs/a.md");
        assert_eq!(p.unwrap(), ok("docs/a.md", Some(2)));
        // A file whose own path starts with `generated/` inside the output directory.
        let files = ["generated/x.md"];
        assert_eq!(parse("generated/x.md", &files).unwrap(), ok("generated/x.md", None));
    }

    #[test]
    fn takes_absolute_paths_inside_the_output_directory_only() {
        let files = ["docs/a.md"];
        assert_eq!(parse("/abs/repo/generated/docs/a.md:3", &files).unwrap(), ok("docs/a.md", Some(3)));
        assert_eq!(parse("/abs/repo/generated/./docs//a.md", &files).unwrap(), ok("docs/a.md", None));
        for t in
            ["/etc/hosts", "/abs/repo/site/a.toml:2", "/abs/repo/generated/../site/a.toml", "/abs/repo/generatedx/a"]
        {
            let e = parse(t, &files).unwrap_err().to_string();
            assert!(e.contains("is outside the output directory `/abs/repo/generated`"), "{t}: {e}");
        }
        // A relative output directory is taken from the working directory.
        let cwd = std::env::current_dir().unwrap();
        let target = format!("{}/gen/docs/a.md:4", cwd.display());
        let p = parse_target(&target, Path::new("gen"), "gen", |p| p == "docs/a.md");
        assert_eq!(p.unwrap(), ok("docs/a.md", Some(4)));
    }

    #[test]
    fn a_file_name_ending_in_a_number_is_a_path_when_it_exists() {
        let files = ["hosts/h/root/etc/x:12", "docs/a.md"];
        assert_eq!(parse("generated/hosts/h/root/etc/x:12", &files).unwrap(), ok("hosts/h/root/etc/x:12", None));
        assert_eq!(parse("hosts/h/root/etc/x:12:3", &files).unwrap(), ok("hosts/h/root/etc/x:12", Some(3)));
        assert_eq!(
            parse("/abs/repo/generated/hosts/h/root/etc/x:12", &files).unwrap(),
            ok("hosts/h/root/etc/x:12", None)
        );
        // Not in the compiled set: the number is the line.
        assert_eq!(parse("hosts/h/root/etc/y:12", &files).unwrap(), ok("hosts/h/root/etc/y", Some(12)));
    }

    #[test]
    fn matches_whole_names_only() {
        assert!(mentions("10.0.3.10\tdb1.lan db1", "db1"));
        assert!(!mentions("postgres-exporter", "postgres"));
        assert!(mentions("| postgres | x", "postgres"));
    }
}
