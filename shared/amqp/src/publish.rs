//! Where each message of the contract is published. Routing keys are derived from
//! the message itself, never written out at call sites.

use aegir_contract::{
    LogLine, Message, StepDispatched, StepResult, TaskCancelRequested, TaskFinished, TaskRequested, TaskStarted,
};

use crate::topology::{
    EVENTS_EXCHANGE, EventKey, QueueName, TASK_CANCEL_KEY, TASK_REQUESTED_KEY, TASKS_EXCHANGE, WORK_EXCHANGE,
};

pub trait Publishable: Message {
    /// `(exchange, routing key)` for this message.
    fn destination(&self) -> (&'static str, String);
}

impl Publishable for TaskRequested {
    fn destination(&self) -> (&'static str, String) {
        (TASKS_EXCHANGE, TASK_REQUESTED_KEY.into())
    }
}

impl Publishable for TaskCancelRequested {
    fn destination(&self) -> (&'static str, String) {
        (TASKS_EXCHANGE, TASK_CANCEL_KEY.into())
    }
}

impl Publishable for StepDispatched {
    fn destination(&self) -> (&'static str, String) {
        (WORK_EXCHANGE, QueueName::work(self.route.clone(), self.lane).name())
    }
}

macro_rules! event {
    ($ty:ty, $key:expr) => {
        impl Publishable for $ty {
            fn destination(&self) -> (&'static str, String) {
                (EVENTS_EXCHANGE, $key.as_str().into())
            }
        }
    };
}

event!(StepResult, EventKey::StepResult);
event!(LogLine, EventKey::TaskLog);
event!(TaskStarted, EventKey::TaskStarted);
event!(TaskFinished, EventKey::TaskFinished);
