//! The OAuth2 token: its answer's two spellings, its lifetime and when it
//! is renewed.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::{CrayonError, TOKEN};
use crate::secret::Secret;

/// Lifetime assumed when the token answer has no `ExpiresIn`.
pub(super) const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// Upper bound on a lifetime, so a silly `ExpiresIn` cannot overflow `Instant`.
pub(super) const MAX_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
pub(super) const MAX_RENEW_MARGIN: Duration = Duration::from_secs(60);

/// A bearer token and when it stops being usable.
#[derive(Debug)]
pub(super) struct CachedToken {
    pub(super) value: Secret,
    pub(super) lifetime: Duration,
    pub(super) expires_at: Instant,
}

impl CachedToken {
    pub(super) fn new(value: Secret, lifetime: Duration) -> Self {
        let expires_at = Instant::now() + lifetime;
        CachedToken {
            value,
            lifetime,
            expires_at,
        }
    }

    /// Usable while more than min(60 s, lifetime / 10) remains.
    pub(super) fn is_usable(&self, now: Instant) -> bool {
        let margin = MAX_RENEW_MARGIN.min(self.lifetime / 10);
        self.expires_at.saturating_duration_since(now) > margin
    }
}

/// Reads either spelling of the token answer. No error built here quotes the
/// body: it holds the token.
pub(super) fn parse_token(body: &[u8], status: u16) -> Result<CachedToken, CrayonError> {
    let malformed = |reason: String| CrayonError::Malformed {
        endpoint: TOKEN,
        reason,
    };
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        malformed(format!(
            "not JSON ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    let Value::Object(map) = value else {
        return Err(malformed("the answer is not a JSON object".to_owned()));
    };
    let field = |name: &str, alias: &str| map.get(name).or_else(|| map.get(alias));
    if field("Error", "error").is_some_and(is_set) {
        return Err(CrayonError::CredentialsRefused { status });
    }
    let token = match field("AccessToken", "access_token") {
        Some(Value::String(token)) if !token.is_empty() => token,
        _ => {
            return Err(malformed(
                "it has no AccessToken (or access_token)".to_owned(),
            ))
        }
    };
    let lifetime = parse_lifetime(field("ExpiresIn", "expires_in")).ok_or_else(|| {
        malformed("ExpiresIn (or expires_in) is not a number of seconds".to_owned())
    })?;
    Ok(CachedToken::new(Secret::new(token.as_str()), lifetime))
}

/// An `Error` field counts when it says something (not null, "" or false).
fn is_set(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(set) => *set,
        Value::String(text) => !text.trim().is_empty(),
        _ => true,
    }
}

/// `ExpiresIn` as a number or numeric string; absent or null means one hour.
pub(super) fn parse_lifetime(value: Option<&Value>) -> Option<Duration> {
    let seconds = match value {
        None | Some(Value::Null) => return Some(DEFAULT_LIFETIME),
        Some(Value::Number(n)) => n.as_f64()?,
        Some(Value::String(text)) => text.trim().parse::<f64>().ok()?,
        Some(_) => return None,
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return None;
    }
    Some(Duration::from_secs_f64(
        seconds.min(MAX_LIFETIME.as_secs_f64()),
    ))
}
