//! A spanned YAML tree built from `saphyr-parser` events, with limits against hostile input.
//!
//! Every node keeps the byte span it came from, so later stages can point at the exact
//! place in the file. Parsing refuses, with a diagnostic, input that would exhaust
//! memory or time: files over [`Limits::max_bytes`], invalid UTF-8 or NUL bytes,
//! nesting deeper than [`Limits::max_depth`], and alias expansion (the "billion laughs"
//! bomb) growing the tree past [`Limits::max_nodes`].

use std::collections::HashMap;
use std::sync::Arc;

use saphyr_parser::{Event, Parser, ScalarStyle, Span as YamlSpan};

use crate::diag::{Diagnostic, SourceFile, Span};

/// Resource limits applied while reading a YAML file.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest file accepted, checked before reading it.
    pub max_bytes: u64,
    /// Deepest nesting of sequences and mappings.
    pub max_depth: usize,
    /// Most nodes in all documents of one file, counting each alias expansion in full.
    pub max_nodes: usize,
    /// Most documents in one file.
    pub max_documents: usize,
}

impl Limits {
    /// Limits for DR plan files: plans are small, hand-written or generated documents.
    pub const PLAN: Limits = Limits { max_bytes: 16 << 20, max_depth: 64, max_nodes: 2_000_000, max_documents: 1 };
    /// Limits for cluster manifest dumps (`kubectl get -o yaml` of whole namespaces).
    pub const MANIFEST: Limits =
        Limits { max_bytes: 256 << 20, max_depth: 128, max_nodes: 20_000_000, max_documents: 100_000 };
}

/// A YAML value with the byte span it was read from.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub span: Span,
    pub value: Value,
}

/// YAML 1.2 core-schema values.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The value under a string key of a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v)
    }

    /// Follows a path of mapping keys.
    pub fn path(&self, keys: &[&str]) -> Option<&Node> {
        keys.iter().try_fold(self, |node, key| node.get(key))
    }

    /// Number of nodes in this subtree (used to budget alias expansion).
    fn size(&self) -> usize {
        match &self.value {
            Value::Seq(items) => 1 + items.iter().map(Node::size).sum::<usize>(),
            Value::Map(pairs) => 1 + pairs.iter().map(|(k, v)| k.size() + v.size()).sum::<usize>(),
            _ => 1,
        }
    }

    /// Builds a tree from JSON (no source: spans are empty), to decode saved data with
    /// the same decoder as plan files.
    pub fn from_json(value: &serde_json::Value) -> Node {
        use serde_json::Value as J;
        let value = match value {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(*b),
            J::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            J::String(s) => Value::Str(s.clone()),
            J::Array(items) => Value::Seq(items.iter().map(Node::from_json).collect()),
            J::Object(map) => Value::Map(
                map.iter()
                    .map(|(k, v)| (Node { span: Span::default(), value: Value::Str(k.clone()) }, Node::from_json(v)))
                    .collect(),
            ),
        };
        Node { span: Span::default(), value }
    }

    /// Converts to JSON (keys become strings), for handing manifests to typed decoders.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map(J::Number).unwrap_or(J::Null),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(pairs) => J::Object(pairs.iter().map(|(k, v)| (k.scalar_text(), v.to_json())).collect()),
        }
    }

    /// Text of a scalar as it would be used as a mapping key.
    pub fn scalar_text(&self) -> String {
        match &self.value {
            Value::Null => "null".into(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Str(s) => s.clone(),
            Value::Seq(_) => "<list>".into(),
            Value::Map(_) => "<mapping>".into(),
        }
    }
}

/// One parsed file: its source and its documents.
#[derive(Debug)]
pub struct YamlFile {
    pub source: Arc<SourceFile>,
    pub documents: Vec<Node>,
}

