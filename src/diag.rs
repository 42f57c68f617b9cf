//! Diagnostics: what is wrong with a site, where, and how to fix it.
//!
//! Every stage reports problems into a [`Diagnostics`] sink instead of returning at the
//! first one, so a run shows *all* errors at once. A diagnostic points at byte spans of
//! files registered in the [`SourceMap`]; rendering (with `codespan-reporting`) turns
//! them into `file:line:col` plus the source line and an underline. Output is sorted by
//! file, position and message so that it is stable whatever order stages ran in.

use std::io::Write;
use std::ops::Range;

use codespan_reporting::diagnostic as cs;
use codespan_reporting::files::SimpleFiles;
use codespan_reporting::term;

/// Index of a file in the [`SourceMap`].
pub type FileId = usize;

/// Every text that a diagnostic can point into, by repository-relative name.
#[derive(Default)]
pub struct SourceMap {
    files: SimpleFiles<String, String>,
    names: Vec<String>,
}

impl SourceMap {
    /// Registers a file's text under its display name (e.g. `site/hosts/db.toml`).
    pub fn add(&mut self, name: String, text: String) -> FileId {
        self.names.push(name.clone());
        self.files.add(name, text)
    }

    /// Number of registered files.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether no file is registered.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The display name of a file.
    pub fn name(&self, id: FileId) -> &str {
        &self.names[id]
    }

    /// The text of a file.
    pub fn text(&self, id: FileId) -> &str {
        self.files.get(id).map(|f| f.source().as_str()).unwrap_or("")
    }

    /// 1-based line and column of a byte offset.
    pub fn line_col(&self, id: FileId, offset: usize) -> (usize, usize) {
        let text = self.text(id);
        let offset = offset.min(text.len());
        let before = &text[..floor_char_boundary(text, offset)];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
        (line, col)
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A place in a source file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Loc {
    /// The file.
    pub file: FileId,
    /// Byte range in that file.
    pub span: Range<usize>,
}

impl Loc {
    /// A location in `file` at `span`.
    pub fn new(file: FileId, span: Range<usize>) -> Self {
        Loc { file, span }
    }
}

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Fails the build; nothing is written.
    Error,
    /// Reported, does not fail the build.
    Warning,
}

/// One problem found in the site.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Stable, kebab-case name of the check (`unknown-reference`, `port-clash`, …).
    pub code: &'static str,
    /// What is wrong, lowercase, names in backticks.
    pub message: String,
    /// Where it is wrong, with a short label, if the problem has a place.
    pub primary: Option<(Loc, String)>,
    /// Other places that explain it (the first definition of a duplicate, …).
    pub secondary: Vec<(Loc, String)>,
    /// How to fix it, when the fix is known.
    pub help: Option<String>,
}

impl Diagnostic {
    /// A new error at `loc`.
    pub fn error(code: &'static str, message: impl Into<String>, loc: Loc) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            primary: Some((loc, String::new())),
            secondary: Vec::new(),
            help: None,
        }
    }

    /// A new error with no location (a missing file or directory, …).
    pub fn error_nowhere(code: &'static str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            primary: None,
            secondary: Vec::new(),
            help: None,
        }
    }

    /// Turns it into a warning.
    pub fn warning(mut self) -> Self {
        self.severity = Severity::Warning;
        self
    }

    /// Sets the label under the primary span.
    pub fn label(mut self, text: impl Into<String>) -> Self {
        if let Some((_, l)) = &mut self.primary {
            *l = text.into();
        }
        self
    }

    /// Adds a secondary location.
    pub fn also(mut self, loc: Loc, text: impl Into<String>) -> Self {
        self.secondary.push((loc, text.into()));
        self
    }

    /// Sets the fix.
    pub fn help(mut self, text: impl Into<String>) -> Self {
        self.help = Some(text.into());
        self
    }

    fn sort_key(&self, sources: &SourceMap) -> (String, usize, Severity, &'static str, String) {
        match &self.primary {
            Some((loc, _)) => {
                (sources.name(loc.file).to_string(), loc.span.start, self.severity, self.code, self.message.clone())
            }
            None => (String::new(), 0, self.severity, self.code, self.message.clone()),
        }
    }
}

