//! The consistency rules (4.3, 4.4): a case passes once it has passed several times in a row
//! within a deadline, because a proxy applies configuration eventually, not at once.

use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// What one attempt showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// Counts toward the streak; the next attempt follows at once.
    Pass,
    /// Resets the streak; the next attempt follows after the pause.
    Retry(String),
    /// Ends the case as failed at once (4.4: a 200 when a failure was expected).
    Fatal(String),
}

/// How many passes in a row, within what time, pausing how long after a miss.
#[derive(Debug, Clone, Copy)]
pub struct Streak {
    pub needed: usize,
    pub deadline: Duration,
    pub pause: Duration,
}

impl Streak {
    /// 4.3: three in a row within 30 s, 1 s after a miss.
    pub const CASE: Streak = Streak {
        needed: 3,
        deadline: Duration::from_secs(30),
        pause: Duration::from_secs(1),
    };
    /// 4.4: five in a row within 30 s.
    pub const EXPECT_FAILURE: Streak = Streak {
        needed: 5,
        deadline: Duration::from_secs(30),
        pause: Duration::from_secs(1),
    };

    /// Runs `attempt` until it passes `needed` times in a row; the error is the last miss.
    /// Time is tokio's, so tests run it with paused time.
    pub async fn run<F, Fut>(self, mut attempt: F) -> Result<(), String>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Attempt>,
    {
        let start = Instant::now();
        let mut streak = 0;
        let mut last_miss = String::from("no attempt finished before the deadline");
        loop {
            match attempt().await {
                Attempt::Pass => {
                    streak += 1;
                    if streak >= self.needed {
                        return Ok(());
                    }
                }
                Attempt::Fatal(why) => return Err(why),
                Attempt::Retry(why) => {
                    streak = 0;
                    last_miss = why;
                    if start.elapsed() + self.pause > self.deadline {
                        return Err(format!(
                            "not {} passes in a row within {:?}; last: {last_miss}",
                            self.needed, self.deadline
                        ));
                    }
                    tokio::time::sleep(self.pause).await;
                }
            }
            if start.elapsed() > self.deadline {
                return Err(format!(
                    "not {} passes in a row within {:?}; last: {last_miss}",
                    self.needed, self.deadline
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    async fn replay(script: &[Attempt], streak: Streak) -> (Result<(), String>, usize) {
        let calls = Cell::new(0);
        let result = streak
            .run(|| {
                let i = calls.get();
                calls.set(i + 1);
                let next = script
                    .get(i)
                    .cloned()
                    .unwrap_or(Attempt::Retry("script ended".into()));
                async move { next }
            })
            .await;
        (result, calls.get())
    }

    #[tokio::test(start_paused = true)]
    async fn three_in_a_row_passes() {
        let (r, calls) = replay(&[Attempt::Pass, Attempt::Pass, Attempt::Pass], Streak::CASE).await;
        assert_eq!(r, Ok(()));
        assert_eq!(calls, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_miss_resets_the_streak_and_waits() {
        let start = Instant::now();
        let script = [
            Attempt::Pass,
            Attempt::Pass,
            Attempt::Retry("flaky".into()),
            Attempt::Pass,
            Attempt::Pass,
            Attempt::Pass,
        ];
        let (r, calls) = replay(&script, Streak::CASE).await;
        assert_eq!(r, Ok(()));
        assert_eq!(calls, 6);
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_the_deadline_with_the_last_miss() {
        let start = Instant::now();
        let (r, calls) = replay(&[], Streak::CASE).await;
        let err = r.expect_err("never passes");
        assert!(err.contains("script ended"), "{err}");
        assert!(start.elapsed() <= Duration::from_secs(30));
        assert!(calls >= 29, "one attempt a second for 30 s, got {calls}");
    }

    #[tokio::test(start_paused = true)]
    async fn fatal_ends_at_once() {
        let (r, calls) = replay(
            &[Attempt::Pass, Attempt::Fatal("got 200".into())],
            Streak::EXPECT_FAILURE,
        )
        .await;
        assert_eq!(r, Err("got 200".into()));
        assert_eq!(calls, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn expect_failure_needs_five() {
        let script = vec![Attempt::Pass; 4];
        let (r, _) = replay(&script, Streak::EXPECT_FAILURE).await;
        assert!(r.is_err());
        let script = vec![Attempt::Pass; 5];
        let (r, _) = replay(&script, Streak::EXPECT_FAILURE).await;
        assert_eq!(r, Ok(()));
    }
}
