//! Turning async cases into libtest-mimic trials, and the `main` of every runner.

use crate::TestResult;
use libtest_mimic::{Arguments, Failed, Trial};
use std::{fmt::Display, future::Future, time::Duration};

/// The longest one case may run before it counts as hung.
pub const CASE_TIMEOUT: Duration = Duration::from_secs(120);

/// A test named `name` that runs `case` on a fresh multi-thread tokio runtime, failing
/// on error, panic or [`CASE_TIMEOUT`].
pub fn async_trial<F, Fut>(name: impl Into<String>, case: F) -> Trial
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = TestResult>,
{
    async_trial_within(name, CASE_TIMEOUT, case)
}

/// As [`async_trial`], but failing after `limit` instead of [`CASE_TIMEOUT`] (for runs
/// whose length is configured, such as soaks).
pub fn async_trial_within<F, Fut, E>(name: impl Into<String>, limit: Duration, case: F) -> Trial
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), E>>,
    E: Display,
{
    Trial::test(name, move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Failed::from(format!("cannot build runtime: {e}")))?;
        let outcome = rt.block_on(async { tokio::time::timeout(limit, case()).await });
        rt.shutdown_timeout(Duration::from_secs(2));
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Failed::from(e.to_string())),
            Err(_) => Err(Failed::from(format!("hung: no result within {limit:?}"))),
        }
    })
}

/// Runs `trials` with the command-line arguments, then `cleanup` (stop servers), then
/// exits with libtest's exit code.
pub fn run_main(trials: Vec<Trial>, cleanup: impl FnOnce()) -> ! {
    let args = Arguments::from_args();
    let conclusion = libtest_mimic::run(&args, trials);
    cleanup();
    conclusion.exit()
}
