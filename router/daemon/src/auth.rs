//! The API's bearer token.
//!
//! The API listens on loopback by default, where anyone on the machine may
//! use it (as with dtnd). Listening anywhere else needs `allow_remote = true`
//! and always a token: `[api] token_file = "..."` names one (a file only its
//! owner may read), or ferryd generates `<data_dir>/api-token` (mode 0600).
//! With a token, every request — websocket upgrades included — must carry
//! `Authorization: Bearer <token>`; any other gets 401 before a handler runs,
//! so it has no effect. A token file on a loopback API is enforced too.
//! The token is never logged.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use rand::RngCore;
use zeroize::Zeroizing;

/// The generated token's file in the data folder.
pub const TOKEN_FILE: &str = "api-token";

/// Where the API's token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// No token: a loopback API without `token_file`.
    None,
    /// `[api] token_file`.
    File(PathBuf),
    /// `<data_dir>/api-token`, generated if absent (a non-loopback API
    /// without `token_file`).
    Generated,
}

/// Why the token cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error("API token file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("API token file {path} has mode {mode:o}: group or others may read it; `chmod 600 {path}`")]
    Permissions { path: PathBuf, mode: u32 },
    #[error("API token file {path} holds no token (at least 16 printable characters on one line)")]
    Empty { path: PathBuf },
}

/// The token requests must present.
#[derive(Clone)]
pub struct Token(Arc<Zeroizing<String>>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// The token `source` names, reading or generating its file.
    pub fn load(source: &TokenSource, data_dir: &Path) -> Result<Option<Token>, AuthError> {
        match source {
            TokenSource::None => Ok(None),
            TokenSource::File(path) => read(path).map(Some),
            TokenSource::Generated => {
                let path = data_dir.join(TOKEN_FILE);
                if !path.exists() {
                    generate(&path)?;
                    tracing::info!(path = %path.display(), "generated the API token (clients send it as a bearer token)");
                }
                read(&path).map(Some)
            }
        }
    }

    /// A token from text (tests).
    pub fn from_text(text: &str) -> Token {
        Token(Arc::new(Zeroizing::new(text.to_owned())))
    }

    /// Whether an `Authorization` header value presents this token. The
    /// comparison takes the same time wherever the first difference is.
    fn admits(&self, authorization: &[u8]) -> bool {
        let Some(presented) = authorization.strip_prefix(b"Bearer ") else { return false };
        let want = self.0.as_bytes();
        if presented.len() != want.len() {
            return false;
        }
        presented.iter().zip(want).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

fn read(path: &Path) -> Result<Token, AuthError> {
    let io = |source| AuthError::Io { path: path.to_owned(), source };
    let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(AuthError::Permissions { path: path.to_owned(), mode });
    }
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
    let token = text.trim();
    if token.len() < 16 || token.contains(char::is_whitespace) || !token.chars().all(|c| c.is_ascii_graphic()) {
        return Err(AuthError::Empty { path: path.to_owned() });
    }
    Ok(Token::from_text(token))
}

fn generate(path: &Path) -> Result<(), AuthError> {
    let io = |source| AuthError::Io { path: path.to_owned(), source };
    let mut raw = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(raw.as_mut());
    let text: Zeroizing<String> = Zeroizing::new(raw.iter().map(|b| format!("{b:02x}")).collect::<String>() + "\n");
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)
}

/// `router` with every route behind the token.
pub fn require(router: Router, token: Token) -> Router {
    router.layer(axum::middleware::from_fn_with_state(token, check))
}

async fn check(State(token): State<Token>, request: Request, next: Next) -> Response {
    let admitted = request.headers().get(header::AUTHORIZATION).is_some_and(|v| token.admits(v.as_bytes()));
    if !admitted {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "This API needs `Authorization: Bearer <token>` (ferry: FERRY_TOKEN or --token-file)\n",
        )
            .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_compared_whole() {
        let t = Token::from_text("0123456789abcdef0123");
        assert!(t.admits(b"Bearer 0123456789abcdef0123"));
        for bad in [
            &b"Bearer 0123456789abcdef012"[..],
            b"Bearer 0123456789abcdef01234",
            b"0123456789abcdef0123",
            b"Basic x",
            b"",
        ] {
            assert!(!t.admits(bad), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn generated_token_files_are_private_and_configured_ones_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let t = Token::load(&TokenSource::Generated, dir.path()).unwrap().unwrap();
        let path = dir.path().join(TOKEN_FILE);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let again = Token::load(&TokenSource::Generated, dir.path()).unwrap().unwrap();
        assert_eq!(t.0.as_str(), again.0.as_str(), "kept across restarts");

        let mine = dir.path().join("mine");
        std::fs::write(&mine, "short\n").unwrap();
        std::fs::set_permissions(&mine, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(Token::load(&TokenSource::File(mine.clone()), dir.path()), Err(AuthError::Empty { .. })));
        std::fs::write(&mine, "a-long-enough-token-1234\n").unwrap();
        assert!(Token::load(&TokenSource::File(mine.clone()), dir.path()).unwrap().is_some());
        std::fs::set_permissions(&mine, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = Token::load(&TokenSource::File(mine), dir.path()).unwrap_err().to_string();
        assert!(e.contains("chmod 600") && !e.contains("a-long-enough"), "{e}");
        assert_eq!(Token::load(&TokenSource::None, dir.path()).unwrap().map(|_| ()), None);
    }
}
