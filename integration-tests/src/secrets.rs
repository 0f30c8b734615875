//! Catching secrets where they must not be: every `tracing` event and span field
//! recorded while a scenario runs, and every text a test collects (`Debug` and
//! `Display` of configs, errors, clients, CLI output).

use std::{
    fmt::Write as _,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};
use tracing::{
    field::{Field, Visit},
    span, Event, Metadata, Subscriber,
};

/// A `tracing` subscriber that records every event and span, at every level, as
/// text: target, message and fields.
#[derive(Debug, Clone, Default)]
pub struct Capture {
    text: Arc<Mutex<String>>,
    next_span: Arc<AtomicU64>,
}

struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={value:?}", field.name());
    }
}

impl Capture {
    /// Everything recorded so far.
    pub fn text(&self) -> String {
        self.text.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// How many events and spans were recorded (lines of [`Capture::text`]).
    pub fn lines(&self) -> usize {
        self.text().lines().count()
    }

    fn push(&self, head: &str, record: impl FnOnce(&mut Fields<'_>)) {
        let mut line = head.to_owned();
        record(&mut Fields(&mut line));
        line.push('\n');
        self.text
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_str(&line);
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &span::Attributes<'_>) -> span::Id {
        let meta = span.metadata();
        self.push(&format!("span {} {}", meta.target(), meta.name()), |f| {
            span.record(f)
        });
        span::Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn record(&self, _: &span::Id, values: &span::Record<'_>) {
        self.push("record", |f| values.record(f));
    }

    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}

    fn event(&self, event: &Event<'_>) {
        let meta = event.metadata();
        self.push(&format!("{} {}", meta.level(), meta.target()), |f| {
            event.record(f)
        });
    }

    fn enter(&self, _: &span::Id) {}

    fn exit(&self, _: &span::Id) {}
}

/// Fails naming the secret's label (never the secret) and the place if any of
/// `secrets` occurs in `text`.
///
/// # Errors
/// A message saying which secret leaked where.
pub fn assert_no_secret(place: &str, text: &str, secrets: &[(&str, &str)]) -> Result<(), String> {
    for (label, secret) in secrets {
        assert!(
            secret.len() >= 8,
            "secret {label} is too short to search for"
        );
        if text.contains(secret) {
            let at = text.find(secret).unwrap_or(0);
            let context: String = text[at.saturating_sub(80)..at].chars().collect();
            return Err(format!("{label} leaked into {place}, after: {context:?}"));
        }
    }
    Ok(())
}
