//! The values the [`Store`](super::Store) trait speaks: what one poll
//! commits and what it wrote, an attempt's outcome, alerts, histories and
//! the status page's per-sink facts.

use chrono::{DateTime, Utc};

use crate::domain::{
    AccountId, AlertCondition, AlertState, Change, Delivery, DeliveryStatus, Disposition,
    EventKind, ExportId, ExportItem, NewDelivery, RenderedMessage, Snapshot,
};

/// One cached Slack lookup: the user found (or `None`: Slack knows no user
/// with that address) and until when the answer is trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlackLookup {
    /// The Slack user id (`U…`), `None` for a cached miss.
    pub user_id: Option<String>,
    /// After this the address is looked up again.
    pub expires_at: DateTime<Utc>,
}

/// Everything one successful poll writes, committed atomically by
/// [`Store::commit_poll`].
#[derive(Debug, Clone, Copy)]
pub struct PollCommit<'a> {
    /// The account polled.
    pub account: &'a AccountId,
    /// The snapshot as loaded before this poll (`None`: no baseline yet); only
    /// the differences against it are written.
    pub previous: Option<&'a Snapshot>,
    /// The queue as this poll saw it.
    pub snapshot: &'a Snapshot,
    /// The items that differ from `previous`, when the caller already knows
    /// them (the poll does, see [`crate::domain::Polled`]; `previous` may then
    /// hold only those items and just tells baseline from not). `None`:
    /// found here by comparing `previous` and `snapshot`.
    pub changes: Option<&'a [Change<'a>]>,
    /// The (item, event) pairs that fired in this poll.
    pub fired: &'a [(ExportId, EventKind)],
    /// The deliveries those events cause.
    pub deliveries: &'a [NewDelivery],
    /// The poll's time: `last_success_at`, `fired_at`, first `next_attempt_at`.
    pub now: DateTime<Utc>,
}

/// What a [`Store::commit_poll`] wrote, for the per-poll log line and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CommitStats {
    /// Snapshot rows inserted or updated (unchanged items are not rewritten).
    pub items_written: usize,
    /// Snapshot rows removed because the item left the queue.
    pub items_deleted: usize,
    /// Fired records newly inserted (pairs already recorded are ignored).
    pub fired: usize,
    /// Outbox rows inserted (pending and skipped).
    pub deliveries: usize,
}

/// One finished attempt to write, as [`Store::record_attempts`](super::Store::record_attempts)
/// takes many at once: the dispatcher batches its writes so a burst costs
/// one commit per batch instead of one per delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptWrite {
    /// The delivery attempted.
    pub id: crate::domain::DeliveryId,
    /// What the attempt ended with.
    pub outcome: AttemptOutcome,
    /// When it ended (the attempt log's `at`, the delivery's `updated_at`).
    pub at: DateTime<Utc>,
    /// How long the send took.
    pub latency: std::time::Duration,
}

/// The result of one delivery attempt, as the delivery worker decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// Delivered.
    Sent,
    /// Transient failure; try again at this time.
    Retry {
        error: String,
        next_attempt_at: DateTime<Utc>,
    },
    /// Refused for good or attempts exhausted.
    Dead { error: String },
    /// The sink found nobody to send it to (e.g. no such Slack user): the
    /// delivery is `skipped` with the reason.
    Skipped { reason: String },
}

impl AttemptOutcome {
    /// The name written to the attempt log (`sent`, `retry`, `dead`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Retry { .. } => "retry",
            Self::Dead { .. } => "dead",
            Self::Skipped { .. } => "skipped",
        }
    }

    /// The delivery's status after this outcome.
    pub fn status(&self) -> DeliveryStatus {
        match self {
            Self::Sent => DeliveryStatus::Sent,
            Self::Retry { .. } => DeliveryStatus::Pending,
            Self::Dead { .. } => DeliveryStatus::Dead,
            Self::Skipped { .. } => DeliveryStatus::Skipped,
        }
    }

    /// When to try again (retries only).
    pub fn next_attempt_at(&self) -> Option<DateTime<Utc>> {
        match self {
            Self::Retry {
                next_attempt_at, ..
            } => Some(*next_attempt_at),
            Self::Sent | Self::Dead { .. } | Self::Skipped { .. } => None,
        }
    }

    /// The error text of a failed attempt.
    pub fn error(&self) -> Option<&str> {
        match self {
            Self::Sent => None,
            Self::Retry { error, .. } | Self::Dead { error } => Some(error),
            Self::Skipped { reason } => Some(reason),
        }
    }
}

