//! Where each message of the contract is published. Routing keys are derived from
//! the message itself, never written out at call sites.

use aegir_contract::{
    Command, CommandAccepted, CommandRejected, Message, PartnerTaskFinished, PartnerTaskStarted, StepDispatched,
    StepResult, TaskCancelRequested, TaskFinished, TaskLog, TaskRequested, TaskStarted,
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

impl Publishable for StepResult {
    fn destination(&self) -> (&'static str, String) {
        let key = if self.read_by_task_api() { EventKey::StepResult } else { EventKey::StepResultBare };
        (EVENTS_EXCHANGE, key.as_str().into())
    }
}

event!(TaskLog, EventKey::TaskLog);
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

#[cfg(test)]
mod tests {
    use aegir_contract::{StepFacts, StepOutcome};

    use super::*;

    fn result(outcome: StepOutcome) -> StepResult {
        let body = br#"{"task_id":"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","step":0,"attempt":0,
            "route":"server_master.http","worker":"w","outcome":{"status":"success"},
            "finished_at":"2025-01-01T00:00:00Z"}"#;
        StepResult { outcome, ..StepResult::decode(body).unwrap() }
    }

    #[test]
    fn only_results_with_facts_go_where_task_api_reads_them() {
        let facts = StepFacts { app_version: Some("6.4.2".into()), ..Default::default() };
        let with_facts = result(StepOutcome::Success { facts });
        assert_eq!(with_facts.destination(), (EVENTS_EXCHANGE, "step.result".into()));
        let bare = result(StepOutcome::Success { facts: StepFacts::default() });
        assert_eq!(bare.destination(), (EVENTS_EXCHANGE, "step.result.bare".into()));
        let failed = result(StepOutcome::Failed { reason: "no".into(), transient: false });
        assert_eq!(failed.destination(), (EVENTS_EXCHANGE, "step.result.bare".into()));
        // Lines alone do not send it to task-api: the scheduler passes them on.
        let body = br#"{"task_id":"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","step":0,"attempt":0,
            "route":"server_master.http","worker":"w","outcome":{"status":"success"},
            "finished_at":"2025-01-01T00:00:00Z","log":[{"id":"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c",
            "task_id":"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","step":0,"level":"success",
            "message":"server_master.http answers","source":"server_master.http","at":"2025-01-01T00:00:00Z"}]}"#;
        let logged = StepResult::decode(body).unwrap();
        assert_eq!(logged.log.len(), 1);
        assert_eq!(logged.destination(), (EVENTS_EXCHANGE, "step.result.bare".into()));
    }
}