/// The sink every stage reports into.
#[derive(Debug, Default)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    /// Records a diagnostic.
    pub fn push(&mut self, d: Diagnostic) {
        self.items.push(d);
    }

    /// Records everything `other` holds, after what is here.
    pub fn extend(&mut self, other: Diagnostics) {
        self.items.extend(other.items);
    }

    /// Whether any error (not warning) was recorded.
    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    /// Number of errors.
    pub fn error_count(&self) -> usize {
        self.items.iter().filter(|d| d.severity == Severity::Error).count()
    }

    /// Number of warnings.
    pub fn warning_count(&self) -> usize {
        self.items.len() - self.error_count()
    }

    /// All diagnostics in a stable order: by file, position, severity, code, message.
    pub fn sorted(&self, sources: &SourceMap) -> Vec<&Diagnostic> {
        let mut v: Vec<&Diagnostic> = self.items.iter().collect();
        v.sort_by_cached_key(|d| d.sort_key(sources));
        v.dedup_by(|a, b| a.sort_key(sources) == b.sort_key(sources));
        v
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Renders every diagnostic, then a one-line summary, to `out`.
    pub fn emit(&self, sources: &SourceMap, out: &mut dyn WriteColorish) -> std::io::Result<()> {
        let config = term::Config { chars: term::Chars::ascii(), ..term::Config::default() };
        let shown = self.sorted(sources);
        for d in &shown {
            let (files, cs) = display(d, sources);
            out.emit(&config, &files, &cs)?;
        }
        // The closing count is what was printed: identical diagnostics (the TOML parser
        // can report one error twice at the same place) are shown once, so counted once.
        let e = shown.iter().filter(|d| d.severity == Severity::Error).count();
        let w = shown.len() - e;
        if e > 0 {
            writeln!(
                out.writer(),
                "error: the site has {e} error{}{}; nothing was written",
                plural(e),
                if w > 0 { format!(" and {w} warning{}", plural(w)) } else { String::new() }
            )?;
        } else if w > 0 {
            writeln!(out.writer(), "warning: the site has {w} warning{}", plural(w))?;
        }
        Ok(())
    }

    /// Renders everything to a plain string (no colour), as tests and `--color never` see it.
    pub fn render_plain(&self, sources: &SourceMap) -> String {
        let mut buf = PlainOut(Vec::new());
        self.emit(sources, &mut buf).expect("writing to memory cannot fail");
        String::from_utf8_lossy(&buf.0).into_owned()
    }
}

