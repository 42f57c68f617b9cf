//! Stage 5, **render**: [`RenderJob`]s → [`Artifact`]s, in parallel.
//!
//! Templates are minijinja 3 files named `<family>/<file>.j2`. The built-in ones are
//! compiled into the binary (see `build.rs`); a site's own `templates/` folder overrides
//! any of them file by file, and an override can `{% extends "builtin/<name>" %}` to change
//! one block. The environment is strict: an undefined variable, a `none`, or a list
//! printed without a loop is an error, never an empty string in a firewall rule.
//! Every template is compiled up front so all syntax errors are reported in one run.

pub mod escape;
pub mod markdown;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use minijinja::value::{Value, ValueKind};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, UndefinedBehavior};
use rayon::prelude::*;

use crate::artifact::{Artifact, ArtifactMeta};
use crate::diag::{Diagnostic, Diagnostics, FileId, Loc, SourceMap};

mod builtin {
    include!(concat!(env!("OUT_DIR"), "/builtin_templates.rs"));
}

/// The built-in templates: `(name, source)`, sorted by name.
pub fn builtin_templates() -> &'static [(&'static str, &'static str)] {
    builtin::TEMPLATES
}

/// One file to render.
#[derive(Debug)]
pub struct RenderJob {
    /// Template name, e.g. `docs/inventory.md.j2`.
    pub template: &'static str,
    /// The typed context, converted once to a minijinja value.
    pub context: Value,
    /// Where the output goes and what it is.
    pub meta: ArtifactMeta,
    /// The site entity this file is rendered for, for error messages.
    pub origin: Option<Loc>,
}

/// Where a template came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateOrigin {
    /// Compiled into the binary.
    Builtin,
    /// The site's `templates/` folder.
    Site,
}

/// The template environment with every template loaded and compiled.
pub struct Templates {
    env: Environment<'static>,
    files: BTreeMap<String, (TemplateOrigin, FileId)>,
}

impl Templates {
    /// Loads the built-in templates and the overrides in `override_dir` (shown as
    /// `display` in messages), and compiles all of them.
    pub fn load(
        override_dir: Option<&Path>,
        display: &str,
        sources: &mut SourceMap,
        diags: &mut Diagnostics,
    ) -> Templates {
        let mut texts: BTreeMap<String, (TemplateOrigin, String)> = BTreeMap::new();
        for (name, text) in builtin_templates() {
            texts.insert(name.to_string(), (TemplateOrigin::Builtin, text.to_string()));
            texts.insert(format!("builtin/{name}"), (TemplateOrigin::Builtin, text.to_string()));
        }
        if let Some(dir) = override_dir.filter(|d| d.is_dir()) {
            for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
                let entry = match entry {
                    Ok(e) => e,
                    Err(e) => {
                        diags.push(Diagnostic::error_nowhere("io", format!("failed to walk `{display}`: {e}")));
                        continue;
                    }
                };
                if !entry.file_type().is_file() || entry.path().extension().is_none_or(|x| x != "j2") {
                    continue;
                }
                let rel = entry.path().strip_prefix(dir).unwrap_or(entry.path()).to_string_lossy().replace('\\', "/");
                match std::fs::read_to_string(entry.path()) {
                    // A copy identical to the built-in one (as in medianest's own repository,
                    // whose `templates/` is the built-in set) is not an override.
                    Ok(t) if builtin_templates().iter().any(|(n, b)| *n == rel && *b == t) => {}
                    Ok(t) => {
                        texts.insert(rel, (TemplateOrigin::Site, t));
                    }
                    Err(e) => {
                        diags.push(Diagnostic::error_nowhere("io", format!("failed to read `{display}/{rel}`: {e}")))
                    }
                }
            }
        }
        let mut files = BTreeMap::new();
        let mut shared: BTreeMap<String, String> = BTreeMap::new();
        for (name, (origin, text)) in texts {
            let shown = match origin {
                TemplateOrigin::Builtin => {
                    format!("<builtin>/{}", name.trim_start_matches("builtin/"))
                }
                TemplateOrigin::Site => format!("{display}/{name}"),
            };
            let id = sources.add(shown, text.clone());
            files.insert(name.clone(), (origin, id));
            shared.insert(name, text);
        }
        let env = environment(Arc::new(shared));
        let templates = Templates { env, files };
        // Compile everything now: every syntax error in one run.
        for (name, (origin, file)) in &templates.files {
            if name.starts_with("builtin/") {
                continue;
            }
            if let Err(e) = templates.env.get_template(name) {
                diags.push(template_diagnostic(&e, *file, *origin, "invalid template"));
            }
        }
        templates
    }

    /// Where a template comes from, if it exists.
    pub fn origin(&self, name: &str) -> Option<TemplateOrigin> {
        self.files.get(name).map(|(o, _)| *o)
    }

    /// Renders every job in parallel; the output keeps the jobs' order.
    pub fn render_all(&self, jobs: Vec<RenderJob>, diags: &mut Diagnostics) -> Vec<Artifact> {
        let results: Vec<Result<Artifact, Box<Diagnostic>>> =
            jobs.into_par_iter().map(|job| self.render(job)).collect();
        let mut out = Vec::with_capacity(results.len());
        for r in results {
            match r {
                Ok(a) => out.push(a),
                Err(d) => diags.push(*d),
            }
        }
        out
    }

    fn render(&self, job: RenderJob) -> Result<Artifact, Box<Diagnostic>> {
        let (origin, file) = self.files.get(job.template).copied().unwrap_or((TemplateOrigin::Builtin, 0));
        let what = format!("failed to render `generated/{}`", job.meta.path);
        let rendered = self.env.get_template(job.template).and_then(|t| t.render(&job.context));
        match rendered {
            Ok(mut text) => {
                if !text.ends_with('\n') {
                    text.push('\n');
                }
                // The text grew by doubling, and every file is kept until the build
                // is written: give the slack back (on the 1,000/10,000 site about a
                // fifth of peak memory).
                text.shrink_to_fit();
                let mut meta = job.meta;
                meta.template = job.template.to_string();
                Ok(Artifact::new(text.into_bytes(), meta))
            }
            Err(e) => {
                let mut d = template_diagnostic(&e, file, origin, &what);
                if let Some(o) = job.origin {
                    d = d.also(o, "rendered for this entity");
                }
                Err(Box::new(d))
            }
        }
    }
}

