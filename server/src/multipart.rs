//! Reading a multipart/form-data body part by part, each part within its own byte limit and
//! the whole body within one deadline, so a handler can judge the first part before it reads
//! (or refuses) the rest.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::multipart::{Multipart, MultipartError, MultipartRejection};
use axum::http::{header, HeaderMap, StatusCode};
use tokio::time::Instant;

/// Slowest upload accepted while it holds a place in a queue that others wait for, bytes/s.
pub const MIN_UPLOAD_RATE: f64 = (1 << 20) as f64;

/// Time such an upload may take beyond what [`MIN_UPLOAD_RATE`] allows.
pub const MIN_UPLOAD_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// How long a body may stay silent before it is cut off (408).
pub const SILENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a refused body may stay silent before the server stops reading it.
pub const DRAIN_IDLE: std::time::Duration = std::time::Duration::from_millis(500);

/// The longest a refused body is read for.
pub const DRAIN_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// The parts of one body, read in order.
pub struct Parts {
    mp: Multipart,
    allowed: &'static [&'static str],
    seen: Vec<String>,
    deadline: Instant,
    /// The body timeout's deadline (`deadline` may be brought forward by [`Parts::hurry`]).
    body_deadline: Instant,
}

fn multipart_error(e: MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large(format!("request body over the limit: {e}"))
    } else {
        ApiError::bad_request("bad_multipart", e.body_text())
    }
}

impl Parts {
    /// The body's parts, named among `allowed`, all to be read within `timeout`; a body
    /// whose `Content-Length` says it is over `limit` bytes is refused with 413 unread.
    pub fn new(
        headers: &HeaderMap,
        multipart: Result<Multipart, MultipartRejection>,
        allowed: &'static [&'static str],
        limit: usize,
        timeout: std::time::Duration,
    ) -> Result<Self, ApiError> {
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(n) = declared.filter(|&n| n > limit as u64) {
            return Err(ApiError::too_large(format!(
                "the body is {n} bytes, over this route's limit of {limit}"
            )));
        }
        let mp = multipart.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large(format!("request body over the limit: {e}"))
            } else {
                ApiError::bad_request(
                    "bad_multipart",
                    format!("expected multipart/form-data: {e}"),
                )
            }
        })?;
        Ok(Self {
            mp,
            allowed,
            seen: Vec::new(),
            deadline: Instant::now() + timeout,
            body_deadline: Instant::now() + timeout,
        })
    }

    fn timed_out() -> ApiError {
        ApiError {
            status: StatusCode::REQUEST_TIMEOUT,
            ..ApiError::bad_request(
                "timeout",
                "the request body did not arrive within the server's body timeout",
            )
        }
    }

    /// Waits for `f` until the body's deadline, or [`SILENCE`] without data.
    async fn timed<T>(
        deadline: Instant,
        f: impl std::future::Future<Output = T>,
    ) -> Result<T, ApiError> {
        tokio::time::timeout_at(deadline.min(Instant::now() + SILENCE), f)
            .await
            .map_err(|_| Self::timed_out())
    }

    /// The next part (name and bytes), refused with 413 once it passes `max` bytes; `None`
    /// after the last.
    pub async fn next(&mut self, max: usize) -> Result<Option<(String, Bytes)>, ApiError> {
        let field = Self::timed(self.deadline, self.mp.next_field())
            .await?
            .map_err(multipart_error)?;
        let Some(mut field) = field else {
            return Ok(None);
        };
        let name = field.name().unwrap_or_default().to_string();
        if !self.allowed.contains(&name.as_str()) {
            return Err(ApiError::bad_request(
                "bad_multipart",
                format!(
                    "unexpected part {name:?}; the parts are {}",
                    self.allowed.join(", ")
                ),
            ));
        }
        if self.seen.contains(&name) {
            return Err(ApiError::bad_request(
                "bad_multipart",
                format!("part {name:?} appears twice"),
            ));
        }
        self.seen.push(name.clone());
        let (mut chunks, mut len) = (Vec::<Bytes>::new(), 0usize);
        loop {
            let chunk = Self::timed(self.deadline, field.chunk())
                .await?
                .map_err(multipart_error)?;
            let Some(chunk) = chunk else { break };
            len += chunk.len();
            if len > max {
                return Err(ApiError::too_large(format!(
                    "part {name:?} is over {max} bytes, the most this request may carry"
                )));
            }
            chunks.push(chunk);
        }
        // One chunk (a small part) is shared as it is; several are joined once.
        let bytes = match chunks.len() {
            1 => chunks.swap_remove(0),
            _ => {
                let mut buf = Vec::with_capacity(len);
                chunks.iter().for_each(|c| buf.extend_from_slice(c));
                Bytes::from(buf)
            }
        };
        Ok(Some((name, bytes)))
    }

    /// Brings the body's deadline forward to `within` from now, if that is sooner.
    pub fn hurry(&mut self, within: std::time::Duration) {
        self.deadline = self.deadline.min(Instant::now() + within);
    }

    /// The next part, which must be `name`, within `max` bytes.
    pub async fn require(&mut self, name: &str, max: usize) -> Result<Bytes, ApiError> {
        match self.next(max).await? {
            Some((n, b)) if n == name => Ok(b),
            Some((n, _)) => Err(ApiError::bad_request(
                "bad_multipart",
                format!(
                    "part {n:?} came where {name:?} was expected (the order is {})",
                    self.allowed.join(", ")
                ),
            )),
            None => Err(ApiError::bad_request(
                "bad_multipart",
                format!("missing part {name:?}"),
            )),
        }
    }

    /// Reads what is left of the body and throws it away, until it ends, fails, passes the
    /// route's body limit, the body deadline, or stays silent for [`DRAIN_IDLE`]: after an
    /// early refusal, so that a client still sending reads the refusal instead of a broken
    /// connection (a lingering close). Nothing is kept, and no work is done on it.
    pub async fn drain(&mut self) {
        let deadline = self.body_deadline.min(Instant::now() + DRAIN_MAX);
        let _ = tokio::time::timeout_at(deadline, async {
            while let Ok(Ok(Some(mut field))) =
                tokio::time::timeout(DRAIN_IDLE, self.mp.next_field()).await
            {
                while let Ok(Ok(Some(_))) = tokio::time::timeout(DRAIN_IDLE, field.chunk()).await {}
            }
        })
        .await;
    }

    /// Checks that no part follows.
    pub async fn end(&mut self) -> Result<(), ApiError> {
        match self.next(0).await? {
            None => Ok(()),
            Some((n, _)) => Err(ApiError::bad_request(
                "bad_multipart",
                format!("part {n:?} after the last expected one"),
            )),
        }
    }
}
