//! Envoy's verdict on a request's JWT, read from the request's dynamic metadata: the protobuf
//! `envoy.config.core.v3.Metadata` that `get_property(["metadata"])` returns. Envoy's `jwt_authn` filter
//! (configured with `payload_in_metadata: payload` and `failed_status_in_metadata: failure`) leaves, in
//! `filter_metadata["envoy.filters.http.jwt_authn"]` (a `google.protobuf.Struct`), either `payload`: the
//! verified claims as a Struct, or `failure`: `{code: number, message: string}`.
//!
//! Wire format read here: `Metadata.filter_metadata` = field 1, map entries `{1: key, 2: Struct}`;
//! `Struct.fields` = field 1, map entries `{1: key, 2: Value}`; `Value` is a oneof: null 1, number 2
//! (double, fixed64), string 3, bool 4, struct 5, list 6; `ListValue.values` = field 1. Duplicate map
//! keys: the last wins, as protobuf says.
//!
//! Bounded and zero-copy: the input is refused past [`MAX_METADATA_BYTES`]; claims are looked up along a
//! path, one Struct level at a time, borrowing the input (no tree is built, nothing recurses); lists are
//! read up to [`MAX_LIST_ITEMS`] items. Bytes that are not what Envoy writes are an error, never a panic.

use crate::codec::protobuf::{Reader, Value};

/// Where `jwt_authn` writes (its filter name).
pub const NAMESPACE: &str = "envoy.filters.http.jwt_authn";
/// The field of the namespace holding the verified claims (`payload_in_metadata`).
pub const PAYLOAD: &str = "payload";
/// The field of the namespace holding why verification failed (`failed_status_in_metadata`).
pub const FAILURE: &str = "failure";
/// Larger metadata is refused unread (a token's claims come from a header, which Envoy caps at 60 KiB).
pub const MAX_METADATA_BYTES: usize = 256 * 1024;
/// The most items of a list claim that are read (a user's groups, say).
pub const MAX_LIST_ITEMS: usize = 256;
/// Envoy's failure message is cut to this many characters (it is quoted to the client).
const MAX_MESSAGE: usize = 200;

/// Metadata that is not what Envoy writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Corrupt(pub &'static str);

type R<T> = Result<T, Corrupt>;

/// What `jwt_authn` said of the request.
#[derive(Debug, Clone, PartialEq)]
pub enum Jwt<'a> {
    /// A token was verified: its claims.
    Verified(Claims<'a>),
    /// Verification failed (also: no token): Envoy's status.
    Failed(Failure),
    /// Nothing from `jwt_authn` (the filter is not in front of this one, or skipped the request).
    Absent,
}

/// Why `jwt_authn` refused a token: its status code and message ("Jwt is expired", "Jwt is missing", ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: u32,
    pub message: String,
}

/// The verified claims: a `google.protobuf.Struct`, borrowed from the metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claims<'a> {
    fields: &'a [u8],
}

/// One claim's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Claim<'a> {
    Null,
    Number(f64),
    Str(&'a str),
    Bool(bool),
    Struct(Claims<'a>),
    List(List<'a>),
}

/// A list claim (`google.protobuf.ListValue`), read item by item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct List<'a> {
    bytes: &'a [u8],
}

/// Reads `jwt_authn`'s verdict from the request's metadata (empty: no metadata at all).
pub fn read(metadata: &[u8]) -> R<Jwt<'_>> {
    if metadata.len() > MAX_METADATA_BYTES {
        return Err(Corrupt("the request's metadata is larger than 256 KiB"));
    }
    let mut namespace = None;
    for f in Reader::new(metadata) {
        let (n, v) = f.map_err(Corrupt)?;
        if n != 1 {
            continue; // typed_filter_metadata and anything newer
        }
        let (key, value) = entry(v)?;
        if key == NAMESPACE {
            namespace = Some(value);
        }
    }
    let Some(ns) = namespace else { return Ok(Jwt::Absent) };
    let ns = Claims { fields: ns };
    if let Some(payload) = ns.field(PAYLOAD)? {
        return match value(payload)? {
            Claim::Struct(claims) => Ok(Jwt::Verified(claims)),
            _ => Err(Corrupt("the jwt_authn payload is not a Struct")),
        };
    }
    let Some(failure) = ns.field(FAILURE)? else { return Ok(Jwt::Absent) };
    let Claim::Struct(status) = value(failure)? else { return Err(Corrupt("the jwt_authn failure is not a Struct")) };
    let code = match status.get("code")? {
        Some(Claim::Number(n)) if (0.0..=f64::from(u32::MAX)).contains(&n) => n as u32,
        _ => 0,
    };
    let message = match status.get("message")? {
        Some(Claim::Str(s)) => s.chars().take(MAX_MESSAGE).collect(),
        _ => String::new(),
    };
    Ok(Jwt::Failed(Failure { code, message }))
}

