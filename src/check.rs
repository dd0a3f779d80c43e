//! `check`: validates the config, its `${VAR}`s, routes and templates without
//! contacting anything. Every enabled event × enabled sink is rendered against
//! the built-in sample item, and JSON parts must parse.

use crate::config::Config;
use crate::domain::{EventKind, RemovedReason, Snapshot, SAMPLE_QUEUE};
use crate::render::{AlertView, MessageInput, RecipientView, Renderer};
use crate::route::Router;
use crate::sinks::{self, Sinks};

/// What `check` found: problems make it exit 2, warnings do not.
#[derive(Debug, Default)]
pub struct CheckReport {
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
    pub rendered: usize,
}

/// Checks templates and sinks of an already validated config.
pub fn check(config: &Config) -> CheckReport {
    let mut report = CheckReport {
        warnings: config.warnings.clone(),
        ..CheckReport::default()
    };
    if let Err(e) = sinks::http_client(config).and_then(|http| Sinks::build(config, &http)) {
        report.problems.push(e.to_string());
    }
    let renderer = match Renderer::new(config.templates_dir.as_deref(), config.timezone) {
        Ok(r) => r,
        Err(e) => {
            report.problems.push(e.to_string());
            return report;
        }
    };
    render_all(config, &renderer, &mut report);
    render_alerts(config, &renderer, &mut report);
    render_digests(config, &renderer, &mut report);
    report
}

/// A sink with a `digest` must render its digest message too.
fn render_digests(config: &Config, renderer: &Renderer, report: &mut CheckReport) {
    let (snapshot, _) = Snapshot::parse(SAMPLE_QUEUE).expect("the built-in sample parses");
    let Some(item) = snapshot.items.values().next() else {
        return;
    };
    let sinks = config
        .sinks
        .values()
        .filter(|s| s.enabled && s.digest.is_some());
    for sink in sinks {
        let now = chrono::Utc::now();
        match crate::digest::sample(config, renderer, sink, (item, snapshot.nr_of_days), now) {
            Ok(_) => report.rendered += 1,
            Err(e) => report
                .problems
                .push(format!("sink {}: digest: {e}", sink.name)),
        }
    }
}

/// The alert sink must render the bot's own alerts too.
fn render_alerts(config: &Config, renderer: &Renderer, report: &mut CheckReport) {
    let Some(sink) = config
        .alerts
        .as_ref()
        .and_then(|a| config.sinks.get(&a.sink))
    else {
        return;
    };
    let alert = AlertView::sample(chrono::Utc::now());
    match renderer.render_alert(sink, &alert, config.portal.as_str(), chrono::Utc::now()) {
        Ok(_) => report.rendered += 1,
        Err(e) => report.problems.push(e.to_string()),
    }
}

fn render_all(config: &Config, renderer: &Renderer, report: &mut CheckReport) {
    let (snapshot, _) = Snapshot::parse(SAMPLE_QUEUE).expect("the built-in sample parses");
    let item = snapshot
        .items
        .values()
        .next()
        .expect("the sample has items");
    let router = Router::new(config);
    let requested_by = item.requested_by.as_deref();
    for event in config.watch.events.iter().copied() {
        for sink in config.sinks.values().filter(|s| s.enabled) {
            let input = MessageInput {
                event,
                reason: (event == EventKind::Removed).then_some(RemovedReason::Vanished),
                item,
                previous: None,
                nr_of_days: snapshot.nr_of_days,
                recipient: RecipientView::new(requested_by, router.recipient(requested_by)),
                portal: config.portal.as_str(),
                now: chrono::Utc::now(),
                account: Default::default(),
            };
            match renderer.render(sink, &input) {
                Ok(_) => report.rendered += 1,
                Err(e) => report.problems.push(e.to_string()),
            }
        }
    }
}
