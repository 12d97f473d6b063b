//! LEB128 varints for the entry headers of jobs and results frames: an id below two
//! million and a length below 128 take four bytes, not twelve. Bytes matter most in
//! the distributed mode, where the server copies each one several times.

/// The most bytes a `u64` takes.
pub(super) const MAX_LEN: usize = 10;

/// Appends `n`.
#[inline(always)]
pub(super) fn put(buf: &mut Vec<u8>, mut n: u64) {
    // Ids below two million and lengths below sixteen thousand, the common ones,
    // as fixed-size copies (a loop of pushes cost the master's thread a few percent).
    if n < 0x80 {
        buf.push(n as u8);
        return;
    }
    if n < 1 << 14 {
        buf.extend_from_slice(&[n as u8 | 0x80, (n >> 7) as u8]);
        return;
    }
    if n < 1 << 21 {
        buf.extend_from_slice(&[n as u8 | 0x80, (n >> 7) as u8 | 0x80, (n >> 14) as u8]);
        return;
    }
    while n >= 0x80 {
        buf.push(n as u8 | 0x80);
        n >>= 7;
    }
    buf.push(n as u8);
}

/// Bytes `n` takes.
#[inline]
pub(super) fn len(n: u64) -> usize {
    (64 - (n | 1).leading_zeros() as usize).div_ceil(7)
}

/// Writes `n` into exactly `len(n)` bytes at the start of `out`.
#[inline]
pub(super) fn write_at(out: &mut [u8], mut n: u64) {
    let mut i = 0;
    while n >= 0x80 {
        out[i] = n as u8 | 0x80;
        n >>= 7;
        i += 1;
    }
    out[i] = n as u8;
}

/// Reads one from the start of `bytes`: the value and the bytes it took, or `None`
/// when it is cut short or longer than a `u64`.
#[inline(always)]
pub(super) fn read(bytes: &[u8]) -> Option<(u64, usize)> {
    match *bytes {
        [a, ..] if a < 0x80 => Some((a.into(), 1)),
        [a, b, ..] if b < 0x80 => Some((u64::from(a & 0x7f) | u64::from(b) << 7, 2)),
        [a, b, c, ..] if b >= 0x80 && c < 0x80 => {
            let n = u64::from(a & 0x7f) | u64::from(b & 0x7f) << 7 | u64::from(c) << 14;
            Some((n, 3))
        }
        _ => read_long(bytes),
    }
}

fn read_long(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut n = 0u64;
    for (i, &byte) in bytes.iter().enumerate().take(MAX_LEN) {
        let bits = u64::from(byte & 0x7f);
        if i == MAX_LEN - 1 && bits > 1 {
            return None;
        }
        n |= bits << (7 * i);
        if byte < 0x80 {
            return Some((n, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_width_round_trips() {
        for n in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            1 << 35,
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut buf = Vec::new();
            put(&mut buf, n);
            assert_eq!(buf.len(), len(n), "{n}");
            let mut at = vec![0; len(n)];
            write_at(&mut at, n);
            assert_eq!(at, buf);
            assert_eq!(read(&buf), Some((n, buf.len())));
        }
    }

    #[test]
    fn cut_or_overlong_input_is_refused() {
        assert_eq!(read(&[]), None);
        assert_eq!(read(&[0x80]), None);
        assert_eq!(read(&[0xff; 10]), None);
        // Ten bytes whose last carries more than the 64th bit.
        let mut over = vec![0xff; 9];
        over.push(0x02);
        assert_eq!(read(&over), None);
    }
}
