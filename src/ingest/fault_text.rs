//! Addresses named in error text: an exception event's `exception.message` or a span's
//! status message.
//!
//! A refused or broken connection to a database or cache often makes no client span at all
//! (the driver fails in `connect`, before any instrumented call): all that is left is the
//! caller's span ending in ERROR, with an exception whose message says where it tried to go.
//! The drivers' messages name the peer in a handful of shapes, and this reads them:
//!
//! - `host:port` tokens: redis-py `Error 111 connecting to localhost:6379.`, Go
//!   `dial tcp 10.1.2.3:5432: connect: connection refused`, Java
//!   `Connection refused: db/10.0.0.5:5432`, URLs (`http://api:8080/x`);
//! - a quoted host and a `port N` beside it: libpq `connection to server at "db" (10.0.0.5),
//!   port 5432 failed`, urllib3 `HTTPConnectionPool(host='api', port=8080)`.
//!
//! Only candidates are returned; whether one names a known backend is for the analysis to
//! say (it knows which addresses callers' client spans used), so a false candidate costs
//! nothing.

/// Candidates kept per message.
pub const MAX_ADDRESSES: usize = 2;
/// Bytes of a message read: driver messages name the peer early; a stack trace need not be
/// scanned.
const MAX_SCAN: usize = 1024;

/// A host name or an IPv4 address, as a driver prints it: letters, digits, dots, hyphens and
/// underscores, with a letter somewhere or four dotted numbers (so `12:30:45` is no address).
fn is_host(h: &str) -> bool {
    if h.is_empty() || h.len() > 253 || h.starts_with(['.', '-']) || h.ends_with('-') {
        return false;
    }
    if !h
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        return false;
    }
    if h.bytes().any(|b| b.is_ascii_alphabetic()) {
        return true;
    }
    let parts: Vec<&str> = h.split('.').collect();
    parts.len() == 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.parse::<u8>().is_ok())
}

fn port(p: &str) -> Option<u16> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse::<u16>().ok().filter(|&p| p > 0)
}

/// `(host, port)` pairs the message names, at most [`MAX_ADDRESSES`], in order of
/// appearance, without repeats.
pub fn addresses(message: &str) -> Vec<(&str, u16)> {
    let mut text = &message[..message.len().min(MAX_SCAN)];
    while !message.is_char_boundary(text.len()) {
        text = &text[..text.len() - 1];
    }
    let mut out: Vec<(&str, u16)> = Vec::new();
    fn push<'a>(h: &'a str, p: u16, out: &mut Vec<(&'a str, u16)>) {
        if out.len() < MAX_ADDRESSES && !out.contains(&(h, p)) {
            out.push((h, p));
        }
    }
    // 1. `host:port` tokens.
    let seps = |c: char| c.is_whitespace() || "\"'(),;=<>[]{}/@|`".contains(c);
    for token in text.split(seps) {
        let token = token.trim_end_matches(['.', ':', ',', ';']);
        if let Some((h, p)) = token.rsplit_once(':') {
            if let (true, Some(p)) = (is_host(h), port(p)) {
                push(h, p, &mut out);
            }
        }
    }
    // 2. A quoted (or parenthesised) host with `port N` after it.
    if let Some(at) = find_port_keyword(text) {
        let digits: String = text[at..]
            .chars()
            .skip_while(|c| !c.is_ascii_digit())
            .take_while(char::is_ascii_digit)
            .collect();
        if let Some(p) = port(&digits) {
            for h in quoted_hosts(&text[..at]) {
                push(h, p, &mut out);
            }
        }
    }
    out
}

/// Where the word `port` is followed (after `=`, `:` or spaces) by a number.
fn find_port_keyword(text: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find("port") {
        let at = from + i;
        let after = &lower[at + 4..];
        let rest = after.trim_start_matches([' ', '=', ':']);
        let word_start = at == 0 || !lower.as_bytes()[at - 1].is_ascii_alphanumeric();
        if word_start && rest.starts_with(|c: char| c.is_ascii_digit()) {
            return Some(at);
        }
        from = at + 4;
    }
    None
}

/// Hosts in quotes or parentheses: `"db"`, `'api'`, `(10.0.0.5)`.
fn quoted_hosts(text: &str) -> impl Iterator<Item = &str> {
    let mut out = Vec::new();
    for (open, close) in [('"', '"'), ('\'', '\''), ('(', ')')] {
        let mut rest = text;
        while let Some(i) = rest.find(open) {
            let after = &rest[i + 1..];
            let Some(j) = after.find(close) else { break };
            let inner = &after[..j];
            if is_host(inner) {
                out.push(inner);
            }
            rest = &after[j + 1..];
        }
    }
    // In order of appearance.
    out.sort_by_key(|h| h.as_ptr() as usize);
    out.into_iter()
}

#[cfg(test)]
mod tests {
    use super::addresses;

    #[test]
    fn libpq_names_the_host_and_its_address() {
        let m = "connection to server at \"localhost\" (127.0.0.1), port 55432 failed: \
                 Connection refused\n\tIs the server running on that host and accepting TCP/IP \
                 connections?";
        assert_eq!(
            addresses(m),
            vec![("localhost", 55432), ("127.0.0.1", 55432)]
        );
    }

    #[test]
    fn drivers_of_other_systems() {
        assert_eq!(
            addresses("Error 111 connecting to localhost:56379. Connection refused."),
            vec![("localhost", 56379)]
        );
        assert_eq!(
            addresses("dial tcp 10.1.2.3:5432: connect: connection refused"),
            vec![("10.1.2.3", 5432)]
        );
        assert_eq!(
            addresses("java.net.ConnectException: Connection refused: orders-db/10.0.0.5:5432"),
            vec![("10.0.0.5", 5432)]
        );
        assert_eq!(
            addresses(
                "HTTPConnectionPool(host='localhost', port=58080): Max retries exceeded with url: \
                 /v1/check"
            ),
            vec![("localhost", 58080)]
        );
        assert_eq!(
            addresses("503 Server Error for url: http://bank.example:8443/pay"),
            vec![("bank.example", 8443)]
        );
    }

    #[test]
    fn times_versions_and_prose_are_no_addresses() {
        for m in [
            "deadline exceeded at 12:30:45",
            "value out of range: 3:4",
            "ratio 1:2 is not allowed",
            "",
            "port",
            "unexpected port 0 in 'x y'",
            "server closed the connection unexpectedly",
        ] {
            assert!(addresses(m).is_empty(), "{m}: {:?}", addresses(m));
        }
    }

    #[test]
    fn long_and_odd_text_is_safe() {
        let long = "é".repeat(4000) + " localhost:5432";
        assert!(addresses(&long).is_empty());
        assert_eq!(addresses("a:1 b:2 c:3"), vec![("a", 1), ("b", 2)]);
    }
}
