//! Rendering: the Tera templates (built-in defaults compiled into the binary,
//! overridden by `[templates] dir`), the filters the spec promises (`json`,
//! `slack_escape`, `discord_escape`, `date` in `display.timezone`) and the context every
//! template sees. Pure once built: rendering does no I/O.

use std::collections::BTreeMap;

use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{json, Value as Json};
use tera::{Context, Tera};

use builtins::BUILTINS;
pub use clean::{clean, is_hostile};
use filters::register_filters;
pub use filters::{discord_escape, slack_escape};

use crate::config::{RecipientConfig, SinkConfig};
use crate::domain::{EventKind, ExportItem, RemovedReason, RenderedMessage, StoredContext};

/// Why a template could not be loaded or rendered; messages carry the
/// template's name (file) and Tera's line and column.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot read templates folder {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("template {name}: {message}")]
    Template { name: String, message: String },
    #[error("no template for event {event} and sink {sink} (looked for {tried})")]
    Missing {
        event: EventKind,
        sink: String,
        tried: String,
    },
    #[error("template {name} rendered invalid JSON: {reason}")]
    InvalidJson { name: String, reason: String },
}

/// A platform's size budget: cuts a rendered JSON payload to the limits the
/// platform accepts; true when it changed anything. Given to the renderer by
/// the sink kind (`SinkKind::fit`), so rendering knows no platform.
pub type Fit = fn(&mut Json) -> bool;

/// The loaded templates. Cheap to share behind an `Arc`.
pub struct Renderer {
    tera: Tera,
}

/// Everything about one event that a message is rendered from.
pub struct MessageInput<'a> {
    pub event: EventKind,
    pub reason: Option<RemovedReason>,
    pub item: &'a ExportItem,
    pub previous: Option<&'a ExportItem>,
    pub nr_of_days: u32,
    pub recipient: RecipientView,
    pub portal: &'a str,
    pub now: DateTime<Utc>,
    /// The Crayon account the item belongs to (templates: `account`).
    pub account: AccountView,
}

/// The `account` template variable: which Crayon account the event is
/// from (`[accounts.NAME]`, or `default`) and its `vars`, so one template
/// can serve several customers.
#[derive(Debug, Clone, Serialize)]
pub struct AccountView {
    pub name: String,
    pub vars: BTreeMap<String, String>,
}

impl Default for AccountView {
    /// The account of a config with `[crayon]` alone.
    fn default() -> Self {
        AccountView {
            name: crate::domain::AccountId::default_account().to_string(),
            vars: BTreeMap::new(),
        }
    }
}

/// The `recipient` template variable.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RecipientView {
    pub email: Option<String>,
    pub slack_user_id: Option<String>,
    pub discord_user_id: Option<String>,
    /// Who Teams cards mention: `teams_upn`, else RequestedBy; only when it
    /// is one valid address (else no mention).
    pub teams_upn: Option<String>,
}

impl RecipientView {
    /// The directory entry for a requester, with the requester's own address
    /// as the email unless the directory redirects it.
    pub fn new(requested_by: Option<&str>, entry: Option<&RecipientConfig>) -> Self {
        RecipientView {
            email: entry
                .and_then(|e| e.email.clone())
                .or_else(|| requested_by.map(str::to_string)),
            slack_user_id: entry.and_then(|e| e.slack_user_id.clone()),
            discord_user_id: entry.and_then(|e| e.discord_user_id.clone()),
            teams_upn: entry
                .and_then(|e| e.teams_upn.as_deref())
                .or(requested_by)
                .and_then(|upn| crate::address::single_address(upn).ok())
                .map(|upn| upn.to_string()),
        }
    }
}

impl Renderer {
    /// Loads the built-ins, then every `*.tera` file of `dir` (which may
    /// override a built-in by using its name).
    pub fn new(dir: Option<&Path>, timezone: chrono_tz::Tz) -> Result<Renderer, RenderError> {
        let mut tera = Tera::default();
        tera.autoescape_on(vec![".html.tera", ".html"]);
        register_filters(&mut tera, timezone);
        for (name, source) in BUILTINS {
            add(&mut tera, name, source)?;
        }
        if let Some(dir) = dir {
            for (name, source) in read_dir(dir)? {
                add(&mut tera, &name, &source)?;
            }
        }
        Ok(Renderer { tera })
    }