/// `s` for plurals.
pub fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Lines longer than this are shown cut around the label (a 20 MB one-line value is not
/// echoed whole).
const MAX_SHOWN: usize = 240;

/// What a diagnostic shows of the site: only the lines its labels point at (the others
/// kept as empty lines, so line numbers stay right), with every control and invisible
/// character replaced by U+FFFD (one character for one: columns stay right), and long
/// lines cut around the label. Raw bytes of a site file never reach the terminal.
fn display(d: &Diagnostic, sources: &SourceMap) -> (SimpleFiles<String, String>, cs::Diagnostic<FileId>) {
    let labels: Vec<(bool, &Loc, &String)> =
        d.primary.iter().map(|(l, t)| (true, l, t)).chain(d.secondary.iter().map(|(l, t)| (false, l, t))).collect();
    let mut files = SimpleFiles::new();
    let mut ids: std::collections::BTreeMap<FileId, (FileId, Vec<(usize, usize)>)> = Default::default();
    // The lines each file must show: (line start, line end) byte ranges.
    for (_, loc, _) in &labels {
        let text = sources.text(loc.file);
        let start = floor_char_boundary(text, loc.span.start.min(text.len()));
        let end = floor_char_boundary(text, loc.span.end.min(text.len())).max(start);
        let first = text[..start].rfind('\n').map(|i| i + 1).unwrap_or(0);
        let last = text[end..].find('\n').map(|i| end + i).unwrap_or(text.len());
        ids.entry(loc.file).or_insert((0, Vec::new())).1.push((first, last));
    }
    // Each file's shown text, and how to map an original offset into it.
    // Per file, per shown line: (line start, line end, where it starts in the shown text,
    // the first byte kept, the shown line).
    type Shown = (usize, usize, usize, usize, String);
    let mut maps: std::collections::BTreeMap<FileId, Vec<Shown>> = Default::default();
    for (file, (new_id, ranges)) in ids.iter_mut() {
        let text = sources.text(*file);
        ranges.sort();
        ranges.dedup();
        let mut shown = String::new();
        let mut map: Vec<Shown> = Vec::new();
        let mut line_starts: Vec<usize> = Vec::new();
        for &(a, b) in ranges.iter() {
            let mut pos = a;
            for line in text[a..b].split('\n') {
                line_starts.push(pos);
                pos += line.len() + 1;
            }
        }
        line_starts.sort();
        line_starts.dedup();
        let mut line_no_done = 0usize;
        for ls in line_starts {
            let line_no = text[..ls].matches('\n').count();
            shown.extend(std::iter::repeat_n('\n', line_no - line_no_done));
            line_no_done = line_no;
            let le = text[ls..].find('\n').map(|i| ls + i).unwrap_or(text.len());
            let line = &text[ls..le];
            // Where the labels on this line start (to keep them in the window).
            let first_label = labels
                .iter()
                .filter(|(_, l, _)| l.file == *file && l.span.start >= ls && l.span.start <= le)
                .map(|(_, l, _)| l.span.start - ls)
                .min()
                .unwrap_or(0);
            let (from, body) = window(line, first_label);
            map.push((ls, le, shown.len(), from, body.clone()));
            shown.push_str(&body);
        }
        shown.push('\n');
        *new_id = files.add(sources.name(*file).to_string(), shown);
        maps.insert(*file, map);
    }
    let place = |loc: &Loc| -> (FileId, std::ops::Range<usize>) {
        let (new_id, _) = ids[&loc.file];
        let map = &maps[&loc.file];
        let to = |off: usize| -> usize {
            for (ls, le, ss, from, body) in map {
                if off >= *ls && off <= *le {
                    // Count characters (replacements keep the count, not the bytes).
                    let text = sources.text(loc.file);
                    let line = &text[*ls..*le];
                    let rel = floor_char_boundary(line, (off - ls).max(*from));
                    let n = line[*from..rel].chars().count() + usize::from(*from > 0);
                    return ss + body.char_indices().nth(n).map(|(i, _)| i).unwrap_or(body.len());
                }
            }
            0
        };
        let a = to(loc.span.start);
        let b = to(loc.span.end).max(a);
        (new_id, a..b)
    };
    let mut out = match d.severity {
        Severity::Error => cs::Diagnostic::error(),
        Severity::Warning => cs::Diagnostic::warning(),
    }
    .with_code(d.code)
    .with_message(d.message.clone());
    let mut cs_labels = Vec::new();
    for (primary, loc, text) in labels {
        let (id, span) = place(loc);
        let l = if primary { cs::Label::primary(id, span) } else { cs::Label::secondary(id, span) };
        cs_labels.push(l.with_message(text.clone()));
    }
    out = out.with_labels(cs_labels);
    if let Some(h) = &d.help {
        out = out.with_notes(vec![format!("help: {h}")]);
    }
    (files, out)
}

/// A line as shown: control and invisible characters replaced one for one, and a line
/// longer than [`MAX_SHOWN`] cut to a window that starts at the line (or shortly before
/// the first label, when it lies further in) and ends with `…`. Returns the first byte
/// of the line that is kept, and the text (with a leading `…` when that is not 0).
fn window(line: &str, label_at: usize) -> (usize, String) {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| if (c.is_control() && c != '\t') || is_invisible(c) || c == '\r' { '\u{FFFD}' } else { c })
            .collect()
    };
    if line.chars().count() <= MAX_SHOWN {
        return (0, clean(line));
    }
    let from = if label_at > MAX_SHOWN / 2 { floor_char_boundary(line, label_at - 20) } else { 0 };
    let mut end = from;
    for (n, (i, c)) in line[from..].char_indices().enumerate() {
        if n >= MAX_SHOWN {
            break;
        }
        end = from + i + c.len_utf8();
    }
    let mut body = String::new();
    if from > 0 {
        body.push('…');
    }
    body.push_str(&clean(&line[from..end]));
    body.push('…');
    (from, body)
}

/// Where rendered diagnostics go: a colour terminal or plain bytes.
pub trait WriteColorish {
    /// Renders one diagnostic.
    fn emit(
        &mut self,
        config: &term::Config,
        files: &SimpleFiles<String, String>,
        d: &cs::Diagnostic<FileId>,
    ) -> std::io::Result<()>;
    /// The underlying writer, for plain lines.
    fn writer(&mut self) -> &mut dyn Write;
}

/// Plain bytes, no colour.
pub struct PlainOut<W: Write>(pub W);

impl<W: Write> WriteColorish for PlainOut<W> {
    fn emit(
        &mut self,
        config: &term::Config,
        files: &SimpleFiles<String, String>,
        d: &cs::Diagnostic<FileId>,
    ) -> std::io::Result<()> {
        term::emit_to_io_write(&mut self.0, config, files, d).map_err(std::io::Error::other)
    }
    fn writer(&mut self) -> &mut dyn Write {
        &mut self.0
    }
}