/// Reads and parses a file, refusing oversized files before reading them.
pub fn read_file(path: &std::path::Path, limits: Limits) -> Result<YamlFile, Diagnostic> {
    let name = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| io_error(&name, &e))?;
    if meta.len() > limits.max_bytes {
        return Err(Diagnostic::error(
            "drplan::input::too_large",
            format!(
                "{name}: file is {} bytes, over the limit of {} bytes; refusing to read it",
                meta.len(),
                limits.max_bytes
            ),
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| io_error(&name, &e))?;
    parse_bytes(&name, bytes, limits)
}

fn io_error(name: &str, e: &std::io::Error) -> Diagnostic {
    Diagnostic::error("drplan::input::io", format!("{name}: cannot read: {e}"))
}

/// Parses bytes already in memory (checks size, encoding and then YAML).
pub fn parse_bytes(name: &str, bytes: Vec<u8>, limits: Limits) -> Result<YamlFile, Diagnostic> {
    if bytes.len() as u64 > limits.max_bytes {
        return Err(Diagnostic::error(
            "drplan::input::too_large",
            format!("{name}: input is {} bytes, over the limit of {} bytes", bytes.len(), limits.max_bytes),
        ));
    }
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            // Located like every other diagnostic: the text up to the bad byte is valid,
            // so offsets in the lossy copy are exact there.
            let source = SourceFile::new(name, String::from_utf8_lossy(e.as_bytes()).into_owned());
            let width = source.text()[at..].chars().next().map_or(0, char::len_utf8);
            return Err(Diagnostic::error(
                "drplan::input::not_text",
                format!("not a UTF-8 text file (invalid byte at offset {at}); is this a binary file?"),
            )
            .in_file(&source)
            .with_label(Span::new(at, at + width), "not UTF-8"));
        }
    };
    // A UTF-8 byte order mark is accepted and dropped before anything counts
    // columns, so positions on the first line are the ones an editor shows.
    let mut text = text;
    if text.starts_with('\u{feff}') {
        text.drain(..'\u{feff}'.len_utf8());
    }
    let source = SourceFile::new(name, text);
    if let Some(at) = source.text().find('\0') {
        return Err(Diagnostic::error("drplan::input::not_text", "file contains a NUL byte; is this a binary file?")
            .in_file(&source)
            .with_label(Span::new(at, at + 1), "NUL byte here"));
    }
    let documents = TreeBuilder::new(&source, limits).build()?;
    Ok(YamlFile { source, documents })
}

/// Parses a string (used by tests and by embedded defaults).
pub fn parse_str(name: &str, text: &str, limits: Limits) -> Result<YamlFile, Diagnostic> {
    parse_bytes(name, text.as_bytes().to_vec(), limits)
}

enum Frame {
    Seq { start: Span, anchor: usize, items: Vec<Node> },
    Map { start: Span, anchor: usize, pairs: Vec<(Node, Node)>, key: Option<Node> },
}

struct TreeBuilder<'s> {
    source: &'s Arc<SourceFile>,
    limits: Limits,
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Node, usize)>,
    nodes: usize,
    documents: Vec<Node>,
}

impl<'s> TreeBuilder<'s> {
    fn new(source: &'s Arc<SourceFile>, limits: Limits) -> Self {
        TreeBuilder { source, limits, stack: Vec::new(), anchors: HashMap::new(), nodes: 0, documents: Vec::new() }
    }

    fn span(&self, span: &YamlSpan) -> Span {
        let start = self.source.offset_of(span.start.line(), span.start.col());
        let end = self.source.offset_of(span.end.line(), span.end.col());
        Span::new(start, end)
    }

    fn error(&self, span: Span, message: impl Into<String>, label: &str) -> Diagnostic {
        Diagnostic::error("drplan::yaml::syntax", message).in_file(self.source).with_label(span, label)
    }

    fn build(mut self) -> Result<Vec<Node>, Diagnostic> {
        let text = self.source.text().to_string();
        for event in Parser::new_from_str(&text) {
            let (event, yspan) = event.map_err(|e| {
                let m = e.marker();
                let at = self.source.offset_of(m.line(), m.col());
                let span = Span::new(at, at + 1);
                if e.info().contains("recursion limit") {
                    // The scanner's own guard against deep flow nesting.
                    return self.too_deep(span);
                }
                self.error(span, format!("YAML syntax error: {}", e.info()), e.info())
            })?;
            let span = self.span(&yspan);
            self.on_event(event, span)?;
        }
        Ok(self.documents)
    }