fn template_diagnostic(e: &Error, file: FileId, origin: TemplateOrigin, what: &str) -> Diagnostic {
    let detail = e.detail().map(|d| format!(": {d}")).unwrap_or_default();
    let message = format!("{what}: {}{detail}", e.kind());
    let help = match origin {
        TemplateOrigin::Builtin => {
            "this is a bug in a built-in template; please report it with the site that triggers it"
        }
        TemplateOrigin::Site => {
            "fix the override in the site's templates folder, or delete it to use the built-in template"
        }
    };
    let d = match e.range() {
        Some(range) => Diagnostic::error("template-error", message, Loc::new(file, range)),
        None => Diagnostic::error_nowhere("template-error", message),
    };
    d.help(help)
}

/// The configured environment over a fixed set of template texts.
fn environment(texts: Arc<BTreeMap<String, String>>) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_loader(move |name| Ok(texts.get(name).cloned()));
    env.set_auto_reload(false);
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // The debug dump would print whole contexts into error messages and CI logs.
    env.set_debug(false);
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(true)
            .build()
            .expect("default delimiters are valid"),
    );
    env.set_auto_escape_callback(escape::auto_escape_for);
    env.set_formatter(format_value);
    for kind in ["yaml", "xml", "sh", "md"] {
        env.add_filter(kind, move |v: String| Value::from_safe_string(escape::apply(kind, &v).unwrap_or(v)));
    }
    env.add_filter("markdown", |v: String| Value::from_safe_string(markdown::to_html(&v)));
    env
}

