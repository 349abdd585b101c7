//! Turns a toml or serde error into one clean line that names the file position and the key.
//!
//! This module owns three small jobs shared by the daemon config and domain definitions:
//! mapping a byte span to a 1-based line and column, finding which key a span belongs to (by
//! re-reading the document with toml's spanned `DeTable`), and rewording serde's messages
//! (`invalid type: string "x", expected u16`) into what an operator can act on (`key
//! `tls_port` in [daemon]: expected an integer from 0 to 65535, found string "x"`). It knows no
//! schema and touches no files; callers prefix the result with their file name.

use std::ops::Range;

use toml::de::{DeTable, DeValue};

/// One error turned into a position and a one-line message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Located {
    /// 1-based line and column (in characters), when the error carried a span.
    pub position: Option<(usize, usize)>,
    /// Dotted path of the key the error is about (`daemon.tls_port`), when one was found.
    pub key: Option<String>,
    /// The reworded, single-line message.
    pub message: String,
}

/// Syntax errors described at most: each description re-reads the whole text, so a text
/// made of errors (a 1 MiB definition of `x = ` lines) would cost hours, not milliseconds.
pub(crate) const MAX_SYNTAX_ERRORS: usize = 20;

/// Parses `text` into `T`. Syntax errors are reported up to [`MAX_SYNTAX_ERRORS`] (toml
/// recovers and goes on), then counted; schema errors (unknown key, wrong type) stop at
/// the first, as serde does.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, Vec<Located>> {
    let (_, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        let mut described: Vec<Located> = syntax
            .iter()
            .take(MAX_SYNTAX_ERRORS)
            .map(|e| describe(text, e))
            .collect();
        if let Some(more) = syntax
            .len()
            .checked_sub(MAX_SYNTAX_ERRORS)
            .filter(|n| *n > 0)
        {
            described.push(Located {
                position: None,
                key: None,
                message: format!("and {more} more syntax errors; fix the ones above first"),
            });
        }
        return Err(described);
    }
    toml::from_str(text).map_err(|e| vec![describe(text, &e)])
}

/// Describes a toml deserialization error against the text it came from.
pub(crate) fn describe(text: &str, err: &toml::de::Error) -> Located {
    let raw = one_line(err.message());
    let Some(span) = err.span() else {
        return Located {
            position: None,
            key: None,
            message: raw,
        };
    };
    let path = key_path_at(text, span.start);
    let message = reword(&raw, &path);
    Located {
        position: Some(line_col(text, span.start)),
        key: (!path.is_empty()).then(|| path.join(".")),
        message,
    }
}

/// 1-based line and column (counted in characters) of a byte offset in `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The first position of the key at dotted `path` (`graphics.port`), if the text has it.
pub(crate) fn key_position(text: &str, path: &str) -> Option<(usize, usize)> {
    let (doc, _) = DeTable::parse_recoverable(text);
    let mut table = doc.get_ref();
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let (key, value) = table.iter().find(|(k, _)| k.get_ref() == part)?;
        if parts.peek().is_none() {
            return Some(line_col(text, key.span().start));
        }
        table = value.get_ref().as_table()?;
    }
    None
}

/// The key path (tables, then the key) whose key or value covers byte `offset`.
///
/// Every table is searched, not only those whose span covers the offset: toml gives a
/// `[header]` table the span of its header, not of its body. The narrowest match wins.
fn key_path_at(text: &str, offset: usize) -> Vec<String> {
    let (doc, _) = DeTable::parse_recoverable(text);
    let mut best: Option<(usize, Vec<String>)> = None;
    let mut path = Vec::new();
    search_table(doc.get_ref(), offset, &mut path, &mut best);
    best.map(|(_, p)| p).unwrap_or_default()
}

fn covers(span: &Range<usize>, offset: usize) -> bool {
    span.contains(&offset) || (span.is_empty() && span.start == offset)
}

fn consider(best: &mut Option<(usize, Vec<String>)>, span: &Range<usize>, path: &[String]) {
    let len = span.len();
    if best.as_ref().is_none_or(|(l, _)| len <= *l) {
        *best = Some((len, path.to_vec()));
    }
}

fn search_table(
    table: &DeTable<'_>,
    offset: usize,
    path: &mut Vec<String>,
    best: &mut Option<(usize, Vec<String>)>,
) {
    for (key, value) in table.iter() {
        path.push(key.get_ref().to_string());
        if covers(&key.span(), offset) {
            consider(best, &key.span(), path);
        }
        search_value(value.get_ref(), &value.span(), offset, path, best);
        path.pop();
    }
}

fn search_value(
    value: &DeValue<'_>,
    span: &Range<usize>,
    offset: usize,
    path: &mut Vec<String>,
    best: &mut Option<(usize, Vec<String>)>,
) {
    match value {
        DeValue::Table(inner) => {
            // a table's own span (its `[header]`, or `{ ... }`) is where serde reports
            // a missing key
            if covers(span, offset) {
                consider(best, span, path);
            }
            search_table(inner, offset, path, best);
        }
        DeValue::Array(items) => {
            for item in items.iter() {
                search_value(item.get_ref(), &item.span(), offset, path, best);
            }
        }
        _ if covers(span, offset) => consider(best, span, path),
        _ => {}
    }
}

