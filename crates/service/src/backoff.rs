//! Retrying with exponential backoff until it works or the service stops:
//! the loop every service had its own copy of.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Delays between retries, doubling from `first` up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `first`, doubles each wait, never beyond `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        Backoff {
            first,
            max,
            next: first.min(max),
        }
    }

    /// The delay the next [`Backoff::wait`] sleeps (for "retrying in" logs).
    pub fn delay(&self) -> Duration {
        self.next
    }

    /// Back to the first delay, after a success.
    pub fn reset(&mut self) {
        self.next = self.first.min(self.max);
    }

    /// The current delay, doubling it for the next time (for a caller that
    /// sleeps in its own `select!`).
    pub fn take(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    /// Sleeps the current delay and doubles it. False if `token` was
    /// cancelled first: the caller stops retrying.
    pub async fn wait(&mut self, token: &CancellationToken) -> bool {
        let delay = self.take();
        tokio::select! {
            () = token.cancelled() => false,
            () = tokio::time::sleep(delay) => true,
        }
    }

    /// Runs `attempt` until it succeeds, calling `failed` with each error
    /// and the delay before the next try. `None` if `token` is cancelled
    /// first (also while an attempt runs).
    pub async fn retry<T, E, Fut>(
        &mut self,
        token: &CancellationToken,
        mut attempt: impl FnMut() -> Fut,
        mut failed: impl FnMut(&E, Duration),
    ) -> Option<T>
    where
        Fut: Future<Output = Result<T, E>>,
    {
        loop {
            let outcome = tokio::select! {
                () = token.cancelled() => return None,
                r = attempt() => r,
            };
            match outcome {
                Ok(value) => {
                    self.reset();
                    return Some(value);
                }
                Err(error) => {
                    failed(&error, self.delay());
                    if !self.wait(token).await {
                        return None;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::time::Duration;

    use tokio_util::sync::CancellationToken;

    use super::Backoff;

    #[tokio::test(start_paused = true)]
    async fn delays_double_up_to_the_cap_and_reset_after_success() {
        let token = CancellationToken::new();
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let (tries, delays) = (Cell::new(0), std::cell::RefCell::new(Vec::new()));
        let started = tokio::time::Instant::now();
        let value = backoff
            .retry(
                &token,
                || {
                    tries.set(tries.get() + 1);
                    let n = tries.get();
                    async move { if n < 5 { Err("down") } else { Ok(n) } }
                },
                |error, delay| {
                    assert_eq!(*error, "down");
                    delays.borrow_mut().push(delay.as_millis());
                },
            )
            .await;
        assert_eq!(value, Some(5));
        assert_eq!(*delays.borrow(), [100, 200, 350, 350]);
        assert_eq!(started.elapsed(), Duration::from_millis(1000));
        assert_eq!(backoff.delay(), Duration::from_millis(100), "reset");
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_token_ends_the_retries() {
        let token = CancellationToken::new();
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        let stop = token.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(2500)).await;
            stop.cancel();
        });
        let value: Option<()> = backoff
            .retry(&token, || async { Err::<(), _>(()) }, |(), _| {})
            .await;
        assert_eq!(value, None);
        assert!(!backoff.wait(&token).await);
    }
}
