//! A serde `Deserializer` over the spanned YAML tree.
//!
//! Decoding typed values from [`Node`]s (instead of from text) lets every error carry
//! the span of the node it is about, lets one file report many errors (each step is
//! decoded on its own), and lets [`Spanned`] fields remember where they came from.

use std::fmt;

use schemars::JsonSchema;
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::yaml::{Node, Value};
use crate::diag::Span;

/// A decoding error, located at the node it is about.
#[derive(Debug, Clone)]
pub struct DeError {
    pub message: String,
    pub span: Option<Span>,
    pub kind: DeErrorKind,
}

/// What went wrong, so callers can pick a diagnostic code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeErrorKind {
    UnknownField,
    MissingField,
    WrongType,
    InvalidValue,
    Other,
}

impl DeError {
    fn at(mut self, span: Span) -> DeError {
        self.span.get_or_insert(span);
        self
    }

    fn new(kind: DeErrorKind, message: String) -> DeError {
        DeError { message, span: None, kind }
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError::new(DeErrorKind::InvalidValue, msg.to_string())
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        let expected = friendly_expected(&exp.to_string());
        DeError::new(DeErrorKind::WrongType, format!("wrong type: expected {expected}, found {unexp}"))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let hint = closest(field, expected).map(|c| format!(" (did you mean `{c}`?)")).unwrap_or_default();
        DeError::new(
            DeErrorKind::UnknownField,
            format!("unknown field `{field}`{hint}; expected one of: {}", expected.join(", ")),
        )
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let hint = closest(variant, expected).map(|c| format!(" (did you mean `{c}`?)")).unwrap_or_default();
        DeError::new(
            DeErrorKind::UnknownField,
            format!("unknown variant `{variant}`{hint}; expected one of: {}", expected.join(", ")),
        )
    }

    fn missing_field(field: &'static str) -> Self {
        DeError::new(DeErrorKind::MissingField, format!("missing required field `{field}`"))
    }
}

/// serde names primitive types the Rust way (`u32`); plans are written by people.
fn friendly_expected(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" => "a non-negative integer".into(),
        "i8" | "i16" | "i32" | "i64" => "an integer".into(),
        "f32" | "f64" => "a number".into(),
        "a boolean" | "bool" => "true or false".into(),
        other => other.to_string(),
    }
}

/// The closest candidate by edit distance, for "did you mean" hints.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min()
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Decodes a typed value from a node.
pub fn from_node<'de, T: Deserialize<'de>>(node: &'de Node) -> Result<T, DeError> {
    T::deserialize(NodeDe(node))
}

/// A value together with the span of the node it was decoded from.
///
/// Serializes and describes itself (JSON Schema) exactly as `T`: the span is only
/// known when decoding from a [`Node`], and is empty otherwise.
#[derive(Clone, Debug, Default)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Span,
}

impl<T> Spanned<T> {
    pub fn new(value: T, span: Span) -> Spanned<T> {
        Spanned { value, span }
    }
}

impl<T> std::ops::Deref for Spanned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: PartialEq> PartialEq for Spanned<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl<T: Eq> Eq for Spanned<T> {}

impl<T: std::hash::Hash> std::hash::Hash for Spanned<T> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.value.hash(state)
    }
}

impl<T: fmt::Display> fmt::Display for Spanned<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.value.fmt(f)
    }
}

impl<T: Serialize> Serialize for Spanned<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(s)
    }
}

impl<T: JsonSchema> JsonSchema for Spanned<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }
    fn schema_id() -> std::borrow::Cow<'static, str> {
        T::schema_id()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }
}

const SPANNED_NAME: &str = "$drplan::Spanned";
const SPANNED_FIELDS: &[&str] = &["$start", "$end", "$value"];

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Spanned<T> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SpannedVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for SpannedVisitor<T> {
            type Value = Spanned<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Spanned<T>, A::Error> {
                let mut start = 0u32;
                let mut end = 0u32;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "$start" => start = map.next_value()?,
                        "$end" => end = map.next_value()?,
                        _ => {
                            let value = map.next_value()?;
                            return Ok(Spanned { value, span: Span { start, end } });
                        }
                    }
                }
                Err(de::Error::custom("spanned value missing"))
            }
        }
        d.deserialize_struct(SPANNED_NAME, SPANNED_FIELDS, SpannedVisitor(std::marker::PhantomData))
    }
}

