//! `kind = "console"`: prints the rendered `text` part to stdout, one message
//! after another (never interleaved).

use std::io::Write;

use super::registry::{KindSpec, SinkKind};
use super::{SendError, SendFuture, Sink};
use crate::config::{ConfigError, RawSink};
use crate::domain::{Delivery, EventKind};

/// The registry entry of `kind = "console"` (no settings of its own).
pub const KIND: KindSpec = KindSpec {
    name: "console",
    keys: &[],
    check,
};

fn check(_: &str, _: &RawSink) -> Result<SinkKind, ConfigError> {
    Ok(SinkKind::Console)
}

/// Writes to the process's stdout; colours only when that is a terminal.
pub struct ConsoleSink {
    colour: bool,
}

impl ConsoleSink {
    /// The sink used in production: the process's stdout.
    pub fn stdout() -> Self {
        ConsoleSink {
            colour: std::io::IsTerminal::is_terminal(&std::io::stdout()),
        }
    }

    /// Prints the message; a closed stdout is a permanent failure.
    pub fn print(&self, delivery: &Delivery) -> Result<(), SendError> {
        let mut text = printable(delivery.message.part("text").trim_end());
        if self.colour {
            text = colour_first_line(&text, delivery.event);
        }
        text.push('\n');
        let mut out = std::io::stdout().lock();
        let result = out.write_all(text.as_bytes()).and_then(|()| out.flush());
        result.map_err(|e| SendError::Permanent(format!("cannot write to the console: {e}")))
    }
}

impl Sink for ConsoleSink {
    fn send<'a>(&'a self, delivery: &'a Delivery) -> SendFuture<'a> {
        Box::pin(std::future::ready(self.print(delivery)))
    }
}

/// The rendered text without what would drive the terminal instead of being
/// shown (ESC sequences, CR, BEL, bidi overrides), keeping lines and tabs:
/// item text is already cleaned, this covers what a user template adds.
fn printable(text: &str) -> String {
    text.chars()
        .filter(|&c| c == '\n' || c == '\t' || !crate::render::is_hostile(c))
        .collect()
}

/// Bold and coloured by event (green ready, red failed, yellow queued, dim
/// removed): used only when stdout is a terminal.
fn colour_first_line(text: &str, event: EventKind) -> String {
    let code = match event {
        EventKind::Downloadable => "1;32",
        EventKind::Failed => "1;31",
        EventKind::Queued | EventKind::Alert | EventKind::Expiring => "1;33",
        EventKind::Removed => "2",
    };
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    let mut out = format!("\x1b[{code}m{first}\x1b[0m");
    if !rest.is_empty() {
        out.push('\n');
        out.push_str(rest);
    }
    out
}
