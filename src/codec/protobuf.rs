//! The protobuf wire format, as much as the filter needs for the messages it sends to and reads from
//! Envoy's rate-limit service (varints, length-delimited fields, nested messages). No code generation and
//! no crate: the .wasm stays small. Decoding never recurses on its own and never reads past its input.

/// Appends `v` as a varint.
pub fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A message being written.
#[derive(Debug, Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Writer {
        Writer { buf: Vec::new() }
    }

    /// A varint field (`uint32`, `uint64`, `int64` ≥ 0, `bool`, enum); proto3 leaves zero out.
    pub fn uint(&mut self, field: u32, v: u64) -> &mut Self {
        if v != 0 {
            varint(&mut self.buf, u64::from(field) << 3);
            varint(&mut self.buf, v);
        }
        self
    }

    /// A length-delimited field: `string`, `bytes`, or an embedded message already encoded.
    pub fn bytes(&mut self, field: u32, b: &[u8]) -> &mut Self {
        varint(&mut self.buf, (u64::from(field) << 3) | 2);
        varint(&mut self.buf, b.len() as u64);
        self.buf.extend_from_slice(b);
        self
    }

    /// An embedded message written by `f`.
    pub fn message(&mut self, field: u32, f: impl FnOnce(&mut Writer)) -> &mut Self {
        let mut inner = Writer::new();
        f(&mut inner);
        self.bytes(field, &inner.buf)
    }
}

/// One field's value as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

impl<'a> Value<'a> {
    pub fn as_u64(&self) -> u64 {
        match *self {
            Value::Varint(v) | Value::Fixed64(v) => v,
            Value::Fixed32(v) => u64::from(v),
            Value::Bytes(_) => 0,
        }
    }

    pub fn as_bytes(&self) -> &'a [u8] {
        match *self {
            Value::Bytes(b) => b,
            _ => &[],
        }
    }
}

/// The fields of one message, in order: `(field number, value)`, or an error for bytes that are not a
/// message (a truncated field, an unknown wire type, a length past the end).
pub struct Reader<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { rest: bytes, failed: false }
    }

    fn read_varint(&mut self) -> Option<u64> {
        let mut v: u64 = 0;
        for (i, b) in self.rest.iter().enumerate().take(10) {
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                self.rest = &self.rest[i + 1..];
                return Some(v);
            }
        }
        None
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.rest.len() {
            return None;
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Some(head)
    }

    fn field(&mut self) -> Option<(u32, Value<'a>)> {
        let key = self.read_varint()?;
        let field = u32::try_from(key >> 3).ok().filter(|f| *f > 0)?;
        let value = match key & 7 {
            0 => Value::Varint(self.read_varint()?),
            1 => Value::Fixed64(u64::from_le_bytes(self.take(8)?.try_into().ok()?)),
            2 => {
                let n = usize::try_from(self.read_varint()?).ok()?;
                Value::Bytes(self.take(n)?)
            }
            5 => Value::Fixed32(u32::from_le_bytes(self.take(4)?.try_into().ok()?)),
            _ => return None,
        };
        Some((field, value))
    }
}

impl<'a> Iterator for Reader<'a> {
    type Item = Result<(u32, Value<'a>), &'static str>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        match self.field() {
            Some(f) => Some(Ok(f)),
            None => {
                self.failed = true;
                Some(Err("not a protobuf message"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_back() {
        let mut w = Writer::new();
        w.bytes(1, b"switchyard").uint(3, 300).uint(4, 0).message(2, |m| {
            m.bytes(1, b"k").bytes(2, b"v");
        });
        // Known bytes: field 1 "switchyard", field 3 varint 300 (0xac 0x02), field 2 {1:"k", 2:"v"}.
        assert_eq!(&w.buf[..12], b"\x0a\x0aswitchyard");
        assert_eq!(&w.buf[12..15], &[0x18, 0xac, 0x02]);
        let fields: Vec<_> = Reader::new(&w.buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(fields.len(), 3, "zero is left out");
        assert_eq!(fields[0], (1, Value::Bytes(b"switchyard")));
        assert_eq!(fields[1].1.as_u64(), 300);
        let inner: Vec<_> = Reader::new(fields[2].1.as_bytes()).collect::<Result<_, _>>().unwrap();
        assert_eq!(inner, vec![(1, Value::Bytes(b"k")), (2, Value::Bytes(b"v"))]);
    }

    #[test]
    fn bad_bytes_end_in_an_error_not_a_panic() {
        for bad in
            [&b"\x0a\x05abc"[..], b"\x08", b"\x0b", b"\x00\x01", b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"]
        {
            let r: Result<Vec<_>, _> = Reader::new(bad).collect();
            assert!(r.is_err(), "{bad:?}");
        }
        assert_eq!(Reader::new(b"").count(), 0);
        let fixed = [0x09, 1, 0, 0, 0, 0, 0, 0, 0, 0x15, 2, 0, 0, 0];
        let f: Vec<_> = Reader::new(&fixed).collect::<Result<_, _>>().unwrap();
        assert_eq!((f[0].1.as_u64(), f[1].1.as_u64()), (1, 2));
    }
}
