//! Incremental decoder of the AWS event stream (`application/vnd.amazon.eventstream`), the binary framing
//! of Bedrock's ConverseStream.
//!
//! A message is: prelude (total length u32 BE, headers length u32 BE, CRC32 of those 8 bytes), headers,
//! payload, then the CRC32 of everything before it. A header is: name length u8, name, value type u8,
//! value. Bytes may arrive split anywhere. A bad CRC or an impossible length loses the framing for good:
//! the decoder reports one error and ignores every later byte.

/// Largest message accepted (the format allows 16 MiB of payload; anything larger is garbage).
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;
const PRELUDE: usize = 12;
/// Prelude plus the trailing message CRC.
const OVERHEAD: usize = PRELUDE + 4;

/// One decoded message: the headers the gateway reads, and the payload.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    /// `:event-type` (event messages).
    pub event_type: Option<String>,
    /// `:message-type`: `event`, `exception` or `error`.
    pub message_type: Option<String>,
    /// `:exception-type` (exception messages).
    pub exception_type: Option<String>,
    /// `:content-type` of the payload.
    pub content_type: Option<String>,
    /// `:error-code` and `:error-message` (error messages: failures of the stream itself).
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The prelude's CRC does not match.
    PreludeCrc,
    /// The message's CRC does not match.
    MessageCrc,
    /// A total or headers length that cannot be.
    Length { total: u32, headers: u32 },
    /// Malformed headers.
    Header(&'static str),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::PreludeCrc => f.write_str("event stream prelude checksum mismatch"),
            DecodeError::MessageCrc => f.write_str("event stream message checksum mismatch"),
            DecodeError::Length { total, headers } => {
                write!(f, "event stream message has impossible lengths (total {total}, headers {headers})")
            }
            DecodeError::Header(what) => write!(f, "event stream message has malformed headers: {what}"),
        }
    }
}

#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    failed: bool,
}

impl Decoder {
    pub fn new() -> Self {
        Decoder::default()
    }

    /// Feeds bytes; calls `on_item` for each message they complete, or once with the error that stops
    /// the decoder.
    pub fn push(&mut self, bytes: &[u8], on_item: &mut dyn FnMut(Result<Message, DecodeError>)) {
        if self.failed {
            return;
        }
        self.buf.extend_from_slice(bytes);
        let mut start = 0;
        loop {
            match frame(self.buf.get(start..).unwrap_or(&[])) {
                Frame::Incomplete => break,
                Frame::Done(len, msg) => {
                    start += len;
                    on_item(Ok(msg));
                }
                Frame::Bad(e) => {
                    self.failed = true;
                    self.buf = Vec::new();
                    on_item(Err(e));
                    return;
                }
            }
        }
        self.buf.drain(..start.min(self.buf.len()));
    }

    /// True when bytes of an unfinished message are buffered (a stream ending now is truncated).
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty()
    }
}

enum Frame {
    Incomplete,
    Done(usize, Message),
    Bad(DecodeError),
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_be_bytes([*s.first()?, *s.get(1)?, *s.get(2)?, *s.get(3)?]))
}

fn frame(b: &[u8]) -> Frame {
    let (Some(total), Some(hlen), Some(pcrc)) = (be32(b, 0), be32(b, 4), be32(b, 8)) else {
        return Frame::Incomplete;
    };
    if crc32(b.get(..8).unwrap_or(&[])) != pcrc {
        return Frame::Bad(DecodeError::PreludeCrc);
    }
    let (t, h) = (total as usize, hlen as usize);
    if !(OVERHEAD..=MAX_MESSAGE).contains(&t) || h > t - OVERHEAD {
        return Frame::Bad(DecodeError::Length { total, headers: hlen });
    }
    let (Some(body), Some(mcrc)) = (b.get(..t - 4), be32(b, t - 4)) else {
        return Frame::Incomplete;
    };
    if crc32(body) != mcrc {
        return Frame::Bad(DecodeError::MessageCrc);
    }
    let mut msg = Message { payload: body.get(PRELUDE + h..).unwrap_or(&[]).to_vec(), ..Message::default() };
    match read_headers(body.get(PRELUDE..PRELUDE + h).unwrap_or(&[]), &mut msg) {
        Ok(()) => Frame::Done(t, msg),
        Err(e) => Frame::Bad(e),
    }
}