    /// The template used for (event, sink, part): `E.S.P.tera`, else
    /// `E.K.P.tera` (a user file or the built-in).
    pub fn template_for(
        &self,
        event: EventKind,
        sink: &SinkConfig,
        part: &str,
    ) -> Result<String, RenderError> {
        let by_name = format!("{event}.{}.{part}.tera", sink.name);
        let by_kind = format!("{event}.{}.{part}.tera", sink.kind.name());
        [by_name, by_kind]
            .into_iter()
            .find(|name| self.tera.contains_template(name))
            .ok_or_else(|| RenderError::Missing {
                event,
                sink: sink.name.clone(),
                tried: format!(
                    "{event}.{}.{part}.tera and {event}.{}.{part}.tera",
                    sink.name,
                    sink.kind.name()
                ),
            })
    }

    /// Renders every part of the sink's message; JSON parts must parse.
    pub fn render(
        &self,
        sink: &SinkConfig,
        input: &MessageInput<'_>,
    ) -> Result<RenderedMessage, RenderError> {
        self.render_fitted(sink, input, sink.kind.fit())
    }

    /// [`Renderer::render`] with the platform's size budget given.
    pub fn render_fitted(
        &self,
        sink: &SinkConfig,
        input: &MessageInput<'_>,
        fit: Fit,
    ) -> Result<RenderedMessage, RenderError> {
        self.render_parts(&self.names(input.event), sink, context(sink, input), fit)
    }

    /// Renders the sink's message again from a context an earlier render
    /// stored ([`RenderedMessage::context`]), with whatever the caller added
    /// to it at send time (`attachment`, a digest's `entries`). The
    /// platform's size budget applies as at enqueue time.
    pub fn rerender(
        &self,
        event: EventKind,
        sink: &SinkConfig,
        context: Json,
    ) -> Result<RenderedMessage, RenderError> {
        self.render_parts(&self.names(event), sink, context, sink.kind.fit())
    }

    /// Renders a digest from its context (`crate::digest::context`) with
    /// `digest.S.P.tera`, else `digest.K.P.tera`, cut by `fit` (the
    /// platform's budget, or a no-op to measure the full size).
    pub fn render_digest(
        &self,
        sink: &SinkConfig,
        context: Json,
        fit: Fit,
    ) -> Result<RenderedMessage, RenderError> {
        let name = |sink: &SinkConfig, part: &str| {
            let tried = [
                format!("digest.{}.{part}.tera", sink.name),
                format!("digest.{}.{part}.tera", sink.kind.name()),
            ];
            let found = tried.iter().find(|n| self.tera.contains_template(n));
            found.cloned().ok_or_else(|| RenderError::Template {
                name: tried[1].clone(),
                message: format!("not found (nor {})", tried[0]),
            })
        };
        self.render_parts(&name, sink, context, fit)
    }

    /// The template lookup of `event` ([`Renderer::template_for`]) for one part.
    fn names(
        &self,
        event: EventKind,
    ) -> impl Fn(&SinkConfig, &str) -> Result<String, RenderError> + '_ {
        move |sink, part| self.template_for(event, sink, part)
    }

    /// Renders the bot's own alert (`alert.S.P.tera`, `alert.K.P.tera`).
    pub fn render_alert(
        &self,
        sink: &SinkConfig,
        alert: &AlertView,
        portal: &str,
        now: DateTime<Utc>,
    ) -> Result<RenderedMessage, RenderError> {
        let value = json!({
            "alert": alert,
            "event": EventKind::Alert.as_str(),
            "sink": { "name": sink.name, "kind": sink.kind.name(), "vars": sink.vars },
            "links": { "portal": portal },
            "bot": { "name": env!("CARGO_PKG_NAME"), "version": env!("CARGO_PKG_VERSION") },
            "now": rfc3339(now),
        });
        self.render_parts(&self.names(EventKind::Alert), sink, value, sink.kind.fit())
    }

    fn render_parts(
        &self,
        name_of: &dyn Fn(&SinkConfig, &str) -> Result<String, RenderError>,
        sink: &SinkConfig,
        value: Json,
        fit: Fit,
    ) -> Result<RenderedMessage, RenderError> {
        let context = Context::from_serialize(&value).unwrap_or_default();
        let mut message = RenderedMessage::default();
        for part in sink.kind.parts() {
            let name = name_of(sink, part)?;
            let text = self
                .tera
                .render(&name, &context)
                .map_err(|e| RenderError::Template {
                    name: name.clone(),
                    message: e.to_string(),
                })?;
            let text = if *part == "json" {
                fit_json(&name, fit, text)?
            } else {
                text
            };
            message.parts.insert((*part).to_string(), text);
        }
        message.context = Some(StoredContext::new(&value));
        Ok(message)
    }
}

