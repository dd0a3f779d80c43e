//! The attachment hook of one attempt (issue #16): for a sink with
//! `attach = true`, get the item's file from the spool (downloading it once
//! for every sink and recipient), render the message again with the
//! `attachment` variable saying whether the file goes and why not, and hand
//! both to the sink. A file that cannot be had never makes the delivery
//! dead: only a transient download failure before the last attempt retries.
//! After an attempt the file is removed once no pending delivery needs it.

use std::borrow::Cow;
use std::sync::Arc;

use super::Dispatcher;
use crate::attach::{human_size, Attachment, AttachmentView, Fetched, Spool};
use crate::domain::{Delivery, EventKind};
use crate::sinks::{SendError, Sink};

/// What the dispatcher needs to attach files: the Crayon client (the
/// download) and the spool; shared across reloads.
#[derive(Clone)]
pub struct Attacher {
    /// Every account's client: an item's file is downloaded with its own
    /// account's token.
    pub clients: crate::app::Clients,
    /// Where the files wait for their sends.
    pub spool: Arc<Spool>,
}

/// The message to send, the file to send with it, and the same message
/// rendered without the file for when the platform refuses the file. The
/// delivery is borrowed when it goes as stored (most sends: no copy of the
/// message per send).
pub(super) struct Prepared<'a> {
    pub delivery: Cow<'a, Delivery>,
    pub file: Option<Arc<Attachment>>,
    pub without_file: Option<Delivery>,
}

impl<'a> Prepared<'a> {
    /// The delivery as it is, without a file (digests, old rows).
    pub(super) fn plain(delivery: &'a Delivery) -> Self {
        Prepared {
            delivery: Cow::Borrowed(delivery),
            file: None,
            without_file: None,
        }
    }
}

/// The reason a message gives when the platform refused the file itself.
const REFUSED: &str = "the file was not accepted by the receiving service";

/// Sends the prepared delivery. If the platform refuses the message with
/// the file for good (413, an upload error), the message goes again at
/// once without it, saying so: a file is never why a delivery goes dead.
pub(super) async fn send(sink: &dyn Sink, prepared: &Prepared<'_>) -> Result<(), SendError> {
    let result = sink
        .send_with(&prepared.delivery, prepared.file.as_deref())
        .await;
    match (result, &prepared.without_file) {
        (Err(SendError::Permanent(why)), Some(plain)) => {
            tracing::warn!(delivery = plain.id.0, sink = %plain.sink, error = %why,
                "the message with the export file was refused; sending it without the file");
            sink.send(plain).await
        }
        (result, _) => result,
    }
}

