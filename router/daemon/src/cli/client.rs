//! A blocking client for ferryd's HTTP API (dtn7-rs compatible, plus the
//! `/ferry/...` extensions), with errors that say what to do about them.

use std::error::Error as _;
use std::io;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use reqwest::blocking::{Client, Response};
use reqwest::StatusCode;

/// How long to wait for a TCP connection to ferryd.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may take in all (a large `/send` included).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// ferryd's API at one base URL.
pub struct Api {
    base: String,
    http: Client,
    /// Sent as `Authorization: Bearer` when ferryd's API needs it.
    token: Option<String>,
}

/// What ferryd answered, once the status was success.
pub struct Answer {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as text (lossy: ferryd's text answers are UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).trim_end().to_owned()
    }

    /// The body as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).context("ferryd's answer is not the JSON expected")
    }
}

impl Api {
    /// A client for the API at `base` (`http://host:port`, trailing '/' allowed).
    pub fn new(base: &str) -> Result<Api> {
        let base = base.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!("--api {base}: expected an http:// URL, such as {}", super::DEFAULT_API);
        }
        let http = Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            // The API is local; a proxy from the environment would only get in the way.
            .no_proxy()
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(Api { base, http, token: None })
    }

    /// This client, sending `token` with every request.
    pub fn with_token(mut self, token: Option<String>) -> Api {
        self.token = token;
        self
    }

    fn authorize(&self, request: reqwest::blocking::RequestBuilder) -> reqwest::blocking::RequestBuilder {
        match &self.token {
            Some(t) => request.bearer_auth(t),
            None => request,
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET path` (path includes the query); fails on a non-success status.
    pub fn get(&self, path: &str) -> Result<Answer> {
        let resp = self.authorize(self.http.get(self.url(path))).send().map_err(|e| self.unreachable(e))?;
        self.check(path, resp)
    }

    /// `GET path`, but a 404 is `None` instead of an error.
    pub fn get_optional(&self, path: &str) -> Result<Option<Answer>> {
        let resp = self.authorize(self.http.get(self.url(path))).send().map_err(|e| self.unreachable(e))?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        self.check(path, resp).map(Some)
    }

    /// `POST path` with `body`; fails on a non-success status.
    pub fn post(&self, path: &str, body: Vec<u8>) -> Result<Answer> {
        let resp = self.authorize(self.http.post(self.url(path))).body(body).send().map_err(|e| self.unreachable(e))?;
        self.check(path, resp)
    }

    /// [`Api::post`] with a progress bar over the upload.
    pub fn post_with_progress(&self, path: &str, body: Vec<u8>, bar: &indicatif::ProgressBar) -> Result<Answer> {
        let len = body.len() as u64;
        bar.set_length(len);
        let reader = bar.wrap_read(io::Cursor::new(body));
        let body = reqwest::blocking::Body::sized(reader, len);
        let resp = self.authorize(self.http.post(self.url(path))).body(body).send().map_err(|e| self.unreachable(e))?;
        bar.finish_and_clear();
        self.check(path, resp)
    }

    /// [`Api::get_optional`] with a progress bar over the download, made by
    /// `bar` from the answer's Content-Length (0 when it has none).
    pub fn get_optional_with_progress(
        &self,
        path: &str,
        bar: impl FnOnce(u64) -> indicatif::ProgressBar,
    ) -> Result<Option<Answer>> {
        let resp = self.authorize(self.http.get(self.url(path))).send().map_err(|e| self.unreachable(e))?;
        let status = resp.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return self.check(path, resp).map(Some);
        }
        let bar = bar(resp.content_length().unwrap_or(0));
        let mut body = Vec::with_capacity(resp.content_length().unwrap_or(0).min(1 << 30) as usize);
        io::Read::read_to_end(&mut bar.wrap_read(resp), &mut body)
            .map_err(|e| anyhow!("reading ferryd's answer from {}: {e}", self.base))?;
        bar.finish_and_clear();
        Ok(Some(Answer { status, body }))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn check(&self, path: &str, resp: Response) -> Result<Answer> {
        let status = resp.status();
        let body = resp.bytes().map_err(|e| self.unreachable(e))?.to_vec();
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            let text = text.trim();
            let endpoint = path.split('?').next().unwrap_or(path);
            if status == StatusCode::UNAUTHORIZED {
                let how = if self.token.is_some() {
                    "the token given is not this ferryd's"
                } else {
                    "set FERRY_TOKEN, or --token-file FILE (ferryd's [api] token_file, or <data_dir>/api-token)"
                };
                bail!("ferryd refused {endpoint}: 401 Unauthorized: {how}");
            }
            if text.is_empty() {
                bail!("ferryd refused {endpoint}: {status}");
            }
            bail!("ferryd refused {endpoint}: {status}: {text}");
        }
        Ok(Answer { status, body })
    }

    /// Turns a transport error into a message a person can act on.
    fn unreachable(&self, err: reqwest::Error) -> anyhow::Error {
        describe_transport_error(&self.base, &err)
    }
}

/// The API token to send: `FERRY_TOKEN`, else the first line of
/// `token_file` (`--token-file`, `FERRY_TOKEN_FILE`), else the token ferryd
/// generates in the default data folder, if it is there and readable.
pub fn token(token_file: Option<&std::path::Path>) -> Result<Option<String>> {
    if let Some(t) = std::env::var("FERRY_TOKEN").ok().filter(|t| !t.trim().is_empty()) {
        return Ok(Some(t.trim().to_owned()));
    }
    let read = |p: &std::path::Path| std::fs::read_to_string(p).map(|t| t.trim().to_owned());
    if let Some(p) = token_file {
        let t = read(p).with_context(|| format!("cannot read the API token file {}", p.display()))?;
        return Ok(Some(t));
    }
    let default = crate::config::default_data_dir().map(|d| d.join(crate::auth::TOKEN_FILE));
    Ok(default.and_then(|p| read(&p).ok()).filter(|t| !t.is_empty()))
}

/// "cannot reach ferryd at URL: connection refused — is ferryd running?" and
/// its kin, from a reqwest error.
pub fn describe_transport_error(base: &str, err: &reqwest::Error) -> anyhow::Error {
    if err.is_timeout() {
        return anyhow!("ferryd at {base} did not answer in time");
    }
    let io_kind = io_error_kind(err);
    if err.is_connect() || io_kind.is_some() {
        let why = match io_kind {
            Some(io::ErrorKind::ConnectionRefused) => "connection refused".to_owned(),
            Some(io::ErrorKind::ConnectionReset) => "connection reset".to_owned(),
            Some(io::ErrorKind::ConnectionAborted) => "connection aborted".to_owned(),
            Some(io::ErrorKind::AddrNotAvailable) => "address not available".to_owned(),
            Some(kind) => kind.to_string(),
            None => innermost(err),
        };
        return anyhow!("cannot reach ferryd at {base}: {why} — is ferryd running?");
    }
    anyhow!("request to ferryd at {base} failed: {}", innermost(err))
}

fn io_error_kind(err: &reqwest::Error) -> Option<io::ErrorKind> {
    let mut source = err.source();
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(io.kind());
        }
        source = e.source();
    }
    None
}

fn innermost(err: &reqwest::Error) -> String {
    let mut last = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        last = e.to_string();
        source = e.source();
    }
    last
}
