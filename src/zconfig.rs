//! The ZConfig file syntax: what `zope.conf` and `zeo.conf` are written in.
//!
//! Owns the reading of such a file into a tree of [`Section`]s and
//! [`Value`]s, as ZConfig's parser (`ZConfig.cfgparser`) reads it without a
//! schema:
//!
//! - blank lines and `#` comment lines (a `#` elsewhere is part of a value);
//! - `key value` lines: the key up to the first whitespace, the value is the
//!   rest of the line (may be empty); keys are case-insensitive (kept here in
//!   lower case, as ZConfig's schema matches them);
//! - sections `<type [name]>` ... `</type>`, nested; `<type [name]/>` is an
//!   empty section; types and names are lower-cased, as ZConfig does;
//! - `%define NAME value`, then `$NAME`, `${NAME}` (names case-insensitive),
//!   `$(NAME)` (an environment variable, case kept) and `$$` in values,
//!   `%include` and `%import` arguments; an undefined name is an error;
//! - `%include path`: relative to the including file; the included file
//!   shares the defines and must close the sections it opens;
//! - `%import package`: ignored (it extends ZConfig's schema, which we do not
//!   have; section types stay plain names here).
//!
//! Beyond ZConfig: `%include` may nest at most [`MAX_INCLUDE_DEPTH`] files
//! deep (ZConfig would recurse until Python's stack gives up), a file may
//! pull in at most [`MAX_INCLUDES`] files in all, sections nest at most
//! [`MAX_SECTION_DEPTH`] deep, and values are at most [`MAX_VALUE_LEN`]
//! bytes ([`MAX_TOTAL_LEN`] in all) after substitution, so that no input
//! exhausts the stack or the memory, or runs for ever.
//!
//! It does not know what any key or section means: which storages a
//! `zope.conf` or `zeo.conf` serves is [`crate::zope_conf`]'s business.
//! Errors are [`Error::ZConfig`]: one line, `file:line: what`.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// How many files deep `%include` may nest (the top file is depth 0).
pub const MAX_INCLUDE_DEPTH: usize = 32;

/// How many sections deep a file may nest (real files nest 3 or 4).
pub const MAX_SECTION_DEPTH: usize = 64;

/// How many `%include`s one file and its included files may hold in all
/// (two self-includes per file would otherwise read 2^32 files).
pub const MAX_INCLUDES: usize = 1000;

/// The longest value after substitution, in bytes (`%define b $a$a`,
/// `%define c $b$b`, ... doubles a value per line).
pub const MAX_VALUE_LEN: usize = 64 * 1024;

/// The most bytes of values and defines one file and its included files may
/// come to after substitution.
pub const MAX_TOTAL_LEN: usize = 16 * 1024 * 1024;

/// Where something was written: a file and a 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file (as the including file named it, joined to its directory).
    pub file: PathBuf,
    /// 1-based line number.
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

impl Location {
    /// An [`Error::ZConfig`] at this place.
    pub fn error(&self, reason: impl Into<String>) -> Error {
        Error::ZConfig {
            path: self.file.clone(),
            line: self.line,
            reason: reason.into(),
        }
    }
}

/// One `key value` line, after substitution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    /// The key, lower-cased.
    pub key: String,
    /// The value, with `$NAME`s replaced; empty when the line has no value.
    pub value: String,
    /// Where the line is.
    pub at: Location,
}

/// A section (`<type name>` ... `</type>`), or the top level of a file
/// (empty `section_type`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The section type, lower-cased (`zodb_db`, `filestorage`); empty for
    /// the top level.
    pub section_type: String,
    /// The section name, lower-cased (`main` in `<zodb_db main>`).
    pub name: Option<String>,
    /// Where the section starts (line 0 of the file for the top level).
    pub at: Location,
    /// Its `key value` lines, in order (included files' lines in place).
    pub values: Vec<Value>,
    /// Its subsections, in order.
    pub sections: Vec<Section>,
}

impl Section {
    fn new(section_type: String, name: Option<String>, at: Location) -> Self {
        Section {
            section_type,
            name,
            at,
            values: Vec::new(),
            sections: Vec::new(),
        }
    }

