//! Log setup: one subscriber on stderr (pretty or JSON), `RUST_LOG` as the
//! filter, and dependency crates muted whatever the filter says.

use super::LogFormat;

/// Crates whose own logs are never shown, whatever `RUST_LOG` says (even
/// `serenity::http=trace`): serenity's request spans record the webhook
/// route with its token, and the HTTP, TLS and SMTP stacks log connection
/// details at debug and trace. The bot logs every outcome itself.
pub const MUTED_TARGETS: &[&str] = &[
    "serenity",
    "reqwest",
    "hyper",
    "hyper_util",
    "h2",
    "rustls",
    "tokio_rustls",
    "lettre",
    "tower",
    "tungstenite",
    "tokio_tungstenite",
];

/// True when `target` (a tracing target or a `log` record's module path)
/// belongs to one of the [`MUTED_TARGETS`] crates.
pub fn is_muted(target: &str) -> bool {
    MUTED_TARGETS.iter().any(|muted| {
        target
            .strip_prefix(muted)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    })
}

pub(super) fn init_logging(format: LogFormat) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A global filter after the env filter: no directive can re-enable these.
    let muted = tracing_subscriber::filter::filter_fn(|meta| !is_muted(meta.target()));
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter).with(muted);
    let _ = match format {
        LogFormat::Pretty => registry.with(fmt.with_target(false)).try_init(),
        LogFormat::Json => registry.with(fmt.json()).try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::is_muted;

    #[test]
    fn dependency_logs_are_muted_by_crate_not_by_prefix() {
        for target in [
            "serenity",
            "serenity::http::request",
            "hyper_util::client",
            "rustls::conn",
        ] {
            assert!(is_muted(target), "{target}");
        }
        for target in [
            "crayon_export_bot::app::poll",
            "serenity_extra",
            "hyperion",
            "lettres",
        ] {
            assert!(!is_muted(target), "{target}");
        }
    }
}
