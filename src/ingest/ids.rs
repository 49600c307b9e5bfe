//! Ids in Jaeger and Zipkin files: hex strings that may lack leading zeros (a 64-bit trace id
//! is 16 hex digits), and in hand-written files sometimes not hex at all.

use super::otlp_json::decode_hex;

/// FNV-1a, for turning a non-hex id string into a stable id. Not for security: ids are labels.
fn fnv1a(s: &str, seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Hex (≤ `want`×2 digits) left-padded to `want` bytes. Longer hex is returned as is so the
/// normalizer reports the wrong length; non-hex strings are hashed.
fn lenient(s: &str, want: usize) -> Vec<u8> {
    if s.is_empty() {
        return Vec::new();
    }
    if s.bytes().all(|b| b.is_ascii_hexdigit()) {
        let padded = if s.len() % 2 == 1 {
            format!("0{s}")
        } else {
            s.to_owned()
        };
        if let Some(bytes) = decode_hex(&padded) {
            if bytes.len() >= want {
                return bytes;
            }
            let mut out = vec![0u8; want - bytes.len()];
            out.extend_from_slice(&bytes);
            return out;
        }
    }
    let mut out = Vec::with_capacity(want);
    let mut seed = 0;
    while out.len() < want {
        out.extend_from_slice(&fnv1a(s, seed).to_be_bytes());
        seed += 1;
    }
    out.truncate(want);
    out
}

pub fn trace_id_lenient(s: &str) -> Vec<u8> {
    lenient(s, 16)
}

pub fn span_id_lenient(s: &str) -> Vec<u8> {
    lenient(s, 8)
}

/// A new span id derived from `id` and `salt`, for splitting Zipkin's shared client/server
/// spans into two.
pub fn derive_span_id(id: &[u8], salt: u64) -> Vec<u8> {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for b in id {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h | 1).to_be_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_short_hex_and_hashes_names() {
        assert_eq!(span_id_lenient("a"), vec![0, 0, 0, 0, 0, 0, 0, 0x0a]);
        assert_eq!(trace_id_lenient("0562809467078eab").len(), 16);
        let g = span_id_lenient("G");
        assert_eq!(g.len(), 8);
        assert_eq!(g, span_id_lenient("G"));
        assert_ne!(g, span_id_lenient("H"));
        assert_eq!(span_id_lenient("0102030405060708aa").len(), 9);
    }
}