    /// Every value of `key` (lower case), in order.
    pub fn values_of<'s>(&'s self, key: &'s str) -> impl Iterator<Item = &'s Value> + 's {
        self.values.iter().filter(move |v| v.key == key)
    }

    /// The section as it is written, for messages: `<zodb_db main>`.
    pub fn describe(&self) -> String {
        match &self.name {
            Some(n) => format!("<{} {n}>", self.section_type),
            None => format!("<{}>", self.section_type),
        }
    }
}

/// Where the parser gets included files and environment variables from:
/// the real system ([`System`]), or a fake one in tests and fuzzing.
pub trait Loader {
    /// The bytes of a file.
    ///
    /// # Errors
    /// The operating system's error.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;

    /// An environment variable (`$(NAME)`), if set.
    fn env_var(&self, name: &str) -> Option<String>;
}

/// The file system and the process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct System;

impl Loader for System {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn env_var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// Read a ZConfig file (and the files it includes) from the file system.
///
/// # Errors
/// [`Error::ZConfig`] naming the file and line of the first problem:
/// a syntax error, an undefined `$NAME`, an unclosed section, an unreadable
/// or non-UTF-8 file; [`Error::Config`] when `path` itself cannot be read.
pub fn parse_file(path: &Path) -> Result<Section> {
    parse(path, &System)
}

/// Read a ZConfig file through `loader`.
///
/// # Errors
/// As [`parse_file`].
pub fn parse(path: &Path, loader: &dyn Loader) -> Result<Section> {
    let bytes = loader.read(path).map_err(|e| {
        Error::Config(format!(
            "cannot read the configuration file: {}",
            crate::repozo::python_oserror(&e, path)
        ))
    })?;
    parse_bytes(path, &bytes, loader)
}

/// Parse `bytes` as the content of the file `path`; `%include`s and
/// `$(NAME)`s go through `loader`.
///
/// # Errors
/// As [`parse_file`].
pub fn parse_bytes(path: &Path, bytes: &[u8], loader: &dyn Loader) -> Result<Section> {
    let mut top = Section::new(
        String::new(),
        None,
        Location {
            file: path.to_path_buf(),
            line: 0,
        },
    );
    let mut parser = Parser {
        loader,
        defines: HashMap::new(),
        includes: 0,
        total_len: 0,
    };
    parser.parse_into(path, bytes, &mut top, 0, 0)?;
    Ok(top)
}

struct Parser<'l> {
    loader: &'l dyn Loader,
    /// `%define`d names (lower case) and their substituted values; shared
    /// with included files, both ways, as in ZConfig.
    defines: HashMap<String, String>,
    /// `%include`s read so far.
    includes: usize,
    /// Bytes of substituted values and defines so far.
    total_len: usize,
}