impl Dispatcher {
    /// The delivery as it goes out: unchanged unless its sink attaches and
    /// the stored message has its context (rows older than #16 go as they
    /// are, without a file). `Err` only for a transient download failure
    /// before the delivery's last attempt (retried with its backoff).
    pub(super) async fn prepare_attachment<'a>(
        &self,
        delivery: &'a Delivery,
    ) -> Result<Prepared<'a>, SendError> {
        let (Some(attacher), Some(sink)) = (&self.attacher, self.configs.get(&delivery.sink))
        else {
            return Ok(Prepared::plain(delivery));
        };
        // The sink's setting first: the stored context is decoded only for
        // a sink that attaches.
        let (Some(settings), Some(item), EventKind::Downloadable) =
            (sink.attach, delivery.subject.item(), delivery.event)
        else {
            return Ok(Prepared::plain(delivery));
        };
        let Some(context) = delivery.message.context.as_ref().map(|c| c.value()) else {
            return Ok(Prepared::plain(delivery));
        };
        let action_name = context["item"]["action_name"].as_str().unwrap_or_default();
        let Some(client) = attacher.clients.get(&self.account) else {
            return Ok(Prepared::plain(delivery));
        };
        let fetched = attacher
            .spool
            .fetch(client, &self.account, item, action_name, self.attach_cap)
            .await;
        let (view, file) = match fetched {
            Ok(Fetched::Ready(file)) if file.size <= settings.max => {
                (AttachmentView::attached(&file), Some(file))
            }
            Ok(Fetched::Ready(file)) => (too_big_for_sink(&file, settings.max), None),
            Ok(Fetched::Unavailable(reason)) => (AttachmentView::missing(reason), None),
            Err(e) if delivery.attempts + 1 < self.policy.max_attempts => {
                return Err(SendError::Retryable(e.to_string()));
            }
            Err(e) => {
                tracing::warn!(delivery = delivery.id.0, sink = %delivery.sink, item = item.0,
                    error = %e, "last attempt: sending without the export file");
                let reason = "the file could not be downloaded in time";
                (AttachmentView::missing(reason), None)
            }
        };
        if let Some(reason) = &view.reason {
            tracing::info!(delivery = delivery.id.0, sink = %delivery.sink, item = item.0,
                reason = %reason, "sending without the export file");
        }
        let without_file = file.as_ref().map(|_| {
            self.rendered_with(delivery, sink, &context, &AttachmentView::missing(REFUSED))
        });
        let delivery = self.rendered_with(delivery, sink, &context, &view);
        Ok(Prepared {
            delivery: Cow::Owned(delivery),
            file,
            without_file,
        })
    }

    /// `delivery` rendered again with `attachment` = `view` (the stored
    /// message when the templates fail now).
    fn rendered_with(
        &self,
        delivery: &Delivery,
        sink: &crate::config::SinkConfig,
        context: &serde_json::Value,
        view: &AttachmentView,
    ) -> Delivery {
        let mut context = context.clone();
        context["attachment"] = serde_json::to_value(view).unwrap_or_default();
        let mut delivery = delivery.clone();
        match self.renderer.rerender(delivery.event, sink, context) {
            Ok(message) => delivery.message = message,
            Err(e) => tracing::warn!(delivery = delivery.id.0, sink = %delivery.sink,
                error = %e, "cannot render the message again with the attachment; \
                sending the stored one"),
        }
        delivery
    }

    /// After an attempt: removes from the spool every file of this account
    /// that no pending delivery of an attaching sink needs any more (this
    /// delivery's, and any whose deliveries were purged meanwhile).
    pub(super) fn release_unneeded(&self, delivery: &Delivery) {
        let Some(attacher) = &self.attacher else {
            return;
        };
        let held: Vec<_> = attacher
            .spool
            .held()
            .into_iter()
            .filter(|(account, _)| *account == self.account)
            .map(|(_, item)| item)
            .collect();
        if held.is_empty() || delivery.subject.item().is_none() {
            return;
        }
        // The held items' pending sinks only, by index: reading every
        // pending message after each attempt made a burst of attaching
        // deliveries quadratic.
        let pending = match self.store.pending_sinks_of_items(&self.account, &held) {
            Ok(pending) => pending,
            Err(e) => {
                tracing::warn!(error = %e, "cannot check whether export files are still needed");
                return;
            }
        };
        let attaching = |sink: &String| self.configs.get(sink).is_some_and(|s| s.attach.is_some());
        let needed: std::collections::HashSet<_> = pending
            .into_iter()
            .filter(|(_, sink)| attaching(sink))
            .map(|(item, _)| item)
            .collect();
        for item in held.into_iter().filter(|item| !needed.contains(item)) {
            attacher.spool.release(&self.account, item);
        }
    }
}

/// A file bigger than this sink's `attach_max` (another sink may take it).
fn too_big_for_sink(file: &Attachment, max: u64) -> AttachmentView {
    AttachmentView {
        name: Some(file.name.clone()),
        size: Some(file.size),
        size_text: Some(human_size(file.size)),
        content_type: Some(file.content_type.clone()),
        ..AttachmentView::missing(format!(
            "the file ({}) is larger than {}",
            human_size(file.size),
            human_size(max)
        ))
    }
}