fn read_headers(mut h: &[u8], msg: &mut Message) -> Result<(), DecodeError> {
    fn take<'a>(h: &mut &'a [u8], n: usize) -> Result<&'a [u8], DecodeError> {
        let (a, rest) = h.split_at_checked(n).ok_or(DecodeError::Header("truncated header"))?;
        *h = rest;
        Ok(a)
    }
    fn len16(h: &mut &[u8]) -> Result<usize, DecodeError> {
        let b = take(h, 2)?;
        Ok(usize::from(u16::from_be_bytes([b.first().copied().unwrap_or(0), b.get(1).copied().unwrap_or(0)])))
    }
    while !h.is_empty() {
        let name_len = usize::from(*take(&mut h, 1)?.first().unwrap_or(&0));
        let name = take(&mut h, name_len)?;
        let kind = *take(&mut h, 1)?.first().unwrap_or(&0);
        let value = match kind {
            0 | 1 => None,
            2 => take(&mut h, 1).map(|_| None)?,
            3 => take(&mut h, 2).map(|_| None)?,
            4 => take(&mut h, 4).map(|_| None)?,
            5 | 8 => take(&mut h, 8).map(|_| None)?,
            9 => take(&mut h, 16).map(|_| None)?,
            6 => {
                let n = len16(&mut h)?;
                take(&mut h, n).map(|_| None)?
            }
            7 => {
                let n = len16(&mut h)?;
                Some(String::from_utf8_lossy(take(&mut h, n)?).into_owned())
            }
            _ => return Err(DecodeError::Header("unknown header value type")),
        };
        let slot = match name {
            b":event-type" => &mut msg.event_type,
            b":message-type" => &mut msg.message_type,
            b":exception-type" => &mut msg.exception_type,
            b":content-type" => &mut msg.content_type,
            b":error-code" => &mut msg.error_code,
            b":error-message" => &mut msg.error_message,
            _ => continue,
        };
        if value.is_some() {
            *slot = value;
        }
    }
    Ok(())
}

const CRC_TABLE: [u32; 256] = crc_table();

