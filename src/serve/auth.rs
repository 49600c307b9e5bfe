//! Keeping strangers out: bearer tokens (ingest and API separately, each read from a file)
//! compared in constant time, and the API's `Host` check against DNS rebinding.

use std::path::Path;
use std::sync::Arc;

/// A bearer token. Its value is never logged (its `Debug` says only that it is set).
#[derive(Clone)]
pub struct Token(Arc<[u8]>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(set)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: the token file is empty")]
    Empty { path: String },
}

impl Token {
    /// Reads a token file (surrounding whitespace, such as a trailing newline, is not part of
    /// the token).
    pub fn from_file(path: &Path) -> Result<Token, TokenError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let t = text.trim();
        if t.is_empty() {
            return Err(TokenError::Empty {
                path: path.display().to_string(),
            });
        }
        Ok(Token(t.as_bytes().into()))
    }

    #[cfg(test)]
    fn of(s: &str) -> Token {
        Token(s.as_bytes().into())
    }

    /// Whether an `Authorization` header value carries this token (`Bearer <token>`, the
    /// scheme in any case as RFC 7235 has it, spaces around the token ignored, as hyper
    /// already trims them over HTTP). The comparison takes the same time wherever the first
    /// difference is.
    pub fn accepts(&self, authorization: Option<&[u8]>) -> bool {
        let Some(v) = authorization else {
            return false;
        };
        if v.len() < 7 || !v[..7].eq_ignore_ascii_case(b"bearer ") {
            return false;
        }
        let given = v[7..].trim_ascii();
        let want = &self.0;
        let mut diff = u8::from(given.len() != want.len());
        for (i, w) in want.iter().enumerate() {
            diff |= w ^ given.get(i).copied().unwrap_or(0);
        }
        diff == 0
    }
}

/// A tonic interceptor that lets through only calls carrying the token (when one is set):
/// UNAUTHENTICATED otherwise, before the service sees (or counts) anything.
#[derive(Clone, Debug)]
pub struct Bearer(pub Option<Token>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        match &self.0 {
            None => Ok(req),
            Some(t) => {
                let mut all = req.metadata().get_all("authorization").iter();
                let v = all.next().map(|v| v.as_bytes());
                // Two credentials are refused, not read first-wins.
                if all.next().is_none() && t.accepts(v) {
                    Ok(req)
                } else {
                    Err(tonic::Status::unauthenticated(
                        "a bearer token is required (authorization: Bearer <token>)",
                    ))
                }
            }
        }
    }
}

/// Axum middleware: 401 with `WWW-Authenticate: Bearer` unless the request carries the
/// token (when one is set).
pub async fn require_bearer(
    axum::extract::State(token): axum::extract::State<Option<Token>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if let Some(t) = &token {
        let mut all = req
            .headers()
            .get_all(axum::http::header::AUTHORIZATION)
            .iter();
        let v = all.next().map(|v| v.as_bytes());
        // Two credentials are refused, not read first-wins.
        if all.next().is_some() || !t.accepts(v) {
            return (
                axum::http::StatusCode::UNAUTHORIZED,
                [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
                axum::Json(crate::api::dto::ErrorDoc {
                    error: "a bearer token is required".into(),
                }),
            )
                .into_response();
        }
    }
    next.run(req).await
}

/// Whether a request's `Host` may reach the API: an IP literal (which no rebinding page can
/// send), `localhost`, or one of the configured names. The port does not matter.
pub fn host_allowed(host: Option<&str>, names: &[String]) -> bool {
    let Some(h) = host else {
        // HTTP/1.0 without Host: not a browser.
        return true;
    };
    let name = match h.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => h.rsplit_once(':').map_or(h, |(n, p)| {
            if p.bytes().all(|b| b.is_ascii_digit()) {
                n
            } else {
                h
            }
        }),
    };
    name.parse::<std::net::IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || names
            .iter()
            .any(|n| n == "*" || n.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_compared_whole() {
        let t = Token::of("s3cret");
        assert!(t.accepts(Some(b"Bearer s3cret")));
        assert!(!t.accepts(Some(b"Bearer s3cre")));
        assert!(!t.accepts(Some(b"Bearer s3cret2")));
        assert!(!t.accepts(Some(b"s3cret")));
        assert!(!t.accepts(None));
        // The scheme in any case; spaces around the token, as HTTP trims them.
        assert!(t.accepts(Some(b"BEARER s3cret")));
        assert!(t.accepts(Some(b"Bearer s3cret ")));
        assert!(!t.accepts(Some(b"Basic s3cret")));
        assert!(!t.accepts(Some(b"Bearer")));
        assert_eq!(format!("{t:?}"), "Token(set)");
    }

    #[test]
    fn hosts_that_a_rebinding_page_cannot_send_are_allowed() {
        let names = vec!["chokepoint.example".to_owned()];
        for ok in [
            "127.0.0.1:8787",
            "localhost:8787",
            "[::1]:8787",
            "10.1.2.3",
            "chokepoint.example:8787",
            "CHOKEPOINT.example",
        ] {
            assert!(host_allowed(Some(ok), &names), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8787",
            "127.0.0.1.evil.example",
        ] {
            assert!(!host_allowed(Some(bad), &names), "{bad}");
        }
    }
}