/// Deserializer for one node.
#[derive(Clone, Copy)]
struct NodeDe<'a>(&'a Node);

impl<'a> NodeDe<'a> {
    fn unexpected(&self) -> de::Unexpected<'a> {
        match &self.0.value {
            Value::Null => de::Unexpected::Unit,
            Value::Bool(b) => de::Unexpected::Bool(*b),
            Value::Int(i) => de::Unexpected::Signed(*i),
            Value::Float(f) => de::Unexpected::Float(*f),
            Value::Str(s) => de::Unexpected::Str(s),
            Value::Seq(_) => de::Unexpected::Seq,
            Value::Map(_) => de::Unexpected::Map,
        }
    }

    /// Leaves "missing field" errors unlocated so the key holding this mapping claims them.
    fn locate_in_map(&self, err: DeError) -> DeError {
        match err.kind {
            DeErrorKind::MissingField if err.span.is_none() && matches!(self.0.value, Value::Map(_)) => err,
            _ => err.at(self.0.span),
        }
    }

    fn wrong_type(&self, exp: &dyn de::Expected) -> DeError {
        de::Error::invalid_type(self.unexpected(), exp)
    }

    fn int_as<T, V: Visitor<'a>>(
        self,
        visitor: V,
        f: impl Fn(i64) -> Option<T>,
        visit: impl Fn(V, T) -> Result<V::Value, DeError>,
    ) -> Result<V::Value, DeError> {
        match self.0.value {
            Value::Int(i) => match f(i) {
                Some(v) => visit(visitor, v),
                None => Err(de::Error::invalid_value(de::Unexpected::Signed(i), &visitor)),
            },
            _ => Err(self.wrong_type(&visitor)),
        }
    }
}

macro_rules! int_method {
    ($method:ident, $ty:ty, $visit:ident) => {
        fn $method<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
            let span = self.0.span;
            self.int_as(visitor, |i| <$ty>::try_from(i).ok(), |v, x| v.$visit(x)).map_err(|e| e.at(span))
        }
    };
}

impl<'a> de::Deserializer<'a> for NodeDe<'a> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        let span = self.0.span;
        let result = match &self.0.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => visitor.visit_i64(*i),
            Value::Float(f) => visitor.visit_f64(*f),
            Value::Str(s) => visitor.visit_borrowed_str(s),
            Value::Seq(items) => visitor.visit_seq(SeqDe { items: items.iter() }),
            Value::Map(pairs) => visitor.visit_map(MapDe { pairs: pairs.iter(), value: None }),
        };
        let _ = span;
        result.map_err(|e| self.locate_in_map(e))
    }

    fn deserialize_bool<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0.value {
            Value::Bool(b) => visitor.visit_bool(b),
            _ => Err(self.wrong_type(&visitor)),
        }
        .map_err(|e| e.at(self.0.span))
    }

    int_method!(deserialize_i8, i8, visit_i8);
    int_method!(deserialize_i16, i16, visit_i16);
    int_method!(deserialize_i32, i32, visit_i32);
    int_method!(deserialize_i64, i64, visit_i64);
    int_method!(deserialize_u8, u8, visit_u8);
    int_method!(deserialize_u16, u16, visit_u16);
    int_method!(deserialize_u32, u32, visit_u32);
    int_method!(deserialize_u64, u64, visit_u64);

    fn deserialize_f32<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0.value {
            Value::Float(f) => visitor.visit_f64(f),
            Value::Int(i) => visitor.visit_f64(i as f64),
            _ => Err(self.wrong_type(&visitor)),
        }
        .map_err(|e| e.at(self.0.span))
    }

    fn deserialize_char<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.0.value {
            Value::Str(s) => visitor.visit_borrowed_str(s),
            _ => Err(self.wrong_type(&visitor)),
        }
        .map_err(|e| e.at(self.0.span))
    }

    fn deserialize_string<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
        .map_err(|e| e.at(self.0.span))
    }

    fn deserialize_unit<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0.value {
            Value::Null => visitor.visit_unit(),
            _ => Err(self.wrong_type(&visitor)),
        }
        .map_err(|e| e.at(self.0.span))
    }

    fn deserialize_unit_struct<V: Visitor<'a>>(self, _name: &'static str, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'a>>(self, _name: &'static str, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self).map_err(|e| e.at(self.0.span))
    }

    fn deserialize_seq<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.0.value {
            Value::Seq(items) => visitor.visit_seq(SeqDe { items: items.iter() }),
            _ => Err(self.wrong_type(&visitor)),
        }
        .map_err(|e| e.at(self.0.span))
    }

    fn deserialize_tuple<V: Visitor<'a>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.0.value {
            Value::Map(pairs) => visitor.visit_map(MapDe { pairs: pairs.iter(), value: None }),
            _ => Err(self.wrong_type(&visitor)),
        }
        .map_err(|e| self.locate_in_map(e))
    }

    fn deserialize_struct<V: Visitor<'a>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        if name == SPANNED_NAME {
            return visitor.visit_map(SpannedDe { node: self.0, state: 0 });
        }
        let _ = fields;
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let span = self.0.span;
        match &self.0.value {
            Value::Str(_) => visitor.visit_enum(EnumDe { tag: self.0, content: None }),
            Value::Map(pairs) if pairs.len() == 1 => {
                let (tag, content) = &pairs[0];
                visitor.visit_enum(EnumDe { tag, content: Some(content) })
            }
            Value::Map(pairs) if pairs.is_empty() => Err(DeError::new(
                DeErrorKind::MissingField,
                "expected exactly one key naming the kind, found an empty mapping".into(),
            )),
            Value::Map(pairs) => Err(DeError::new(
                DeErrorKind::InvalidValue,
                "expected exactly one key naming the kind, found several".into(),
            )
            .at(pairs[1].0.span)),
            _ => Err(self.wrong_type(&visitor)),
        }
        .map_err(|e| e.at(span))
    }

    fn deserialize_identifier<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

