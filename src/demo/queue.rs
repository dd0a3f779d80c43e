//! The demo's simulated Crayon API: a real HTTP server on 127.0.0.1 that
//! speaks the documented token and export endpoints, so the demo runs the
//! real client, diff, state and outbox. Each poll after the first moves the
//! simulated queue one step: exports finish, one fails now and then, new ones
//! are requested. Deterministic, so the demo looks the same every time.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

const TOKEN: &str = "demo-token";

const REQUESTERS: [&str; 3] = [
    "alice@contoso.example",
    "bob@fabrikam.example",
    "lukasz@example.com",
];

const REPORTS: [&str; 5] = [
    "New Commerce License-based Report@2024.01.01 - 2024.05.22",
    "Azure Consumption Export@2024.05.01 - 2024.05.31",
    "Billing Statement Export@2024.05",
    "Subscription Export (all organizations)",
    "Software Asset Licence Position@2024.Q2",
];

/// One simulated queue item.
#[derive(Debug, Clone)]
struct SimItem {
    id: i64,
    status: i64,
    downloadable: bool,
    attempts: i64,
    name: &'static str,
    requested_by: &'static str,
    created: DateTime<Utc>,
}

impl SimItem {
    fn to_json(&self) -> Value {
        json!({
            "Id": self.id,
            "Status": self.status,
            "ActionUrl": format!("subscriptions/file/xlsx?tenantId=4663&exportId={}", self.id),
            "Downloadable": self.downloadable,
            "Attempts": self.attempts,
            "ActionName": self.name,
            "RequestedBy": self.requested_by,
            "CreatedDate": self.created.format("%Y-%m-%dT%H:%M:%S%.3f").to_string(),
        })
    }
}

/// The simulated queue and how many times it was polled.
#[derive(Debug)]
pub struct Simulation {
    items: Vec<SimItem>,
    next_id: i64,
    polls: u32,
}

impl Simulation {
    /// A queue with two finished exports and three still processing.
    pub fn seeded(now: DateTime<Utc>) -> Self {
        let mut sim = Simulation {
            items: Vec::new(),
            next_id: 2437,
            polls: 0,
        };
        for n in 0..5 {
            sim.request(now - Duration::minutes(50 - 10 * n as i64));
        }
        for item in sim.items.iter_mut().take(2) {
            item.status = 2;
            item.downloadable = true;
        }
        sim
    }

    fn request(&mut self, created: DateTime<Utc>) {
        let n = self.items.len() + self.polls as usize;
        self.items.push(SimItem {
            id: self.next_id,
            status: 1,
            downloadable: false,
            attempts: 0,
            name: REPORTS[n % REPORTS.len()],
            requested_by: REQUESTERS[n % REQUESTERS.len()],
            created,
        });
        self.next_id += 1;
    }

    /// One step: the oldest queued export finishes, every third step another
    /// one fails, and someone requests a new export.
    fn advance(&mut self, now: DateTime<Utc>) {
        let step = self.polls;
        let mut queued = self.items.iter_mut().filter(|i| i.status == 1);
        if let Some(done) = queued.next() {
            done.status = 2;
            done.downloadable = true;
            done.attempts += 1;
        }
        if step % 3 == 2 {
            if let Some(failed) = queued.next() {
                failed.status = 8;
                failed.attempts += 3;
            }
        }
        self.request(now);
    }

    /// The queue answer for one poll (advancing the queue from the second
    /// poll on, so the bot's first poll is its baseline).
    pub fn poll(&mut self, now: DateTime<Utc>) -> Value {
        if self.polls > 0 {
            self.advance(now);
        }
        self.polls += 1;
        let items: Vec<Value> = self.items.iter().map(SimItem::to_json).collect();
        json!({ "Items": items, "NrOfDays": 7 })
    }

    /// How many times the queue was polled.
    pub fn polls(&self) -> u32 {
        self.polls
    }
}

/// Shared handle on the simulation.
pub type Shared = Arc<Mutex<Simulation>>;

/// The fake API's routes.
pub fn router(sim: Shared) -> Router {
    Router::new()
        .route("/api/v1/connect/token/", post(token))
        .route("/api/v1/exports/", get(exports))
        .route("/api/v1/exports/{id}/download/", get(download))
        .with_state(sim)
}

/// A small spreadsheet-like file for item `id` (CSV), so the demo's mails
/// show an attached export the way a real one arrives.
async fn download(
    axum::extract::Path(id): axum::extract::Path<u64>,
    headers: HeaderMap,
) -> Result<([(&'static str, String); 2], String), StatusCode> {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer != Some(TOKEN) {
        return Err(StatusCode::UNAUTHORIZED);
    }
    let mut csv = String::from("Subscription,Product,Quantity,Unit price (EUR)\n");
    for row in 1..=12u64 {
        csv.push_str(&format!(
            "SUB-{id}-{row:02},Microsoft 365 E3,{},{}.40\n",
            row * 5 + id % 7,
            30 + row
        ));
    }
    Ok((
        [
            ("content-type", "text/csv; charset=utf-8".to_string()),
            (
                "content-disposition",
                format!("attachment; filename=\"export-{id}-licences.csv\""),
            ),
        ],
        csv,
    ))
}

async fn token() -> Json<Value> {
    Json(json!({ "AccessToken": TOKEN, "ExpiresIn": 3600, "TokenType": "Bearer" }))
}

async fn exports(State(sim): State<Shared>, headers: HeaderMap) -> Result<Json<Value>, StatusCode> {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer != Some(TOKEN) {
        return Err(StatusCode::UNAUTHORIZED);
    }
    let mut sim = sim.lock().unwrap_or_else(|e| e.into_inner());
    Ok(Json(sim.poll(Utc::now())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Snapshot;

    #[test]
    fn every_step_finishes_one_export_and_some_fail() {
        let now = Utc::now();
        let mut sim = Simulation::seeded(now);
        let mut answers = Vec::new();
        for _ in 0..4 {
            answers.push(sim.poll(now));
        }
        let snapshots: Vec<Snapshot> = answers
            .iter()
            .map(|a| Snapshot::parse(a.to_string().as_bytes()).unwrap().0)
            .collect();
        let ready = |s: &Snapshot| s.items.values().filter(|i| i.downloadable).count();
        assert_eq!(ready(&snapshots[0]), 2);
        assert_eq!(ready(&snapshots[1]), 3);
        assert_eq!(ready(&snapshots[3]), 5);
        let failed = snapshots[3]
            .items
            .values()
            .filter(|i| i.status == crate::domain::ExportStatus::Failed)
            .count();
        assert_eq!(failed, 1);
        assert_eq!(sim.polls(), 4);
    }
}
