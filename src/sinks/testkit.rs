//! Test-only sinks: a sink that answers from a script, for unit tests of
//! the dispatcher's retry logic and timing (the wire is tested with each
//! real sink). Not a kind: it is never built from a config.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::{SendError, SendFuture, Sink};
use crate::domain::Delivery;

/// Answers each send with the next scripted result (then `Ok`), and records
/// when each send happened on tokio's clock; optionally panics first.
#[derive(Default)]
pub struct ScriptedSink {
    script: Mutex<VecDeque<Result<(), SendError>>>,
    calls: Mutex<Vec<tokio::time::Instant>>,
    panics: AtomicUsize,
}

impl ScriptedSink {
    /// A sink that answers with `script`, in order.
    pub fn new(script: Vec<Result<(), SendError>>) -> Self {
        ScriptedSink {
            script: Mutex::new(script.into()),
            calls: Mutex::default(),
            panics: AtomicUsize::new(0),
        }
    }

    /// A sink whose first `times` sends panic (a bug in a sink, as the
    /// dispatcher must survive it), then answers with `script`.
    pub fn panicking_first(times: usize, script: Vec<Result<(), SendError>>) -> Self {
        let sink = Self::new(script);
        sink.panics.store(times, Ordering::SeqCst);
        sink
    }

    /// When each send happened.
    pub fn calls(&self) -> Vec<tokio::time::Instant> {
        self.calls.lock().unwrap().clone()
    }

    /// Records the call and returns the next scripted answer.
    fn answer(&self) -> Result<(), SendError> {
        self.calls.lock().unwrap().push(tokio::time::Instant::now());
        let panics = self
            .panics
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if panics.is_ok() {
            panic!("scripted sink: a panicking send");
        }
        self.script.lock().unwrap().pop_front().unwrap_or(Ok(()))
    }
}

impl Sink for ScriptedSink {
    fn send<'a>(&'a self, _: &'a Delivery) -> SendFuture<'a> {
        Box::pin(std::future::ready(self.answer()))
    }
}
