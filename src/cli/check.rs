//! `check` and `check --online`: validate the config, then optionally ask
//! each remote end whether it answers.

use crate::config::Config;
use crate::probe;

use super::{load, Failure};

/// `check`: problems exit 2, warnings only print; `--online` then probes.
pub(super) async fn check(path: &std::path::Path, online: bool) -> Result<(), Failure> {
    let config = load(path)?;
    let report = crate::check::check(&config);
    for warning in &report.warnings {
        outln!("warning: {warning}");
    }
    if !report.problems.is_empty() {
        let list = report.problems.join("\n");
        return Err(Failure::Usage(anyhow::anyhow!(
            "{} problem(s) in {}:\n{list}",
            report.problems.len(),
            path.display()
        )));
    }
    outln!(
        "ok: {} ({} sinks, {} routes, {} templates rendered)",
        path.display(),
        config.sinks.len(),
        config.routes.len(),
        report.rendered
    );
    if online {
        return check_online(&config).await;
    }
    Ok(())
}

/// `--online`: each remote end is asked; any failure exits 1.
async fn check_online(config: &Config) -> Result<(), Failure> {
    let mut failed = 0;
    for check in probe::online(config).await {
        match check.result {
            Ok(detail) => outln!("ok: {}: {detail}", check.what),
            Err(reason) => {
                failed += 1;
                outln!("FAILED: {}: {reason}", check.what);
            }
        }
    }
    if failed > 0 {
        return Err(Failure::Runtime(anyhow::anyhow!(
            "{failed} online check(s) failed"
        )));
    }
    Ok(())
}