/// Prints values the way config files expect: `true`/`false`, never `None`, and never a
/// Python-style list.
fn format_value(out: &mut minijinja::Output, state: &mut minijinja::State, value: &Value) -> Result<(), Error> {
    match value.kind() {
        ValueKind::Undefined => {
            return Err(Error::new(ErrorKind::UndefinedError, "an undefined value was printed"));
        }
        ValueKind::None => {
            return Err(Error::new(ErrorKind::InvalidOperation, "`none` was printed; guard it with `{% if %}`"));
        }
        ValueKind::Seq | ValueKind::Map | ValueKind::Iterable => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "a list or map was printed; loop over it or use `|join`",
            ));
        }
        ValueKind::Bool => {
            out.write_str(if value.is_true() { "true" } else { "false" })
                .map_err(|_| Error::new(ErrorKind::WriteFailure, "write failed"))?;
            return Ok(());
        }
        // Numbers need no escaping in any format, and YAML must see them as numbers.
        ValueKind::Number => {
            return out.write_str(&value.to_string()).map_err(|_| Error::new(ErrorKind::WriteFailure, "write failed"));
        }
        _ => {}
    }
    if let AutoEscape::Custom(kind) = state.auto_escape() {
        let owned;
        let s = match value.as_str() {
            Some(s) => s,
            None => {
                owned = value.to_string();
                &owned
            }
        };
        // Most values need no escaping: write them as they are, without a copy.
        let escaped;
        let text = if value.is_safe() || escape::is_plain(kind, s) {
            s
        } else {
            escaped =
                escape::apply(kind, s).ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "unknown escaping"))?;
            &escaped
        };
        return out.write_str(text).map_err(|_| Error::new(ErrorKind::WriteFailure, "write failed"));
    }
    // No escaping (line-oriented configs): strings as they are, the rest as minijinja
    // prints them.
    match value.as_str() {
        Some(s) if matches!(state.auto_escape(), AutoEscape::None) => {
            out.write_str(s).map_err(|_| Error::new(ErrorKind::WriteFailure, "write failed"))
        }
        _ => minijinja::escape_formatter(out, state, value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_with(name: &str, text: &str) -> Environment<'static> {
        let mut m = BTreeMap::new();
        m.insert(name.to_string(), text.to_string());
        environment(Arc::new(m))
    }

    #[test]
    fn every_builtin_template_compiles() {
        let mut sources = SourceMap::default();
        let mut diags = Diagnostics::default();
        let t = Templates::load(None, "templates", &mut sources, &mut diags);
        assert!(diags.is_empty(), "{}", diags.render_plain(&sources));
        assert!(!builtin_templates().is_empty());
        for (name, _) in builtin_templates() {
            assert_eq!(t.origin(name), Some(TemplateOrigin::Builtin));
        }
    }

    #[test]
    fn strict_undefined_and_no_python_literals() {
        let env = env_with("a.conf.j2", "{{ missing }}");
        assert!(env.get_template("a.conf.j2").unwrap().render(()).is_err());
        let env = env_with("a.conf.j2", "{{ x }}");
        let t = env.get_template("a.conf.j2").unwrap();
        assert_eq!(t.render(minijinja::context! { x => true }).unwrap(), "true");
        assert!(t.render(minijinja::context! { x => () }).is_err());
        assert!(t.render(minijinja::context! { x => vec![1, 2] }).is_err());
    }

    #[test]
    fn escapes_by_extension() {
        let ctx = minijinja::context! { x => "a b'c" };
        assert_eq!(
            env_with("a.sh.j2", "echo {{ x }}").get_template("a.sh.j2").unwrap().render(&ctx).unwrap(),
            "echo 'a b'\\''c'"
        );
        assert_eq!(
            env_with("a.yml.j2", "k: {{ x }}").get_template("a.yml.j2").unwrap().render(&ctx).unwrap(),
            "k: \"a b'c\""
        );
        assert_eq!(
            env_with("a.xml.j2", "<k>{{ x }}</k>").get_template("a.xml.j2").unwrap().render(&ctx).unwrap(),
            "<k>a b&apos;c</k>"
        );
        assert_eq!(
            env_with("a.md.j2", "{{ x|sh }}").get_template("a.md.j2").unwrap().render(&ctx).unwrap(),
            "'a b'\\''c'"
        );
        assert_eq!(env_with("a.yml.j2", "k: {{ 3 }}").get_template("a.yml.j2").unwrap().render(()).unwrap(), "k: 3");
    }

    #[test]
    fn keeps_the_trailing_newline() {
        let env = env_with("a.conf.j2", "x\n");
        assert_eq!(env.get_template("a.conf.j2").unwrap().render(()).unwrap(), "x\n");
    }
}