    fn on_event(&mut self, event: Event<'_>, span: Span) -> Result<(), Diagnostic> {
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let tag = tag.map(|t| t.to_string());
                let value = resolve_scalar(&text, style, tag.as_deref())
                    .map_err(|msg| self.error(span, msg, "unsupported tag"))?;
                let node = Node { span, value };
                self.count(1, span)?;
                self.remember(anchor, &node, 1);
                self.push_node(node)
            }
            Event::SequenceStart(anchor, _) => {
                self.enter(span)?;
                self.stack.push(Frame::Seq { start: span, anchor, items: Vec::new() });
                Ok(())
            }
            Event::MappingStart(anchor, _) => {
                self.enter(span)?;
                self.stack.push(Frame::Map { start: span, anchor, pairs: Vec::new(), key: None });
                Ok(())
            }
            Event::SequenceEnd | Event::MappingEnd => self.close(span),
            Event::Alias(id) => self.alias(id, span),
            Event::DocumentStart(_) => {
                if self.documents.len() >= self.limits.max_documents {
                    let what = if self.limits.max_documents == 1 { "one YAML document" } else { "that many documents" };
                    return Err(self.error(
                        span,
                        format!("expected {what} in this file"),
                        "another document starts here",
                    ));
                }
                Ok(())
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => Ok(()),
        }
    }

    fn enter(&mut self, span: Span) -> Result<(), Diagnostic> {
        self.count(1, span)?;
        if self.stack.len() >= self.limits.max_depth {
            return Err(self.too_deep(span));
        }
        Ok(())
    }

    fn too_deep(&self, span: Span) -> Diagnostic {
        Diagnostic::error(
            "drplan::input::too_deep",
            format!("nesting deeper than {} levels; refusing to read further", self.limits.max_depth),
        )
        .in_file(self.source)
        .with_label(span, "too deep here")
    }

    fn count(&mut self, n: usize, span: Span) -> Result<(), Diagnostic> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > self.limits.max_nodes {
            return Err(Diagnostic::error(
                "drplan::input::too_many_nodes",
                format!(
                    "document expands to more than {} nodes (alias bomb or oversized input); refusing it",
                    self.limits.max_nodes
                ),
            )
            .in_file(self.source)
            .with_label(span, "limit reached here"));
        }
        Ok(())
    }

    fn remember(&mut self, anchor: usize, node: &Node, size: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, (node.clone(), size));
        }
    }

    fn alias(&mut self, id: usize, span: Span) -> Result<(), Diagnostic> {
        let Some((node, size)) = self.anchors.get(&id).cloned() else {
            return Err(self.error(span, "alias refers to an unknown anchor", "unknown anchor"));
        };
        // Budget the whole expansion before cloning: a bomb is refused without allocating it.
        self.count(size, span)?;
        self.push_node(Node { span, value: node.value })
    }

    fn close(&mut self, end: Span) -> Result<(), Diagnostic> {
        let (node, anchor) = match self.stack.pop() {
            Some(Frame::Seq { start, anchor, items }) => (
                Node { span: Span { start: start.start, end: end.end.max(start.end) }, value: Value::Seq(items) },
                anchor,
            ),
            Some(Frame::Map { start, anchor, pairs, .. }) => (
                Node { span: Span { start: start.start, end: end.end.max(start.end) }, value: Value::Map(pairs) },
                anchor,
            ),
            None => return Err(self.error(end, "unbalanced collection end", "here")),
        };
        if anchor != 0 {
            let size = node.size();
            self.remember(anchor, &node, size);
        }
        self.push_node(node)
    }

    fn push_node(&mut self, node: Node) -> Result<(), Diagnostic> {
        match self.stack.last_mut() {
            None => self.documents.push(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { pairs, key, .. }) => match key.take() {
                None => {
                    if !matches!(
                        node.value,
                        Value::Str(_) | Value::Int(_) | Value::Bool(_) | Value::Null | Value::Float(_)
                    ) {
                        return Err(self.error(node.span, "mapping keys must be scalars", "complex key"));
                    }
                    *key = Some(node);
                }
                Some(k) => {
                    if let Some((first, _)) = pairs.iter().find(|(existing, _)| existing.value == k.value) {
                        let first = first.span;
                        return Err(self
                            .error(k.span, format!("duplicate key `{}`", k.scalar_text()), "duplicate key")
                            .with_label(first, "first defined here"));
                    }
                    pairs.push((k, node));
                }
            },
        }
        Ok(())
    }
}

