//! A small YAML writer for the rendered files: an ordered tree (keys stay in the order the renderer
//! wrote them), comments, anchors and aliases (the plugin configuration is written once and referred
//! to), literal text blocks, and flow style for short entries. Only what the renderer needs; the output
//! is read back by Envoy and by the tests' YAML parser.

use std::fmt::Write;

/// A YAML node.
#[derive(Debug, Clone, PartialEq)]
pub enum Y {
    /// Entries in order; an entry whose key is `#` is a comment line (its value a `Str`).
    Map(Vec<(String, Y)>),
    List(Vec<Y>),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Null,
    /// Multi-line text, written as a literal block (`|`).
    Text(String),
    /// `&name` before the value.
    Anchor(String, Box<Y>),
    /// `*name`.
    Alias(String),
    /// The value written on one line (`{a: 1, b: [x, y]}`).
    Flow(Box<Y>),
    /// YAML text written as it is under its key, indented (a fixed block kept readable as YAML).
    Raw(&'static str),
}

/// A map from `(key, value)` pairs.
pub fn map<const N: usize>(entries: [(&str, Y); N]) -> Y {
    Y::Map(entries.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

pub fn s(v: impl Into<String>) -> Y {
    Y::Str(v.into())
}

pub fn int(v: impl Into<i64>) -> Y {
    Y::Int(v.into())
}

pub fn list(items: impl IntoIterator<Item = Y>) -> Y {
    Y::List(items.into_iter().collect())
}

pub fn flow(v: Y) -> Y {
    Y::Flow(Box::new(v))
}

/// A comment entry for a map.
pub fn comment(text: &str) -> (String, Y) {
    ("#".to_string(), Y::Str(text.to_string()))
}

impl Y {
    /// Adds an entry to a map (no-op on anything else).
    pub fn push(&mut self, key: &str, v: Y) {
        if let Y::Map(entries) = self {
            entries.push((key.to_string(), v));
        }
    }

    /// Adds a comment line to a map.
    pub fn note(&mut self, text: &str) {
        if let Y::Map(entries) = self {
            entries.push(comment(text));
        }
    }

    /// The value under `key` of a map.
    pub fn get(&self, key: &str) -> Option<&Y> {
        match self {
            Y::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            Y::Anchor(_, v) | Y::Flow(v) => v.get(key),
            _ => None,
        }
    }

    fn is_block(&self) -> bool {
        match self {
            Y::Map(e) => e.iter().any(|(k, _)| k != "#"),
            Y::List(items) => !items.is_empty(),
            Y::Text(_) | Y::Raw(_) => true,
            Y::Anchor(_, v) => v.is_block(),
            _ => false,
        }
    }
}

/// The document as YAML text (ends with a newline).
pub fn to_string(doc: &Y) -> String {
    let mut out = String::new();
    match doc {
        Y::Map(_) | Y::List(_) => block(&mut out, doc, 0),
        other => {
            inline(&mut out, other);
            out.push('\n');
        }
    }
    out
}

/// Writes a block map or list at `indent`.
fn block(out: &mut String, v: &Y, indent: usize) {
    let pad = " ".repeat(indent);
    match v {
        Y::Map(entries) => {
            for (k, v) in entries {
                if k == "#" {
                    comment_lines(out, &pad, v);
                    continue;
                }
                out.push_str(&pad);
                key(out, k);
                out.push(':');
                value_after_key(out, v, indent);
            }
        }
        Y::List(items) => {
            for item in items {
                list_item(out, item, indent);
            }
        }
        _ => {}
    }
}

fn comment_lines(out: &mut String, pad: &str, v: &Y) {
    if let Y::Str(text) = v {
        for line in text.lines() {
            let _ = writeln!(out, "{pad}# {line}").map(|_| ());
        }
    }
}

/// After `key:` (or `- `): the value, on this line when it is a scalar, below it when a block.
fn value_after_key(out: &mut String, v: &Y, indent: usize) {
    match v {
        Y::Anchor(name, inner) if inner.is_block() => {
            let _ = write!(out, " &{name}");
            value_after_key(out, inner, indent);
        }
        Y::Map(_) if v.is_block() => {
            out.push('\n');
            block(out, v, indent + 2);
        }
        Y::List(_) if v.is_block() => {
            out.push('\n');
            block(out, v, indent);
        }
        Y::Raw(text) => {
            out.push('\n');
            let pad = " ".repeat(indent + 2);
            for line in text.lines() {
                if line.trim().is_empty() {
                    out.push('\n');
                } else {
                    let _ = writeln!(out, "{pad}{line}");
                }
            }
        }
        Y::Text(t) => {
            out.push_str(" |\n");
            let pad = " ".repeat(indent + 2);
            for line in t.lines() {
                if line.is_empty() {
                    out.push('\n');
                } else {
                    let _ = writeln!(out, "{pad}{line}");
                }
            }
        }
        other => {
            out.push(' ');
            inline(out, other);
            out.push('\n');
        }
    }
}

fn list_item(out: &mut String, item: &Y, indent: usize) {
    let pad = " ".repeat(indent);
    match item {
        Y::Map(entries) if item.is_block() => {
            // Comments that open the entry go above its dash.
            let lead = entries.iter().take_while(|(k, _)| k == "#").count();
            for (_, c) in &entries[..lead] {
                comment_lines(out, &pad, c);
            }
            let mut first = true;
            for (k, v) in &entries[lead..] {
                if k == "#" {
                    comment_lines(out, &" ".repeat(indent + 2), v);
                    continue;
                }
                if first {
                    out.push_str(&pad);
                    out.push_str("- ");
                    first = false;
                } else {
                    out.push_str(&pad);
                    out.push_str("  ");
                }
                key(out, k);
                out.push(':');
                value_after_key(out, v, indent + 2);
            }
        }
        Y::List(_) if item.is_block() => {
            out.push_str(&pad);
            out.push_str("-\n");
            block(out, item, indent + 2);
        }
        other => {
            out.push_str(&pad);
            out.push('-');
            value_after_key(out, other, indent);
        }
    }
}

/// A value on one line.
fn inline(out: &mut String, v: &Y) {
    match v {
        Y::Map(entries) => {
            let shown: Vec<_> = entries.iter().filter(|(k, _)| k != "#").collect();
            if shown.is_empty() {
                out.push_str("{}");
                return;
            }
            out.push_str("{ ");
            for (i, (k, v)) in shown.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                key(out, k);
                out.push_str(": ");
                inline(out, v);
            }
            out.push_str(" }");
        }
        Y::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                inline(out, item);
            }
            out.push(']');
        }
        Y::Str(s) => scalar(out, s),
        Y::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Y::Float(f) => {
            let _ = write!(out, "{}", serde_json::Number::from_f64(*f).map_or("0".to_string(), |n| n.to_string()));
        }
        Y::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Y::Null => out.push_str("null"),
        Y::Text(t) => scalar(out, t),
        Y::Anchor(name, inner) => {
            let _ = write!(out, "&{name} ");
            inline(out, inner);
        }
        Y::Alias(name) => {
            let _ = write!(out, "*{name}");
        }
        Y::Flow(inner) => inline(out, inner),
        Y::Raw(text) => out.push_str(text.trim()),
    }
}