impl Parser<'_> {
    /// Parse one file's content into `into`. `include_depth` counts files,
    /// `section_depth` the sections `into` is nested in.
    fn parse_into(
        &mut self,
        file: &Path,
        bytes: &[u8],
        into: &mut Section,
        include_depth: usize,
        section_depth: usize,
    ) -> Result<()> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let line = 1 + bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            Location {
                file: file.to_path_buf(),
                line,
            }
            .error("not UTF-8 text")
        })?;
        // The sections opened in this file and not yet closed; the innermost
        // last. An explicit stack: nesting never recurses.
        let mut open: Vec<Section> = Vec::new();
        // Lines end at '\n' only, as ZConfig reads them (a '\r' before it is
        // stripped with the other whitespace).
        for (i, raw) in text.split('\n').enumerate() {
            let at = Location {
                file: file.to_path_buf(),
                line: i + 1,
            };
            let line = py_strip(raw);
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(rest) = line.strip_prefix("</") {
                let Some(rest) = rest.strip_suffix('>') else {
                    return Err(at.error("malformed section end"));
                };
                let Some(done) = open.pop() else {
                    return Err(at.error("unexpected section end"));
                };
                if py_rstrip(rest).to_lowercase() != done.section_type {
                    return Err(at.error(format!(
                        "unbalanced section end: {} (line {}) is closed by </{rest}>",
                        done.describe(),
                        done.at.line
                    )));
                }
                current(&mut open, into).sections.push(done);
            } else if let Some(rest) = line.strip_prefix('<') {
                let Some(rest) = rest.strip_suffix('>') else {
                    return Err(at.error("malformed section start"));
                };
                let (rest, empty) = match rest.strip_suffix('/') {
                    Some(r) => (r, true),
                    None => (rest, false),
                };
                let Some((section_type, name)) = section_header(py_rstrip(rest)) else {
                    return Err(at.error("malformed section header"));
                };
                if section_depth + open.len() >= MAX_SECTION_DEPTH {
                    return Err(at.error(format!(
                        "sections nested more than {MAX_SECTION_DEPTH} deep"
                    )));
                }
                let section =
                    Section::new(section_type.to_lowercase(), name.map(str::to_lowercase), at);
                if empty {
                    current(&mut open, into).sections.push(section);
                } else {
                    open.push(section);
                }
            } else if let Some(rest) = line.strip_prefix('%') {
                let Some((directive, arg)) = key_value(rest) else {
                    return Err(at.error("missing or unrecognized directive"));
                };
                if !matches!(directive, "define" | "import" | "include") {
                    return Err(at.error(format!(
                        "unknown directive: {}",
                        crate::repozo::py_repr(directive)
                    )));
                }
                if arg.is_empty() {
                    return Err(at.error(format!("missing argument to %{directive} directive")));
                }
                match directive {
                    "define" => self.define(arg, &at)?,
                    "include" => {
                        let target = self.substitute(py_strip(arg), &at)?;
                        let path = include_path(file, &target).map_err(|r| at.error(r))?;
                        if include_depth + 1 > MAX_INCLUDE_DEPTH {
                            return Err(at.error(format!(
                                "%include nested more than {MAX_INCLUDE_DEPTH} files deep (does a file include itself?)"
                            )));
                        }
                        self.includes += 1;
                        if self.includes > MAX_INCLUDES {
                            return Err(at.error(format!(
                                "more than {MAX_INCLUDES} %include directives in all"
                            )));
                        }
                        let bytes = self.loader.read(&path).map_err(|e| {
                            at.error(format!(
                                "%include: {}",
                                crate::repozo::python_oserror(&e, &path)
                            ))
                        })?;
                        let depth = section_depth + open.len();
                        let target = current(&mut open, into);
                        self.parse_into(&path, &bytes, target, include_depth + 1, depth)?;
                    }
                    // A schema extension: the tree has no schema to extend.
                    // Its argument is still substituted, as in ZConfig.
                    _ => {
                        self.substitute(py_strip(arg), &at)?;
                    }
                }
            } else {
                let Some((key, value)) = key_value(line) else {
                    return Err(at.error("malformed configuration data"));
                };
                let value = self.substitute(value, &at)?;
                current(&mut open, into).values.push(Value {
                    key: key.to_lowercase(),
                    value,
                    at,
                });
            }
        }
        if let Some(unclosed) = open.first() {
            return Err(unclosed.at.error(format!(
                "unclosed section {}: no </{}> before the end of the file",
                unclosed.describe(),
                unclosed.section_type
            )));
        }
        Ok(())
    }

    /// `%define NAME [value]`.
    fn define(&mut self, arg: &str, at: &Location) -> Result<()> {
        let (name, raw) = match arg.find(is_py_space) {
            Some(i) => (&arg[..i], py_lstrip(&arg[i..])),
            None => (arg, ""),
        };
        let name = name.to_lowercase();
        // ZConfig quirk, kept: a second %define of a name is accepted only
        // when its text, before substitution, equals the first one's value
        // after substitution.
        if let Some(old) = self.defines.get(&name) {
            if old != raw {
                return Err(at.error(format!("cannot redefine {}", crate::repozo::py_repr(&name))));
            }
        }
        if !is_name(&name) {
            return Err(at.error(format!(
                "not a substitution legal name: {}",
                crate::repozo::py_repr(&name)
            )));
        }
        let value = self.substitute(raw, at)?;
        self.defines.insert(name, value);
        Ok(())
    }

    /// Replace `$NAME`, `${NAME}`, `$(NAME)` and `$$` in `text`.
    fn substitute(&mut self, text: &str, at: &Location) -> Result<String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            let (name, env, tail) = match after.chars().next() {
                None => return Err(at.error("illegal lone '$' at end of source")),
                Some('$') => {
                    out.push('$');
                    rest = &after[1..];
                    continue;
                }
                Some(open @ ('{' | '(')) => {
                    let close = if open == '{' { '}' } else { ')' };
                    let inner = &after[1..];
                    let n = name_len(inner);
                    if n == 0 {
                        return Err(at.error(format!("'${open}' not followed by name")));
                    }
                    let Some(tail) = inner[n..].strip_prefix(close) else {
                        return Err(at.error(format!(
                            "'${open}{}' not followed by '{close}'",
                            &inner[..n]
                        )));
                    };
                    (&inner[..n], open == '(', tail)
                }
                Some(_) => {
                    let n = name_len(after);
                    if n == 0 {
                        return Err(at.error("'$' not followed by '$' or name"));
                    }
                    (&after[..n], false, &after[n..])
                }
            };
            let replacement = if env {
                self.loader.env_var(name)
            } else {
                self.defines.get(&name.to_ascii_lowercase()).cloned()
            };
            let Some(v) = replacement else {
                return Err(at.error(format!(
                    "no replacement for {}",
                    crate::repozo::py_repr(name)
                )));
            };
            if out.len() + v.len() > MAX_VALUE_LEN {
                return Err(at.error(format!(
                    "value longer than {MAX_VALUE_LEN} bytes after substitution"
                )));
            }
            out.push_str(&v);
            rest = tail;
        }
        out.push_str(rest);
        self.total_len += out.len();
        if self.total_len > MAX_TOTAL_LEN {
            return Err(at.error(format!(
                "values longer than {MAX_TOTAL_LEN} bytes in all after substitution"
            )));
        }
        Ok(out)
    }
}

