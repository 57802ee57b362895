//! Live task logs: the event consumer announces each stored line and each finished task
//! here, and every open log stream listens.
//!
//! A stream that falls behind loses announcements (the channel is bounded), so followers
//! treat a lag as "read the database again from the last line I sent".

use std::sync::Arc;

use tokio::sync::broadcast;
use uuid::Uuid;

use crate::views::LogEntry;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveEvent {
    /// A line was stored.
    Line { task_id: Uuid, entry: LogEntry },
    /// The task finished.
    Finished { task_id: Uuid },
}

impl LiveEvent {
    pub fn task_id(&self) -> Uuid {
        match self {
            LiveEvent::Line { task_id, .. } | LiveEvent::Finished { task_id } => *task_id,
        }
    }
}

/// Announcements kept for a slow listener before it lags.
const CAPACITY: usize = 1024;

#[derive(Clone)]
pub struct LiveLog {
    sender: broadcast::Sender<Arc<LiveEvent>>,
}

impl Default for LiveLog {
    fn default() -> Self {
        Self::new()
    }
}

impl LiveLog {
    pub fn new() -> Self {
        Self { sender: broadcast::channel(CAPACITY).0 }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LiveEvent>> {
        self.sender.subscribe()
    }

    pub fn announce(&self, event: LiveEvent) {
        // No listener is not an error: nobody is watching that log.
        let _ = self.sender.send(Arc::new(event));
    }
}