fn key(out: &mut String, k: &str) {
    scalar(out, k);
}

/// A string, plain when YAML reads it back as the same string, else double-quoted (JSON's escapes are
/// valid YAML).
fn scalar(out: &mut String, s: &str) {
    if is_plain(s) {
        out.push_str(s);
    } else {
        out.push_str(&serde_json::to_string(s).unwrap_or_default());
    }
}

fn is_plain(s: &str) -> bool {
    let Some(first) = s.bytes().next() else { return false };
    let reserved = ["true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"];
    if reserved.iter().any(|r| s.eq_ignore_ascii_case(r)) {
        return false;
    }
    if first.is_ascii_digit() {
        // YAML reads most of these as numbers (ints with `_`, hex, floats, sexagesimals); a dotted quad
        // such as an IPv4 address stays a string.
        return s.bytes().all(|b| b.is_ascii_digit() || b == b'.') && s.matches('.').count() >= 2;
    }
    (first.is_ascii_alphabetic() || first == b'/' || first == b'_')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-./@".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_blocks_flows_comments_anchors_and_quotes() {
        let doc = Y::Map(vec![
            comment("top comment"),
            ("name".into(), s("switchyard")),
            ("port".into(), int(10000)),
            ("cfg".into(), Y::Anchor("c".into(), Box::new(map([("a", s("x")), ("b", Y::Bool(true))])))),
            ("again".into(), Y::Alias("c".into())),
            ("items".into(), list([map([("k", s("v")), ("n", int(1))]), s("plain")])),
            ("flowed".into(), flow(map([("address", s("127.0.0.1")), ("port_value", int(80))]))),
            ("text".into(), Y::Text("{\n  \"a\": 1\n}\n".into())),
            ("tricky".into(), list([s("yes"), s("1.5"), s("%START_TIME%"), s("a: b"), s(""), s("10:00")])),
            ("empty".into(), Y::Map(vec![])),
        ]);
        let text = to_string(&doc);
        let want = "# top comment
name: switchyard
port: 10000
cfg: &c
  a: x
  b: true
again: *c
items:
- k: v
  \"n\": 1
- plain
flowed: { address: 127.0.0.1, port_value: 80 }
text: |
  {
    \"a\": 1
  }
tricky:
- \"yes\"
- \"1.5\"
- \"%START_TIME%\"
- \"a: b\"
- \"\"
- \"10:00\"
empty: {}
";
        assert_eq!(text, want);
    }
}
