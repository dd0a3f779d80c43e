//! `send-test --sink NAME [--to WHO]`: one clearly marked test message.

use std::path::Path;

use crate::probe;

use super::{load, Failure};

/// Sends the test message and prints what the sink answered.
pub(super) async fn send_test(path: &Path, sink: &str, to: Option<&str>) -> Result<(), Failure> {
    let config = load(path)?;
    let ok = probe::send_test(&config, sink, to)
        .await
        .map_err(Failure::of)?;
    outln!("{ok}");
    Ok(())
}