/// Keeps the first line of a message; toml's own Display adds ASCII art on later lines.
fn one_line(message: &str) -> String {
    message
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// `key `tls_port` in [daemon]`, or `key `name`` at the top level.
fn key_phrase(path: &[String]) -> String {
    match path.split_last() {
        Some((leaf, [])) => format!("key `{leaf}`"),
        Some((leaf, tables)) => format!("key `{leaf}` in [{}]", tables.join(".")),
        None => "the document".to_string(),
    }
}

fn table_phrase(tables: &[String]) -> String {
    if tables.is_empty() {
        "at the top level".to_string()
    } else {
        format!("in [{}]", tables.join("."))
    }
}

fn reword(raw: &str, path: &[String]) -> String {
    if let Some(rest) = raw.strip_prefix("unknown field `") {
        let name = rest.split('`').next().unwrap_or_default();
        let tables = path.split_last().map_or(&[][..], |(_, t)| t);
        let mut msg = format!("unknown key `{name}` {}", table_phrase(tables));
        if let Some(near) = nearest(name, &backticked(raw)) {
            msg.push_str(&format!("; did you mean `{near}`?"));
        }
        return msg;
    }
    if let Some(rest) = raw.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or_default();
        return format!("missing key `{name}` {}", table_phrase(path));
    }
    if raw == "duplicate key" {
        return format!("duplicate {}", key_phrase(path));
    }
    let body = if let Some(rest) = raw.strip_prefix("unknown variant ") {
        format!("unknown value {rest}")
    } else if let Some((found, expected)) = raw
        .strip_prefix("invalid type: ")
        .or_else(|| raw.strip_prefix("invalid value: "))
        .and_then(|rest| rest.rsplit_once(", expected "))
    {
        format!("expected {}, found {found}", expected_phrase(expected))
    } else {
        raw.to_string()
    };
    if path.is_empty() {
        body
    } else {
        format!("{}: {body}", key_phrase(path))
    }
}

/// serde names primitive types (`u16`); say what an operator may write instead.
fn expected_phrase(expected: &str) -> String {
    let range = |min: i128, max: i128| format!("an integer from {min} to {max}");
    match expected {
        "u8" => range(0, u8::MAX.into()),
        "u16" => range(0, u16::MAX.into()),
        "u32" => range(0, u32::MAX.into()),
        "u64" => range(0, u64::MAX.into()),
        "i8" => range(i8::MIN.into(), i8::MAX.into()),
        "i16" => range(i16::MIN.into(), i16::MAX.into()),
        "i32" => range(i32::MIN.into(), i32::MAX.into()),
        "i64" => range(i64::MIN.into(), i64::MAX.into()),
        "a borrowed string" | "a string" => "a string".to_string(),
        "a sequence" => "an array".to_string(),
        "a map" => "a table".to_string(),
        e if e.starts_with("struct ") => "a table".to_string(),
        e => e.to_string(),
    }
}

/// Names quoted in backticks in `text` (serde's list of expected fields).
fn backticked(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// The candidate closest to `name` when it is plausibly a typo of it.
fn nearest<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .skip(1) // the first backticked word is the unknown name itself
        .map(|c| (edit_distance(name, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_of_syntax_errors_gets_the_first_few_and_a_count() {
        let text = format!("name = \"a\"\n{}", "x = \n".repeat(2_000));
        let errors = parse::<toml::Table>(&text).expect_err("syntax errors");
        assert_eq!(errors.len(), MAX_SYNTAX_ERRORS + 1);
        assert_eq!(errors[0].position, Some((2, 5)));
        let last = &errors[MAX_SYNTAX_ERRORS].message;
        assert!(
            last.starts_with("and ") && last.contains("more syntax errors"),
            "{last}"
        );
    }

    #[test]
    fn line_col_counts_characters_from_one() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        // byte 10 is the '=' of "bé = 2": 'é' is two bytes but one column
        assert_eq!(line_col(text, 10), (2, 4));
        assert_eq!(line_col(text, 1000), (3, 1));
    }

    #[test]
    fn finds_keys_under_headers_and_in_arrays() {
        let text = "[daemon]\ntls_port = 5\nlist = [\"a\", 1]\n[vnc]\nx = 1\n";
        let at = |needle: &str| key_path_at(text, text.find(needle).expect("needle")).join(".");
        assert_eq!(at("tls_port"), "daemon.tls_port");
        assert_eq!(at("5"), "daemon.tls_port");
        assert_eq!(at("1]"), "daemon.list");
        assert_eq!(at("x ="), "vnc.x");
        assert_eq!(key_position(text, "vnc.x"), Some((5, 1)));
        assert_eq!(key_position(text, "vnc.y"), None);
    }

    #[test]
    fn rewords_serde_messages() {
        let path = ["daemon".to_string(), "tls_port".to_string()];
        assert_eq!(
            reword("invalid type: string \"x\", expected u16", &path),
            "key `tls_port` in [daemon]: expected an integer from 0 to 65535, found string \"x\""
        );
        assert_eq!(
            reword(
                "unknown field `vnc_listn`, expected `vnc_listen` or `vnc_tls`",
                &path
            ),
            "unknown key `vnc_listn` in [daemon]; did you mean `vnc_listen`?"
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
