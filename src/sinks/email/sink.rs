//! The email sink as one of the registry's [`Sink`]s.

use super::EmailSink;
use crate::attach::Attachment;
use crate::domain::Delivery;
use crate::sinks::{CloseFuture, SendFuture, Sink};

impl Sink for EmailSink {
    fn send<'a>(&'a self, delivery: &'a Delivery) -> SendFuture<'a> {
        Box::pin(EmailSink::send(self, delivery))
    }

    fn send_with<'a>(
        &'a self,
        delivery: &'a Delivery,
        attachment: Option<&'a Attachment>,
    ) -> SendFuture<'a> {
        Box::pin(EmailSink::send_with(self, delivery, attachment))
    }

    fn close(&self) -> CloseFuture<'_> {
        Box::pin(EmailSink::close(self))
    }
}
