//! The status page as HTML: the built-in `page.html.tera` (compiled into the
//! binary, like the message templates) over a [`StatusView`], item text
//! HTML-escaped by Tera's autoescape, times in `display.timezone`. No
//! JavaScript: the page reloads itself with `<meta http-equiv="refresh">`.

use chrono::{DateTime, Utc};
use tera::{Context, Kwargs, State, Tera};

use super::{StatusError, StatusView, LISTED, RECENT};

/// The template's name; the `.html.tera` suffix turns autoescape on.
const TEMPLATE: &str = "status.html.tera";
/// How often the page reloads itself, in seconds.
pub const REFRESH_SECS: u64 = 30;

/// The compiled page template, built once when the server starts.
#[derive(Debug)]
pub struct Page {
    tera: Tera,
}

impl Page {
    /// Compiles the built-in template with a `local` filter showing RFC 3339
    /// times in `timezone`. Fails only if the built-in template is broken.
    pub fn new(timezone: chrono_tz::Tz) -> Result<Page, StatusError> {
        let mut tera = Tera::default();
        tera.autoescape_on(vec![".html.tera"]);
        tera.register_filter("local", move |v: &str, _: Kwargs, _: &State| {
            local_time(v, timezone)
        });
        tera.add_raw_template(TEMPLATE, include_str!("page.html.tera"))
            .map_err(|e| template_error(&e))?;
        Ok(Page { tera })
    }

    /// Renders the view as a whole HTML document.
    pub fn render(&self, view: &StatusView) -> Result<String, StatusError> {
        let mut context = Context::from_serialize(view).map_err(|e| template_error(&e))?;
        context.insert("refresh_secs", &REFRESH_SECS);
        context.insert("recent_limit", &RECENT);
        context.insert("listed_limit", &LISTED);
        self.tera
            .render(TEMPLATE, &context)
            .map_err(|e| template_error(&e))
    }
}

fn template_error(e: &tera::Error) -> StatusError {
    StatusError::Template {
        template: TEMPLATE,
        message: e.to_string(),
    }
}

/// `2026-12-01 08:15:02 CET` for an RFC 3339 time; anything else unchanged.
fn local_time(rfc3339: &str, timezone: chrono_tz::Tz) -> String {
    match DateTime::parse_from_rfc3339(rfc3339) {
        Ok(t) => t
            .with_timezone(&Utc)
            .with_timezone(&timezone)
            .format("%Y-%m-%d %H:%M:%S %Z")
            .to_string(),
        Err(_) => rfc3339.to_owned(),
    }
}
