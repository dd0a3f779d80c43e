//! `kind = "console"`: prints the rendered `text` part to stdout, one message
//! after another (never interleaved).

use std::io::Write;
use std::sync::{Arc, Mutex};

use super::SendError;
use crate::domain::Delivery;

/// Where the console sink writes: the process's stdout, or a buffer in tests.
pub struct ConsoleSink {
    buffer: Option<Arc<Mutex<Vec<u8>>>>,
}

impl ConsoleSink {
    /// The sink used in production: the process's stdout.
    pub fn stdout() -> Self {
        ConsoleSink { buffer: None }
    }

    /// A sink writing into `buffer`, so tests can read what was printed.
    pub fn buffer(buffer: Arc<Mutex<Vec<u8>>>) -> Self {
        ConsoleSink {
            buffer: Some(buffer),
        }
    }

    /// Prints the message; a closed stdout is a permanent failure.
    pub fn send(&self, delivery: &Delivery) -> Result<(), SendError> {
        let mut text = delivery.message.part("text").trim_end().to_string();
        text.push('\n');
        let result = match &self.buffer {
            Some(buffer) => {
                let mut buffer = buffer.lock().unwrap_or_else(|e| e.into_inner());
                buffer.write_all(text.as_bytes())
            }
            None => {
                let mut out = std::io::stdout().lock();
                out.write_all(text.as_bytes()).and_then(|()| out.flush())
            }
        };
        result.map_err(|e| SendError::Permanent(format!("cannot write to the console: {e}")))
    }
}
