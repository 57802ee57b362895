//! Where each message of the contract is published. Routing keys are derived from
//! the message itself, never written out at call sites.

use aegir_contract::{
    Command, CommandAccepted, CommandRejected, LogLine, Message, PartnerTaskFinished, PartnerTaskStarted,
    StepDispatched, StepResult, TaskCancelRequested, TaskFinished, TaskRequested, TaskStarted,
};

use crate::topology::{
    COMMAND_KEY, COMMANDS_EXCHANGE, EVENTS_EXCHANGE, EventKey, PARTNER_EVENTS_EXCHANGE, PartnerEventKey, QueueName,
    TASK_CANCEL_KEY, TASK_REQUESTED_KEY, TASKS_EXCHANGE, WORK_EXCHANGE,
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

impl Publishable for Command {
    fn destination(&self) -> (&'static str, String) {
        (COMMANDS_EXCHANGE, COMMAND_KEY.into())
    }
}

macro_rules! partner_event {
    ($ty:ty, $key:expr) => {
        impl Publishable for $ty {
            fn destination(&self) -> (&'static str, String) {
                (PARTNER_EVENTS_EXCHANGE, $key.key(&self.partner))
            }
        }
    };
}

partner_event!(CommandAccepted, PartnerEventKey::CommandAccepted);
partner_event!(CommandRejected, PartnerEventKey::CommandRejected);
partner_event!(PartnerTaskStarted, PartnerEventKey::TaskStarted);
partner_event!(PartnerTaskFinished, PartnerEventKey::TaskFinished);