/// One alert message to record and deliver ([`Store::record_alerts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAlert {
    /// The condition it is about.
    pub condition: AlertCondition,
    /// Firing or recovered.
    pub state: AlertState,
    /// The alert sink.
    pub sink: String,
    /// The rendered message.
    pub message: RenderedMessage,
    /// Pending, or dead when it could not be rendered.
    pub disposition: crate::domain::Disposition,
}

/// One remembered alert: the latest of its (condition, state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertRecord {
    /// The condition.
    pub condition: AlertCondition,
    /// Firing or recovered.
    pub state: AlertState,
    /// When it was enqueued.
    pub at: DateTime<Utc>,
}

/// What the `why ITEM_ID` command shows about one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemHistory {
    /// The item as last polled, if it is still in the stored snapshot.
    pub item: Option<ExportItem>,
    /// The events that fired for it and when, oldest first.
    pub fired: Vec<(EventKind, DateTime<Utc>)>,
    /// Its deliveries, oldest first, each with its attempts, oldest first.
    pub deliveries: Vec<(Delivery, Vec<AttemptRecord>)>,
}

/// One sink's latest outcomes ([`Store::sink_activity`]), so an operator
/// sees at a glance which sink works and which one last failed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkActivity {
    /// The sink's name.
    pub sink: String,
    /// When an attempt to it last succeeded.
    pub last_success_at: Option<DateTime<Utc>>,
    /// When an attempt to it last failed (a retry or dead outcome).
    pub last_error_at: Option<DateTime<Utc>>,
    /// That failed attempt's error text.
    pub last_error: Option<String>,
}

/// One row of a delivery's attempt log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// When the attempt finished.
    pub at: DateTime<Utc>,
    /// `sent`, `retry` or `dead` (see [`AttemptOutcome::as_str`]).
    pub outcome: String,
    /// The error text, for failed attempts.
    pub error: Option<String>,
    /// How long the attempt took.
    pub latency_ms: i64,
}

/// What one new outbox row is about: an item, or an `alerts` row (both
/// backends write the same shape).
#[derive(Debug, Clone, Copy)]
pub(crate) enum RowSubject {
    Item(ExportId),
    Alert(i64),
}

/// One new outbox row, borrowed from a [`NewDelivery`] or an alert.
pub(crate) struct NewRow<'a> {
    pub subject: RowSubject,
    pub event: EventKind,
    pub sink: &'a str,
    pub recipient: Option<&'a str>,
    pub message: &'a RenderedMessage,
    pub disposition: &'a Disposition,
}

impl<'a> NewRow<'a> {
    /// The row an item delivery becomes.
    pub(crate) fn from_delivery(d: &'a NewDelivery) -> NewRow<'a> {
        NewRow {
            subject: RowSubject::Item(d.item_id),
            event: d.event,
            sink: &d.sink,
            recipient: d.recipient.as_deref(),
            message: &d.message,
            disposition: &d.disposition,
        }
    }
}

/// The digest window a due member belongs to ([`Store::gather_digest`]):
/// one sink's pending item deliveries, for one recipient or (`None`, a
/// channel sink) all of them, gathered for `length` after the first.
#[derive(Debug, Clone, Copy)]
pub struct DigestWindow<'a> {
    /// The sink's name.
    pub sink: &'a str,
    /// The person, for a per-person sink; `None`: every recipient.
    pub recipient: Option<&'a str>,
    /// The sink's `digest` setting.
    pub length: std::time::Duration,
}

/// What [`Store::gather_digest`] decided for a due member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gathered {
    /// The window is still open: its members wait until then (written).
    Wait { until: DateTime<Utc> },
    /// Send these members (oldest first) as one message: the digest
    /// `digest` (its leading member's id), claimed in the store, so the
    /// same members go again after a crash and no other digest takes them.
    Send {
        digest: crate::domain::DeliveryId,
        members: Vec<Delivery>,
    },
    /// Nothing for this member to send: it is in a digest another member
    /// leads, or no longer pending.
    Elsewhere,
}

/// Where a delivery stands with respect to digests, for `outbox list` and
/// `why` ([`Store::digest_of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigestMembership {
    /// The digest (its leading member's id).
    pub digest: crate::domain::DeliveryId,
    /// When the digest is next tried (its leader's `next_attempt_at`).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// How many deliveries the digest holds (1: it went as the ordinary
    /// message).
    pub members: u64,
}