const fn crc_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), as zlib computes it.
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c = CRC_TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// Encodes one message with string headers (tests and fixtures).
#[cfg(test)]
pub fn encode(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    for (k, v) in headers {
        h.push(k.len() as u8);
        h.extend_from_slice(k.as_bytes());
        h.push(7);
        h.extend_from_slice(&(v.len() as u16).to_be_bytes());
        h.extend_from_slice(v.as_bytes());
    }
    let total = (OVERHEAD + h.len() + payload.len()) as u32;
    let mut m = Vec::new();
    m.extend_from_slice(&total.to_be_bytes());
    m.extend_from_slice(&(h.len() as u32).to_be_bytes());
    let pc = crc32(&m);
    m.extend_from_slice(&pc.to_be_bytes());
    m.extend_from_slice(&h);
    m.extend_from_slice(payload);
    let mc = crc32(&m);
    m.extend_from_slice(&mc.to_be_bytes());
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(chunks: &[&[u8]]) -> Vec<Result<Message, DecodeError>> {
        let mut d = Decoder::new();
        let mut out = Vec::new();
        for c in chunks {
            d.push(c, &mut |m| out.push(m));
        }
        out
    }

    #[test]
    fn crc32_check_values() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b"The quick brown fox jumps over the lazy dog"), 0x414F_A339);
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// Vectors of the AWS event stream test suite (aws-c-event-stream): an empty message, and one with a
    /// `content-type` string header and a JSON payload.
    #[test]
    fn aws_vectors() {
        let empty = hex("000000100000000005c248eb7d98c8ff");
        assert_eq!(decode(&[&empty]), vec![Ok(Message::default())]);
        let with_header =
            hex("0000003d0000002007fd83960c636f6e74656e742d747970650700106170706c69636174696f6e2f6a736f6e\
             7b27666f6f273a27626172277d8d9c08b1");
        assert_eq!(
            decode(&[&with_header]),
            vec![Ok(Message { payload: b"{'foo':'bar'}".to_vec(), ..Message::default() })]
        );
        assert_eq!(encode(&[("content-type", "application/json")], b"{'foo':'bar'}"), with_header);
        assert_eq!(encode(&[], b""), empty);
    }

    #[test]
    fn all_header_types_are_skipped_or_read() {
        let mut h = Vec::new();
        let mut add = |name: &str, kind: u8, value: &[u8]| {
            h.push(name.len() as u8);
            h.extend_from_slice(name.as_bytes());
            h.push(kind);
            h.extend_from_slice(value);
        };
        add("t", 0, &[]);
        add("f", 1, &[]);
        add("b", 2, &[7]);
        add("s", 3, &[0, 7]);
        add("i", 4, &[0, 0, 0, 7]);
        add("l", 5, &[0; 8]);
        add("bytes", 6, &[0, 3, 1, 2, 3]);
        add(":event-type", 7, &[0, 9, b'm', b'e', b's', b's', b'a', b'g', b'e', b'I', b'n']);
        add("ts", 8, &[0; 8]);
        add("id", 9, &[0; 16]);
        add(":message-type", 7, &[0, 5, b'e', b'v', b'e', b'n', b't']);
        let payload = b"{}";
        let total = (OVERHEAD + h.len() + payload.len()) as u32;
        let mut m = total.to_be_bytes().to_vec();
        m.extend_from_slice(&(h.len() as u32).to_be_bytes());
        let c = crc32(&m);
        m.extend_from_slice(&c.to_be_bytes());
        m.extend_from_slice(&h);
        m.extend_from_slice(payload);
        let c = crc32(&m);
        m.extend_from_slice(&c.to_be_bytes());
        let got = decode(&[&m]);
        let want = Message {
            event_type: Some("messageIn".into()),
            message_type: Some("event".into()),
            payload: b"{}".to_vec(),
            ..Message::default()
        };
        assert_eq!(got, vec![Ok(want)]);
    }

    #[test]
    fn split_anywhere() {
        let mut all = encode(&[(":event-type", "a"), (":message-type", "event")], br#"{"x":1}"#);
        all.extend(encode(&[(":exception-type", "throttlingException"), (":message-type", "exception")], b"{}"));
        all.extend(encode(&[], b""));
        let whole = decode(&[&all]);
        assert_eq!(whole.len(), 3);
        assert_eq!(whole[1].as_ref().unwrap().exception_type.as_deref(), Some("throttlingException"));
        for cut in 0..=all.len() {
            assert_eq!(decode(&[&all[..cut], &all[cut..]]), whole, "cut {cut}");
        }
        let bytes: Vec<&[u8]> = all.chunks(1).collect();
        assert_eq!(decode(&bytes), whole);
        let mut d = Decoder::new();
        d.push(&all[..all.len() - 1], &mut |_| {});
        assert!(d.has_partial());
    }

    #[test]
    fn corruption_is_an_error_once() {
        let good = encode(&[(":event-type", "a")], b"payload");
        for (i, want) in
            [(2usize, DecodeError::PreludeCrc), (9, DecodeError::PreludeCrc), (20, DecodeError::MessageCrc)]
        {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            let mut tail = bad.clone();
            tail.extend_from_slice(&good);
            let got = decode(&[&tail, &good]);
            assert_eq!(got, vec![Err(want)], "byte {i}");
        }
    }

    #[test]
    fn absurd_lengths_are_refused_without_buffering() {
        for (total, headers) in [(17 * 1024 * 1024u32, 0u32), (10, 0), (100, 90), (u32::MAX, 0)] {
            let mut m = total.to_be_bytes().to_vec();
            m.extend_from_slice(&headers.to_be_bytes());
            let c = crc32(&m);
            m.extend_from_slice(&c.to_be_bytes());
            assert_eq!(decode(&[&m]), vec![Err(DecodeError::Length { total, headers })]);
        }
        // Truncated headers inside a well-framed message.
        let mut h = vec![3u8, b'a', b'b', b'c', 7, 0, 50, b'x'];
        let total = (OVERHEAD + h.len()) as u32;
        let mut m = total.to_be_bytes().to_vec();
        m.extend_from_slice(&(h.len() as u32).to_be_bytes());
        let c = crc32(&m);
        m.extend_from_slice(&c.to_be_bytes());
        m.append(&mut h);
        let c = crc32(&m);
        m.extend_from_slice(&c.to_be_bytes());
        assert_eq!(decode(&[&m]), vec![Err(DecodeError::Header("truncated header"))]);
    }
}