/// The innermost open section, else the one being filled.
fn current<'s>(open: &'s mut [Section], into: &'s mut Section) -> &'s mut Section {
    match open.last_mut() {
        Some(s) => s,
        None => into,
    }
}

/// Python's `str.isspace` (Rust's `char::is_whitespace` lacks the
/// separators U+001C..U+001F that Python's `strip` and `\s` include).
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

fn py_lstrip(s: &str) -> &str {
    s.trim_start_matches(is_py_space)
}

fn py_rstrip(s: &str) -> &str {
    s.trim_end_matches(is_py_space)
}

/// A character of a key, directive, section type or name: anything but
/// whitespace and parentheses (ZConfig's `[^\s()]`).
fn is_name_char(c: char) -> bool {
    !is_py_space(c) && c != '(' && c != ')'
}

/// Split a (stripped) line into its key and value, as ZConfig's
/// `key\s*value` pattern does; `None` when it does not start with a key.
fn key_value(line: &str) -> Option<(&str, &str)> {
    let end = line.find(|c| !is_name_char(c)).unwrap_or(line.len());
    if end == 0 {
        return None;
    }
    Some((&line[..end], py_lstrip(&line[end..])))
}

/// The type and optional name of a section header (`type` or `type name`).
fn section_header(text: &str) -> Option<(&str, Option<&str>)> {
    let end = text.find(|c| !is_name_char(c)).unwrap_or(text.len());
    if end == 0 {
        return None;
    }
    let (section_type, rest) = text.split_at(end);
    if rest.is_empty() {
        return Some((section_type, None));
    }
    let name = py_lstrip(rest);
    if name.len() == rest.len() || name.is_empty() || !name.chars().all(is_name_char) {
        return None;
    }
    Some((section_type, Some(name)))
}

/// Length of the substitution name (`[A-Za-z_][A-Za-z0-9_]*`) at the start
/// of `s`, 0 if there is none.
fn name_len(s: &str) -> usize {
    let b = s.as_bytes();
    if !b
        .first()
        .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
    {
        return 0;
    }
    b.iter()
        .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
        .unwrap_or(b.len())
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && name_len(s) == s.len()
}