/// A map entry `{1: key, 2: value}` (key and value bytes).
fn entry(v: Value<'_>) -> R<(&str, &[u8])> {
    let Value::Bytes(b) = v else { return Err(Corrupt("a map entry is not a message")) };
    let (mut key, mut val): (&[u8], &[u8]) = (&[], &[]);
    for f in Reader::new(b) {
        match f.map_err(Corrupt)? {
            (1, Value::Bytes(k)) => key = k,
            (2, Value::Bytes(x)) => val = x,
            (1 | 2, _) => return Err(Corrupt("a map entry's key or value has the wrong wire type")),
            _ => {}
        }
    }
    let key = std::str::from_utf8(key).map_err(|_| Corrupt("a map key is not UTF-8"))?;
    Ok((key, val))
}

/// A `google.protobuf.Value`.
fn value(bytes: &[u8]) -> R<Claim<'_>> {
    let mut out = Claim::Null;
    for f in Reader::new(bytes) {
        out = match f.map_err(Corrupt)? {
            (1, Value::Varint(_)) => Claim::Null,
            (2, Value::Fixed64(bits)) => Claim::Number(f64::from_bits(bits)),
            (3, Value::Bytes(s)) => Claim::Str(std::str::from_utf8(s).map_err(|_| Corrupt("a string is not UTF-8"))?),
            (4, Value::Varint(b)) => Claim::Bool(b != 0),
            (5, Value::Bytes(s)) => Claim::Struct(Claims { fields: s }),
            (6, Value::Bytes(l)) => Claim::List(List { bytes: l }),
            (1..=6, _) => return Err(Corrupt("a Value field has the wrong wire type")),
            _ => out,
        };
    }
    Ok(out)
}

impl<'a> Claims<'a> {
    /// The value bytes of the field named `name` (the last one, if repeated).
    fn field(&self, name: &str) -> R<Option<&'a [u8]>> {
        let mut found = None;
        for f in Reader::new(self.fields) {
            let (n, v) = f.map_err(Corrupt)?;
            if n == 1 {
                let (k, val) = entry(v)?;
                if k == name {
                    found = Some(val);
                }
            }
        }
        Ok(found)
    }

    /// The claim at `path`: a claim name, or a dotted path into nested claims (`realm_access.roles`). At
    /// each level a claim named by the whole rest of the path wins (claim names may hold dots, such as
    /// `https://example.com/roles`), else the part before the first dot is followed.
    pub fn get(&self, path: &str) -> R<Option<Claim<'a>>> {
        let mut level = *self;
        let mut rest = path;
        loop {
            let head = rest.split_once('.').map(|(h, _)| h);
            let (mut exact, mut nested) = (None, None);
            for f in Reader::new(level.fields) {
                let (n, v) = f.map_err(Corrupt)?;
                if n != 1 {
                    continue;
                }
                let (k, val) = entry(v)?;
                if k == rest {
                    exact = Some(val);
                } else if Some(k) == head {
                    nested = Some(val);
                }
            }
            if let Some(v) = exact {
                return value(v).map(Some);
            }
            let (Some(v), Some((_, tail))) = (nested, rest.split_once('.')) else { return Ok(None) };
            match value(v)? {
                Claim::Struct(inner) => {
                    level = inner;
                    rest = tail;
                }
                _ => return Ok(None),
            }
        }
    }
}

impl<'a> List<'a> {
    /// The items, up to [`MAX_LIST_ITEMS`].
    pub fn items(&self) -> R<Vec<Claim<'a>>> {
        let mut out = Vec::new();
        for f in Reader::new(self.bytes) {
            if out.len() == MAX_LIST_ITEMS {
                break;
            }
            match f.map_err(Corrupt)? {
                (1, Value::Bytes(v)) => out.push(value(v)?),
                (1, _) => return Err(Corrupt("a list item is not a message")),
                _ => {}
            }
        }
        Ok(out)
    }
}

impl<'a> Claim<'a> {
    /// The strings a claim holds: a list's string items, or a string split on whitespace and commas
    /// (`"ds eng"`, `"ds,eng"`); at most [`MAX_LIST_ITEMS`].
    pub fn strings(&self) -> R<Vec<&'a str>> {
        Ok(match self {
            Claim::Str(s) => s
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|p| !p.is_empty())
                .take(MAX_LIST_ITEMS)
                .collect(),
            Claim::List(l) => l
                .items()?
                .into_iter()
                .filter_map(|c| match c {
                    Claim::Str(s) => Some(s),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        })
    }
}