struct SeqDe<'a> {
    items: std::slice::Iter<'a, Node>,
}

impl<'a> SeqAccess<'a> for SeqDe<'a> {
    type Error = DeError;
    fn next_element_seed<T: DeserializeSeed<'a>>(&mut self, seed: T) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            Some(node) => seed.deserialize(NodeDe(node)).map(Some).map_err(|e| e.at(node.span)),
            None => Ok(None),
        }
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapDe<'a> {
    pairs: std::slice::Iter<'a, (Node, Node)>,
    value: Option<(&'a Node, &'a Node)>,
}

/// A field missing inside a nested mapping is best shown at the key that holds it.
fn locate(err: DeError, key: &Node, value: &Node) -> DeError {
    match err.kind {
        DeErrorKind::MissingField if err.span.is_none() => err.at(key.span),
        _ => err.at(value.span),
    }
}

impl<'a> MapAccess<'a> for MapDe<'a> {
    type Error = DeError;
    fn next_key_seed<K: DeserializeSeed<'a>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
        match self.pairs.next() {
            Some((key, value)) => {
                self.value = Some((key, value));
                seed.deserialize(NodeDe(key)).map(Some).map_err(|e| e.at(key.span))
            }
            None => Ok(None),
        }
    }
    fn next_value_seed<V: DeserializeSeed<'a>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let (key, node) = self.value.take().ok_or_else(|| de::Error::custom("value without key"))?;
        seed.deserialize(NodeDe(node)).map_err(|e| locate(e, key, node))
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.pairs.len())
    }
}

/// Feeds a [`Spanned`] its start, end and value.
struct SpannedDe<'a> {
    node: &'a Node,
    state: u8,
}

impl<'a> MapAccess<'a> for SpannedDe<'a> {
    type Error = DeError;
    fn next_key_seed<K: DeserializeSeed<'a>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
        let key = match self.state {
            0 => "$start",
            1 => "$end",
            2 => "$value",
            _ => return Ok(None),
        };
        seed.deserialize(key.into_deserializer()).map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'a>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        self.state += 1;
        match self.state {
            1 => seed.deserialize(self.node.span.start.into_deserializer()),
            2 => seed.deserialize(self.node.span.end.into_deserializer()),
            _ => seed.deserialize(NodeDe(self.node)),
        }
    }
}

struct EnumDe<'a> {
    tag: &'a Node,
    content: Option<&'a Node>,
}