/// The file an `%include` names: a path or `file:` URL, relative ones
/// joined to the including file's directory with `.` and `..` resolved as
/// in a URL (as ZConfig joins them).
fn include_path(including: &Path, target: &str) -> std::result::Result<PathBuf, String> {
    let target = match target.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("file") => rest,
        Some((scheme, _))
            if !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            return Err(format!(
                "%include of {}: only local files can be included here",
                crate::repozo::py_repr(target)
            ))
        }
        _ => target,
    };
    let joined = match including.parent() {
        Some(dir) => dir.join(target),
        None => PathBuf::from(target),
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                // `/..` is `/`, as in a URL.
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(".."),
            },
            other => out.push(other),
        }
    }
    Ok(out)
}

/// An in-memory [`Loader`] for tests.
#[cfg(test)]
pub(crate) struct Fake {
    pub(crate) files: Vec<(&'static str, &'static str)>,
    pub(crate) env: Vec<(&'static str, &'static str)>,
}

#[cfg(test)]
impl Loader for Fake {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.files
            .iter()
            .find(|(p, _)| Path::new(p) == path)
            .map(|(_, t)| t.as_bytes().to_vec())
            .ok_or_else(|| io::Error::from_raw_os_error(2))
    }

    fn env_var(&self, name: &str) -> Option<String> {
        self.env
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(files: &[(&'static str, &'static str)]) -> Fake {
        Fake {
            files: files.to_vec(),
            env: vec![("HOME_DIR", "/home/zope")],
        }
    }

    fn parse_text(text: &'static str) -> Result<Section> {
        parse(Path::new("/etc/z.conf"), &fake(&[("/etc/z.conf", text)]))
    }

    fn err(text: &'static str) -> String {
        match parse_text(text) {
            Ok(s) => format!("unexpectedly parsed: {s:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn pairs(s: &Section) -> Vec<(&str, &str)> {
        s.values
            .iter()
            .map(|v| (v.key.as_str(), v.value.as_str()))
            .collect()
    }

    #[test]
    fn key_value_lines_and_comments() {
        let top = parse_text("# a comment\n\n  key  some value  \nempty\nx #not a comment\n")
            .expect("parses");
        assert_eq!(
            pairs(&top),
            [
                ("key", "some value"),
                ("empty", ""),
                ("x", "#not a comment")
            ]
        );
        assert_eq!(top.values[0].at.line, 3);
    }

    #[test]
    fn key_value_parenthesis_ends_key() {
        let top = parse_text("a(b c\n").expect("parses");
        assert_eq!(pairs(&top), [("a", "(b c")]);
    }

    #[test]
    fn key_value_starting_with_parenthesis_is_malformed() {
        assert_eq!(err("(a b\n"), "/etc/z.conf:1: malformed configuration data");
    }

    #[test]
    fn crlf_lines() {
        let top = parse_text("a 1\r\n<s>\r\nb 2\r\n</s>\r\n").expect("parses");
        assert_eq!(pairs(&top), [("a", "1")]);
        assert_eq!(pairs(&top.sections[0]), [("b", "2")]);
    }

    #[test]
    fn sections_nest() {
        let top = parse_text(
            "<zodb_db main>\n  mount-point /\n  <blobstorage>\n    blob-dir /b\n    <filestorage>\n      path /d/Data.fs\n    </filestorage>\n  </blobstorage>\n</zodb_db>\n",
        )
        .expect("parses");
        let db = &top.sections[0];
        assert_eq!(db.describe(), "<zodb_db main>");
        assert_eq!(db.at.line, 1);
        let blob = &db.sections[0];
        assert_eq!(blob.section_type, "blobstorage");
        assert_eq!(blob.name, None);
        assert_eq!(pairs(&blob.sections[0]), [("path", "/d/Data.fs")]);
        assert_eq!(blob.sections[0].at.line, 5);
    }

    #[test]
    fn empty_section() {
        let top = parse_text("<zeo/>\n<a b />\nk v\n").expect("parses");
        assert_eq!(top.sections.len(), 2);
        assert_eq!(top.sections[1].describe(), "<a b>");
        assert_eq!(pairs(&top), [("k", "v")]);
    }

    #[test]
    fn case_of_keys_types_and_names() {
        let top = parse_text(
            "<ZODB_DB Main>\nMount-Point /\n<FileStorage>\nPATH /x\n</filestorage>\n</Zodb_Db>\n",
        )
        .expect("parses");
        let db = &top.sections[0];
        assert_eq!(db.section_type, "zodb_db");
        assert_eq!(db.name.as_deref(), Some("main"));
        assert_eq!(pairs(db), [("mount-point", "/")]);
        assert_eq!(pairs(&db.sections[0]), [("path", "/x")]);
    }

    #[test]
    fn values_keep_case() {
        let top = parse_text("path /Var/Data.FS\n").expect("parses");
        assert_eq!(pairs(&top), [("path", "/Var/Data.FS")]);
    }

    #[test]
    fn define_and_substitute() {
        let top = parse_text(
            "%define INSTANCEHOME /srv/inst\n%define CLIENTHOME $INSTANCEHOME/var\na $clienthome/Data.fs\nb ${ClientHome}x\nc 100$$\nd $(HOME_DIR)/x\n%define EMPTY\ne [$EMPTY]\n",
        )
        .expect("parses");
        assert_eq!(
            pairs(&top),
            [
                ("a", "/srv/inst/var/Data.fs"),
                ("b", "/srv/inst/varx"),
                ("c", "100$"),
                ("d", "/home/zope/x"),
                ("e", "[]"),
            ]
        );
    }

    #[test]
    fn substitution_not_in_keys_or_section_names() {
        let top = parse_text("%define x y\n$x v\n<s $x>\n</s>\n").expect("parses");
        assert_eq!(pairs(&top), [("$x", "v")]);
        assert_eq!(top.sections[0].name.as_deref(), Some("$x"));
    }

    #[test]
    fn undefined_name_is_an_error_with_line() {
        assert_eq!(
            err("%define A 1\n\npath $CLIENTHOME/Data.fs\n"),
            "/etc/z.conf:3: no replacement for 'CLIENTHOME'"
        );
    }

    #[test]
    fn undefined_environment_variable() {
        assert_eq!(
            err("a $(NOPE)\n"),
            "/etc/z.conf:1: no replacement for 'NOPE'"
        );
    }

    #[test]
    fn bad_dollar_forms() {
        assert_eq!(
            err("a b$\n"),
            "/etc/z.conf:1: illegal lone '$' at end of source"
        );
        assert_eq!(
            err("a $1\n"),
            "/etc/z.conf:1: '$' not followed by '$' or name"
        );
        assert_eq!(err("a ${1}\n"), "/etc/z.conf:1: '${' not followed by name");
        assert_eq!(
            err("%define ab 1\na ${ab\n"),
            "/etc/z.conf:2: '${ab' not followed by '}'"
        );
        assert_eq!(err("a $(X\n"), "/etc/z.conf:1: '$(X' not followed by ')'");
    }

    #[test]
    fn redefine() {
        assert!(parse_text("%define a 1\n%define A 1\n").is_ok());
        assert_eq!(
            err("%define a 1\n%define a 2\n"),
            "/etc/z.conf:2: cannot redefine 'a'"
        );
        // ZConfig compares the new text before substitution.
        assert_eq!(
            err("%define b x\n%define a $b\n%define a $b\n"),
            "/etc/z.conf:3: cannot redefine 'a'"
        );
    }

    #[test]
    fn doubling_defines_stop() {
        let mut text = String::from("%define a xxxxxxxxxxxxxxxx\n%define a0 $a$a\n");
        for i in 1..20 {
            text.push_str(&format!("%define a{i} $a{}$a{}\n", i - 1, i - 1));
        }
        let e = parse_bytes(Path::new("/x.conf"), text.as_bytes(), &fake(&[])).expect_err("fails");
        // 16 bytes doubled 12 times (a11, line 13) is 64 KiB: the 13th
        // doubling is refused.
        assert_eq!(
            e.to_string(),
            format!("/x.conf:14: value longer than {MAX_VALUE_LEN} bytes after substitution")
        );
    }

    #[test]
    fn total_size_is_limited() {
        let mut text = String::from("%define a xxxxxxxxxxxxxxxx\n%define a0 $a$a\n");
        for i in 1..12 {
            text.push_str(&format!("%define a{i} $a{}$a{}\n", i - 1, i - 1));
        }
        text.push_str(&"k $a11\n".repeat(300));
        let e = parse_bytes(Path::new("/x.conf"), text.as_bytes(), &fake(&[])).expect_err("fails");
        // The defines come to 128 KiB; 255 values of 64 KiB more pass 16 MiB.
        assert_eq!(
            e.to_string(),
            format!(
                "/x.conf:268: values longer than {MAX_TOTAL_LEN} bytes in all after substitution"
            )
        );
    }

    #[test]
    fn define_needs_a_legal_name() {
        assert_eq!(
            err("%define a-b 1\n"),
            "/etc/z.conf:1: not a substitution legal name: 'a-b'"
        );
    }

    #[test]
    fn directives() {
        assert_eq!(
            err("%define\n"),
            "/etc/z.conf:1: missing argument to %define directive"
        );
        assert_eq!(
            err("%DEFINE a 1\n"),
            "/etc/z.conf:1: unknown directive: 'DEFINE'"
        );
        assert_eq!(
            err("% define a 1\n"),
            "/etc/z.conf:1: missing or unrecognized directive"
        );
        assert!(parse_text("%import relstorage\n").is_ok());
        assert_eq!(
            err("%import $pkg\n"),
            "/etc/z.conf:1: no replacement for 'pkg'"
        );
    }

    #[test]
    fn section_errors() {
        assert_eq!(err("<a\n"), "/etc/z.conf:1: malformed section start");
        assert_eq!(err("<a>\n</a\n"), "/etc/z.conf:2: malformed section end");
        assert_eq!(err("<a b c>\n"), "/etc/z.conf:1: malformed section header");
        assert_eq!(err("<>\n"), "/etc/z.conf:1: malformed section header");
        assert_eq!(err("</a>\n"), "/etc/z.conf:1: unexpected section end");
        assert_eq!(
            err("<a x>\n<b>\n</a>\n"),
            "/etc/z.conf:3: unbalanced section end: <b> (line 2) is closed by </a>"
        );
    }

    #[test]
    fn unclosed_section_names_its_line() {
        assert_eq!(
            err("# zope\n<zodb_db main>\n  <filestorage>\n  </filestorage>\n"),
            "/etc/z.conf:2: unclosed section <zodb_db main>: no </zodb_db> before the end of the file"
        );
    }

    #[test]
    fn nesting_limit() {
        let deep: String = "<a>\n".repeat(MAX_SECTION_DEPTH + 1);
        let text: &'static str = Box::leak(deep.into_boxed_str());
        assert_eq!(
            err(text),
            format!(
                "/etc/z.conf:{}: sections nested more than {MAX_SECTION_DEPTH} deep",
                MAX_SECTION_DEPTH + 1
            )
        );
    }

    #[test]
    fn include_relative_shares_defines_and_fills_the_section() {
        let loader = fake(&[
            ("/etc/zope.conf", "%define VAR /srv/var\n<zodb_db main>\n%include ../inc/db.conf\n</zodb_db>\nafter $FROMINC\n"),
            ("/inc/db.conf", "<filestorage>\n  path $VAR/Data.fs\n</filestorage>\n%define FROMINC yes\n"),
        ]);
        let top = parse(Path::new("/etc/zope.conf"), &loader).expect("parses");
        let fs = &top.sections[0].sections[0];
        assert_eq!(pairs(fs), [("path", "/srv/var/Data.fs")]);
        assert_eq!(fs.values[0].at.file, Path::new("/inc/db.conf"));
        assert_eq!(fs.values[0].at.line, 2);
        assert_eq!(pairs(&top), [("after", "yes")]);
    }

    #[test]
    fn include_of_include_and_file_url() {
        let loader = fake(&[
            ("/a/top.conf", "%include file:///a/b/one.conf\n"),
            ("/a/b/one.conf", "%include two.conf\n"),
            ("/a/b/two.conf", "k v\n"),
        ]);
        let top = parse(Path::new("/a/top.conf"), &loader).expect("parses");
        assert_eq!(pairs(&top), [("k", "v")]);
    }

    #[test]
    fn include_must_close_its_sections() {
        let loader = fake(&[
            ("/a/top.conf", "<s>\n%include inc.conf\n</s>\n"),
            ("/a/inc.conf", "</s>\n"),
        ]);
        assert_eq!(
            parse(Path::new("/a/top.conf"), &loader)
                .expect_err("fails")
                .to_string(),
            "/a/inc.conf:1: unexpected section end"
        );
    }

    #[test]
    fn include_missing_file() {
        let loader = fake(&[("/a/top.conf", "\n%include nope.conf\n")]);
        assert_eq!(
            parse(Path::new("/a/top.conf"), &loader)
                .expect_err("fails")
                .to_string(),
            "/a/top.conf:2: %include: [Errno 2] No such file or directory: '/a/nope.conf'"
        );
    }

    #[test]
    fn include_cycle_stops() {
        let loader = fake(&[("/a/top.conf", "%include top.conf\n")]);
        assert_eq!(
            parse(Path::new("/a/top.conf"), &loader)
                .expect_err("fails")
                .to_string(),
            format!("/a/top.conf:1: %include nested more than {MAX_INCLUDE_DEPTH} files deep (does a file include itself?)")
        );
    }

    #[test]
    fn include_total_is_limited() {
        // Each file includes the next one twice: 2^10 reads without a limit.
        let loader = fake(&[
            ("/a/0.conf", "%include 1.conf\n%include 1.conf\n"),
            ("/a/1.conf", "%include 2.conf\n%include 2.conf\n"),
            ("/a/2.conf", "%include 3.conf\n%include 3.conf\n"),
            ("/a/3.conf", "%include 4.conf\n%include 4.conf\n"),
            ("/a/4.conf", "%include 5.conf\n%include 5.conf\n"),
            ("/a/5.conf", "%include 6.conf\n%include 6.conf\n"),
            ("/a/6.conf", "%include 7.conf\n%include 7.conf\n"),
            ("/a/7.conf", "%include 8.conf\n%include 8.conf\n"),
            ("/a/8.conf", "%include 9.conf\n%include 9.conf\n"),
            ("/a/9.conf", "%include 10.conf\n%include 10.conf\n"),
            ("/a/10.conf", "k v\n"),
        ]);
        let e = parse(Path::new("/a/0.conf"), &loader).expect_err("fails");
        assert_eq!(
            e.to_string(),
            format!("/a/9.conf:2: more than {MAX_INCLUDES} %include directives in all")
        );
    }

    #[test]
    fn include_url_refused() {
        assert_eq!(
            err("%include http://example.org/x.conf\n"),
            "/etc/z.conf:1: %include of 'http://example.org/x.conf': only local files can be included here"
        );
    }

    #[test]
    fn not_utf8() {
        let loader = Fake {
            files: vec![],
            env: vec![],
        };
        let e = parse_bytes(Path::new("/x.conf"), b"a 1\nb \xff\n", &loader).expect_err("fails");
        assert_eq!(e.to_string(), "/x.conf:2: not UTF-8 text");
    }

    #[test]
    fn unreadable_file() {
        let e = parse(Path::new("/nope/zope.conf"), &fake(&[])).expect_err("fails");
        assert_eq!(
            e.to_string(),
            "cannot read the configuration file: [Errno 2] No such file or directory: '/nope/zope.conf'"
        );
    }

    #[test]
    fn python_whitespace() {
        // U+001F is whitespace to Python's strip() and \s.
        let top = parse_text("\u{1f}k\u{1f}v\u{1f}\n").expect("parses");
        assert_eq!(pairs(&top), [("k", "v")]);
    }
}