/// Resolves a scalar by the YAML 1.2 core schema (quoted scalars are always strings).
fn resolve_scalar(text: &str, style: ScalarStyle, tag: Option<&str>) -> Result<Value, String> {
    if let Some(tag) = tag {
        return match tag.trim_start_matches("tag:yaml.org,2002:").trim_start_matches("!!") {
            "str" => Ok(Value::Str(text.to_string())),
            "int" => text.parse().map(Value::Int).map_err(|_| format!("`{text}` is not an integer")),
            "float" => text.parse().map(Value::Float).map_err(|_| format!("`{text}` is not a number")),
            "bool" => resolve_plain(text)
                .and_then(|v| matches!(v, Value::Bool(_)).then_some(v))
                .ok_or_else(|| format!("`{text}` is not a boolean")),
            "null" => Ok(Value::Null),
            other => Err(format!("YAML tag `{other}` is not supported")),
        };
    }
    if style != ScalarStyle::Plain {
        return Ok(Value::Str(text.to_string()));
    }
    Ok(resolve_plain(text).unwrap_or_else(|| Value::Str(text.to_string())))
}

fn resolve_plain(text: &str) -> Option<Value> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Some(Value::Null),
        "true" | "True" | "TRUE" => return Some(Value::Bool(true)),
        "false" | "False" | "FALSE" => return Some(Value::Bool(false)),
        ".inf" | ".Inf" | ".INF" | "+.inf" => return Some(Value::Float(f64::INFINITY)),
        "-.inf" | "-.Inf" | "-.INF" => return Some(Value::Float(f64::NEG_INFINITY)),
        ".nan" | ".NaN" | ".NAN" => return Some(Value::Float(f64::NAN)),
        _ => {}
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok().map(Value::Int);
    }
    if let Some(hex) = text.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).ok().map(Value::Int);
    }
    if let Some(oct) = text.strip_prefix("0o") {
        return i64::from_str_radix(oct, 8).ok().map(Value::Int);
    }
    let looks_float = digits.bytes().next().is_some_and(|b| b.is_ascii_digit() || b == b'.')
        && digits.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'));
    if looks_float {
        return text.parse().ok().map(Value::Float);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<YamlFile, Diagnostic> {
        parse_str("t.yaml", text, Limits::PLAN)
    }

    #[test]
    fn spans_point_at_values() {
        let file = parse("a: 1\nb:\n  c: hello\n").unwrap();
        let doc = &file.documents[0];
        let c = doc.path(&["b", "c"]).unwrap();
        assert_eq!(c.value, Value::Str("hello".into()));
        assert_eq!(&file.source.text()[c.span.start as usize..c.span.end as usize], "hello");
        assert_eq!(file.source.position_of(c.span.start as usize), (3, 6));
    }

    #[test]
    fn core_schema_scalars() {
        let file = parse("[1, -2, 1.5, true, null, '3', abc, 0x10]").unwrap();
        let Value::Seq(items) = &file.documents[0].value else { panic!("not a seq") };
        let values: Vec<_> = items.iter().map(|n| n.value.clone()).collect();
        assert_eq!(
            values,
            vec![
                Value::Int(1),
                Value::Int(-2),
                Value::Float(1.5),
                Value::Bool(true),
                Value::Null,
                Value::Str("3".into()),
                Value::Str("abc".into()),
                Value::Int(16)
            ]
        );
    }

    #[test]
    fn non_ascii_spans_are_byte_offsets() {
        let file = parse("name: \"Zürich\"\nnext: x\n").unwrap();
        let next = file.documents[0].get("next").unwrap();
        assert_eq!(&file.source.text()[next.span.start as usize..next.span.end as usize], "x");
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let err = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(err.line(), Some(2));
        assert!(err.message.contains("duplicate key"));
    }

    #[test]
    fn alias_bomb_is_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let err = parse(&text).unwrap_err();
        assert_eq!(err.code, "drplan::input::too_many_nodes");
    }

    #[test]
    fn deep_nesting_is_refused() {
        for depth in [65, 100_000] {
            let text = "[".repeat(depth);
            let err = parse(&text).unwrap_err();
            assert_eq!(err.code, "drplan::input::too_deep", "{}", err.message);
        }
        let block: String = (0..80).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
        assert_eq!(parse(&block).unwrap_err().code, "drplan::input::too_deep");
    }

    #[test]
    fn binary_is_refused() {
        let err = parse_bytes("b.bin", vec![0xff, 0xfe, 0x00, 0x12], Limits::PLAN).unwrap_err();
        assert_eq!(err.code, "drplan::input::not_text");
    }
}