/// A colour-capable terminal stream.
pub struct ColorOut(pub term::termcolor::StandardStream);

impl WriteColorish for ColorOut {
    fn emit(
        &mut self,
        config: &term::Config,
        files: &SimpleFiles<String, String>,
        d: &cs::Diagnostic<FileId>,
    ) -> std::io::Result<()> {
        term::emit_to_write_style(&mut self.0, config, files, d).map_err(std::io::Error::other)
    }
    fn writer(&mut self) -> &mut dyn Write {
        &mut self.0
    }
}

/// The closest candidate to `name`, for "did you mean `…`?" hints.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<(f64, &str)> = None;
    for c in candidates {
        let score = strsim::jaro_winkler(name, c);
        if score > 0.8 && best.is_none_or(|(s, b)| score > s || (score == s && c < b)) {
            best = Some((score, c));
        }
    }
    best.map(|(_, c)| c)
}

/// Up to eight names in backticks, for hints.
pub fn shortlist(names: &[&str]) -> String {
    let mut v: Vec<String> = names.iter().take(8).map(|n| format!("`{n}`")).collect();
    if names.len() > 8 {
        v.push(format!("… ({} more)", names.len() - 8));
    }
    v.join(", ")
}

/// Characters that show nothing, or reorder or break what is shown, though they are not
/// control characters: line and paragraph separators, bidirectional overrides and
/// isolates, zero-width and other format characters. A reviewer reading a diff cannot
/// see them, so no site value may hold one, and
/// diagnostics show them as U+FFFD (here, at the ground floor, for both).
pub fn is_invisible(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x034F | 0x061C | 0x115F | 0x1160 | 0x17B4 | 0x17B5 | 0x180B..=0x180F
        | 0x200B..=0x200F | 0x2028..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F
        | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFFB | 0x1D173..=0x1D17A | 0xE0000..=0xE0FFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let mut s = SourceMap::default();
        let f = s.add("a.toml".into(), "x = 1\ny = 2\n".into());
        assert_eq!(s.line_col(f, 0), (1, 1));
        assert_eq!(s.line_col(f, 6), (2, 1));
        assert_eq!(s.line_col(f, 10), (2, 5));
    }

    #[test]
    fn suggests_the_closest_name() {
        assert_eq!(did_you_mean("db3", ["db1", "db2", "cache1"]), Some("db1"));
        assert_eq!(did_you_mean("postgress", ["postgres", "redis"]), Some("postgres"));
        assert_eq!(did_you_mean("zzz", ["postgres", "redis"]), None);
    }

    #[test]
    fn renders_file_line_col_source_and_help() {
        let mut s = SourceMap::default();
        let f = s.add("site/a.toml".into(), "[hosts.a]\nkind = \"vmm\"\n".into());
        let mut d = Diagnostics::default();
        d.push(
            Diagnostic::error("bad-value", "unknown host kind `vmm`", Loc::new(f, 17..22))
                .label("here")
                .help("use `vm`"),
        );
        let out = d.render_plain(&s);
        assert!(out.contains("site/a.toml:2:8"), "{out}");
        assert!(out.contains("kind = \"vmm\""), "{out}");
        assert!(out.contains("help: use `vm`"), "{out}");
        assert!(out.contains("nothing was written"), "{out}");
    }

    #[test]
    fn the_closing_count_counts_what_is_shown() {
        let mut s = SourceMap::default();
        let f = s.add("site/a.toml".into(), "a = {b = 1 c = 2}\n".into());
        let mut d = Diagnostics::default();
        for _ in 0..2 {
            d.push(Diagnostic::error("toml-syntax", "invalid TOML: missing comma", Loc::new(f, 15..16)));
        }
        d.push(Diagnostic::error("toml-syntax", "invalid TOML: extra assignment", Loc::new(f, 13..14)));
        d.push(Diagnostic::error("x", "same place, same message", Loc::new(f, 0..1)).warning());
        d.push(Diagnostic::error("x", "same place, same message", Loc::new(f, 0..1)).warning());
        let out = d.render_plain(&s);
        assert_eq!(out.matches("error[toml-syntax]").count(), 2, "{out}");
        assert_eq!(out.matches("warning[x]").count(), 1, "{out}");
        assert!(out.contains("error: the site has 2 errors and 1 warning; nothing was written"), "{out}");
    }
}
