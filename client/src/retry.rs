//! Trying a call again while the server refuses it for load (503 `busy`, 429 `over_quota`;
//! not 503 `compute_timeout`: a job past the deadline would run past it again), after the `Retry-After` it names plus up to a second, so refused
//! clients do not all come back at once.

use crate::ClientError;
use std::future::Future;
use std::time::Duration;

/// Most retries of one call.
const MAX_RETRIES: usize = 20;

/// Longest wait between two tries, whatever `Retry-After` says.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// Whether the server refused for load, and how long it asked to wait.
fn refused_for_load(e: &ClientError) -> Option<Duration> {
    match e {
        ClientError::Server {
            kind, retry_after, ..
        } if matches!(kind.as_str(), "busy" | "over_quota") => {
            Some(Duration::from_secs(retry_after.unwrap_or(1).max(1)).min(MAX_WAIT))
        }
        _ => None,
    }
}

/// Runs `call` until it is not refused for load, at most [`MAX_RETRIES`] more times.
pub(crate) async fn retrying<T, F, Fut>(mut call: F) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let mut tries = 0;
    loop {
        let answer = call().await;
        match answer.as_ref().err().and_then(refused_for_load) {
            Some(wait) if tries < MAX_RETRIES => {
                tries += 1;
                use rand::Rng;
                let jitter = Duration::from_millis(rand::thread_rng().gen_range(0..1000));
                tokio::time::sleep(wait + jitter).await;
            }
            _ => return answer,
        }
    }
}