/// The `alert` template variable: one of the bot's own conditions.
#[derive(Debug, Clone, Serialize)]
pub struct AlertView {
    /// `polls_failing`, `credentials_refused` or `deliveries_dead`.
    pub condition: String,
    /// `firing` or `recovered`.
    pub state: String,
    /// One line for a title or subject.
    pub summary: String,
    /// What was seen and what to do.
    pub details: String,
    /// When the condition started, RFC 3339.
    pub since: String,
}

impl AlertView {
    /// The alert `check` and `render --event alert` show: polls failing
    /// since `now`, as the service would report it.
    pub fn sample(now: DateTime<Utc>) -> AlertView {
        AlertView {
            condition: "polls_failing".into(),
            state: "firing".into(),
            summary: "Polls of the Crayon export queue are failing".into(),
            details: "Last error: HTTP 503".into(),
            since: rfc3339(now),
        }
    }
}

/// Checks that a `json` part parses and cuts it to the sink's platform
/// limits; the text is kept as written unless something had to be cut.
fn fit_json(name: &str, fit: Fit, text: String) -> Result<String, RenderError> {
    let invalid = |reason: String| RenderError::InvalidJson {
        name: name.to_string(),
        reason,
    };
    let mut payload: Json = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    if !fit(&mut payload) {
        return Ok(text);
    }
    serde_json::to_string_pretty(&payload).map_err(|e| invalid(e.to_string()))
}

fn add(tera: &mut Tera, name: &str, source: &str) -> Result<(), RenderError> {
    tera.add_raw_template(name, source)
        .map_err(|e| RenderError::Template {
            name: name.to_string(),
            message: e.to_string(),
        })
}

fn read_dir(dir: &Path) -> Result<Vec<(String, String)>, RenderError> {
    let io = |source| RenderError::Dir {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !name.ends_with(".tera") || !path.is_file() {
            continue;
        }
        let source = std::fs::read_to_string(&path).map_err(|source| RenderError::Dir {
            path: path.clone(),
            source,
        })?;
        out.push((name.to_string(), source));
    }
    out.sort();
    Ok(out)
}

/// The template context exactly as the spec lists it.
fn context(sink: &SinkConfig, input: &MessageInput<'_>) -> Json {
    json!({
        "item": item_json(input.item, input.nr_of_days),
        "previous": input.previous.map(|p| item_json(p, input.nr_of_days)),
        "event": input.event.as_str(),
        "event_reason": input.reason.map(RemovedReason::as_str),
        "recipient": input.recipient,
        "account": input.account,
        "sink": { "name": sink.name, "kind": sink.kind.name(), "vars": sink.vars },
        "links": { "portal": input.portal },
        "bot": { "name": env!("CARGO_PKG_NAME"), "version": env!("CARGO_PKG_VERSION") },
        "now": rfc3339(input.now),
        // Filled in at send time for `attach = true` sinks (#16).
        "attachment": Json::Null,
    })
}

fn item_json(item: &ExportItem, nr_of_days: u32) -> Json {
    let expires = item.expires_at(nr_of_days);
    json!({
        "id": item.id.0,
        "status": item.status,
        "status_name": status_name(item),
        "downloadable": item.downloadable,
        "attempts": item.attempts,
        "action_name": clean(&item.action_name),
        "action_url": clean(&item.action_url),
        "requested_by": item.requested_by.as_deref().map(clean),
        "created_date": rfc3339(item.created_date),
        "expires_at": rfc3339(expires),
    })
}

/// The status as people read it: its name, with the number when the bot
/// does not know the code ("Unknown (16)"), so nothing is lost.
fn status_name(item: &ExportItem) -> String {
    match item.status.name() {
        "Unknown" => format!("Unknown ({})", item.status.raw()),
        name => name.to_string(),
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

mod builtins;
#[cfg(test)]
mod chat_tests;
mod clean;
mod date;
mod filters;
#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
mod time_left;