impl<'a> de::EnumAccess<'a> for EnumDe<'a> {
    type Error = DeError;
    type Variant = VariantDe<'a>;
    fn variant_seed<V: DeserializeSeed<'a>>(self, seed: V) -> Result<(V::Value, VariantDe<'a>), DeError> {
        let tag = seed.deserialize(NodeDe(self.tag)).map_err(|e| e.at(self.tag.span))?;
        Ok((tag, VariantDe { tag: self.tag, content: self.content }))
    }
}

struct VariantDe<'a> {
    tag: &'a Node,
    content: Option<&'a Node>,
}

impl<'a> VariantDe<'a> {
    fn content(&self) -> Result<&'a Node, DeError> {
        self.content.ok_or_else(|| {
            DeError::new(DeErrorKind::MissingField, format!("`{}` needs parameters", self.tag.scalar_text()))
                .at(self.tag.span)
        })
    }
}

impl<'a> de::VariantAccess<'a> for VariantDe<'a> {
    type Error = DeError;
    fn unit_variant(self) -> Result<(), DeError> {
        match self.content {
            None => Ok(()),
            Some(node) if node.value == Value::Null => Ok(()),
            Some(node) => {
                Err(DeError::new(DeErrorKind::WrongType, format!("`{}` takes no parameters", self.tag.scalar_text()))
                    .at(node.span))
            }
        }
    }
    fn newtype_variant_seed<T: DeserializeSeed<'a>>(self, seed: T) -> Result<T::Value, DeError> {
        let node = self.content()?;
        seed.deserialize(NodeDe(node)).map_err(|e| locate(e, self.tag, node))
    }
    fn tuple_variant<V: Visitor<'a>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        let node = self.content()?;
        de::Deserializer::deserialize_seq(NodeDe(node), visitor)
    }
    fn struct_variant<V: Visitor<'a>>(self, _fields: &'static [&'static str], visitor: V) -> Result<V::Value, DeError> {
        let node = self.content()?;
        de::Deserializer::deserialize_map(NodeDe(node), visitor).map_err(|e| locate(e, self.tag, node))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lang::yaml::{Limits, parse_str};

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Sample {
        name: Spanned<String>,
        #[allow(dead_code)]
        replicas: u32,
        #[serde(default)]
        tags: Vec<Spanned<String>>,
    }

    fn decode(text: &str) -> (Result<Sample, DeError>, std::sync::Arc<crate::diag::SourceFile>) {
        let file = parse_str("t.yaml", text, Limits::PLAN).unwrap();
        let doc = Box::leak(Box::new(file.documents[0].clone()));
        (from_node::<Sample>(doc), file.source)
    }

    #[test]
    fn spanned_fields_know_their_place() {
        let (sample, source) = decode("name: web\nreplicas: 3\ntags: [a, bb]\n");
        let sample = sample.unwrap();
        assert_eq!(sample.name.value, "web");
        assert_eq!(source.position_of(sample.name.span.start as usize), (1, 7));
        assert_eq!(source.position_of(sample.tags[1].span.start as usize), (3, 11));
    }

    #[test]
    fn unknown_field_points_at_key() {
        let (err, source) = decode("name: web\nreplica: 3\n");
        let err = err.unwrap_err();
        assert_eq!(err.kind, DeErrorKind::UnknownField);
        assert!(err.message.contains("did you mean `replicas`"), "{}", err.message);
        assert_eq!(source.position_of(err.span.unwrap().start as usize), (2, 1));
    }

    #[test]
    fn wrong_type_points_at_value() {
        let (err, source) = decode("name: web\nreplicas: three\n");
        let err = err.unwrap_err();
        assert_eq!(err.kind, DeErrorKind::WrongType);
        assert_eq!(source.position_of(err.span.unwrap().start as usize), (2, 11));
    }

    #[derive(Deserialize, Debug)]
    struct Outer {
        #[allow(dead_code)]
        inner: Sample,
    }

    #[test]
    fn missing_field_points_at_the_key_holding_the_mapping() {
        let file = parse_str("t.yaml", "inner:\n  name: web\n", Limits::PLAN).unwrap();
        let err = from_node::<Outer>(&file.documents[0]).unwrap_err();
        assert_eq!(err.kind, DeErrorKind::MissingField);
        assert!(err.message.contains("replicas"));
        assert_eq!(file.source.position_of(err.span.unwrap().start as usize), (1, 1));
    }
}
