//! Byte searches for the hot path (every SSE event of a stream is searched): eight bytes at a time in a
//! `u64` (native in wasm32), where a plain loop or a `windows()` comparison looks at one position at a time.

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The high bit set in each byte of `x` that is zero (and possibly in bytes above the first zero one,
/// which only the lowest set bit is read for).
fn zero_bytes(x: u64) -> u64 {
    x.wrapping_sub(ONES) & !x & HIGH
}

/// Whether `a` and `b` are the same bytes, compared eight at a time (the wasm build's `memcmp` goes
/// byte by byte).
pub fn eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (mut ca, mut cb) = (a.chunks_exact(8), b.chunks_exact(8));
    for (x, y) in (&mut ca).zip(&mut cb) {
        let word = |c: &[u8]| c.try_into().map_or(0, u64::from_ne_bytes);
        if word(x) != word(y) {
            return false;
        }
    }
    ca.remainder() == cb.remainder()
}

/// The index of the first `byte` in `hay`.
pub fn find_byte(hay: &[u8], byte: u8) -> Option<usize> {
    let pattern = ONES.wrapping_mul(u64::from(byte));
    let mut chunks = hay.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let hits = zero_bytes(u64::from_le_bytes(word) ^ pattern);
        if hits != 0 {
            return Some(at + (hits.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    chunks.remainder().iter().position(|&b| b == byte).map(|i| at + i)
}

/// The index of the first byte in `hay` that is `a` or `b` (line ends: `\n` or `\r`).
pub fn find_either(hay: &[u8], a: u8, b: u8) -> Option<usize> {
    let (pa, pb) = (ONES.wrapping_mul(u64::from(a)), ONES.wrapping_mul(u64::from(b)));
    let mut chunks = hay.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let hits = zero_bytes(w ^ pa) | zero_bytes(w ^ pb);
        if hits != 0 {
            return Some(at + (hits.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    chunks.remainder().iter().position(|&c| c == a || c == b).map(|i| at + i)
}

/// The index of the first `needle` in `hay`, found by scanning for `needle[anchor]` (pick its rarest
/// byte in the text searched) and comparing the whole needle only there.
pub fn find(hay: &[u8], needle: &[u8], anchor: usize) -> Option<usize> {
    let &rare = needle.get(anchor)?;
    let mut from = anchor;
    while from < hay.len() {
        let at = from + find_byte(hay.get(from..)?, rare)?;
        let start = at - anchor;
        if hay.get(start..start + needle.len()) == Some(needle) {
            return Some(start);
        }
        from = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eq_at_every_length_and_difference() {
        let a: Vec<u8> = (0..70u8).collect();
        for len in 0..a.len() {
            assert!(eq(&a[..len], &a[..len]));
            assert!(!eq(&a[..len], &a[..len + 1]));
            for at in 0..len {
                let mut b = a[..len].to_vec();
                b[at] ^= 0x80;
                assert!(!eq(&a[..len], &b), "{len} {at}");
            }
        }
    }

    #[test]
    fn find_byte_at_every_alignment() {
        for len in 0..40 {
            for at in 0..=len {
                let mut hay = vec![b'a'; len];
                if at < len {
                    hay[at] = b'\n';
                    // A byte with the high bit set after it must not confuse the search.
                    if at + 1 < len {
                        hay[at + 1] = 0xff;
                    }
                }
                let want = hay.iter().position(|&b| b == b'\n');
                assert_eq!(find_byte(&hay, b'\n'), want, "len {len} at {at}");
            }
        }
        assert_eq!(find_byte(&[0x80, 0x81, 0x00, 0x01], 0x01), Some(3));
        assert_eq!(find_byte(&[0xff; 17], 0xfe), None);
    }

    #[test]
    fn find_either_at_every_alignment() {
        for len in 0..30 {
            for at in 0..=len {
                for (mark, other) in [(b'\n', b'\r'), (b'\r', b'\n')] {
                    let mut hay = vec![0xc3u8; len];
                    if at < len {
                        hay[at] = mark;
                    }
                    if at + 2 < len {
                        hay[at + 2] = other;
                    }
                    let want = hay.iter().position(|&b| b == b'\n' || b == b'\r');
                    assert_eq!(find_either(&hay, b'\n', b'\r'), want, "len {len} at {at}");
                }
            }
        }
    }

    #[test]
    fn find_is_a_substring_search() {
        let hay = br#"{"u":"usage","usage" :{"usage"}} "choices":[], "choices" "#;
        for start in 0..hay.len() {
            let h = &hay[start..];
            for (needle, anchor) in
                [(&b"\"usage\""[..], 4), (b"\"choices\"", 1), (b"\"u\"", 0), (b"ge\"", 2), (b"}}", 1), (b"\"x\"", 1)]
            {
                let want = h.windows(needle.len()).position(|w| w == needle);
                assert_eq!(find(h, needle, anchor), want, "{:?} in {:?}", needle, std::str::from_utf8(h));
            }
        }
        assert_eq!(find(b"", b"ab", 0), None);
        assert_eq!(find(b"b", b"ab", 1), None);
        assert_eq!(find(b"ab", b"ab", 5), None);
    }
}
