//! The messages one change of a task's state sends, gathered until its commit.
//!
//! The scheduler's log lines ride inside the start or end of their task when the change
//! sends one (most changes do), and otherwise go as one [`TaskLog`] per task, where the
//! task's first line was written. So starting a task and sending its first step is
//! two messages, however many lines it logs; the step goes first.

use std::collections::HashMap;
use std::time::Duration;

use aegir_contract::{LogLevel, LogLine, StepDispatched, TaskFinished, TaskLog, TaskStarted};
use aegir_postgres::Staged;
use chrono::Utc;
use uuid::Uuid;

#[derive(Debug)]
// A handful per change, gathered and dropped at its commit: boxing would only add noise.
#[allow(clippy::large_enum_variant)]
enum Outgoing {
    Started(TaskStarted),
    Finished(TaskFinished),
    Step(StepDispatched, Option<Duration>),
    Line(LogLine),
}

impl Outgoing {
    /// The task of a message that can carry its task's lines.
    fn carrier_of(&self) -> Option<Uuid> {
        match self {
            Outgoing::Started(m) => Some(m.task_id),
            Outgoing::Finished(m) => Some(m.task_id),
            Outgoing::Step(..) | Outgoing::Line(_) => None,
        }
    }
}

/// What a change sends, in the order it was written.
#[derive(Debug, Default)]
pub struct Change {
    outgoing: Vec<Outgoing>,
}

impl Change {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn started(&mut self, started: TaskStarted) {
        self.outgoing.push(Outgoing::Started(started));
    }

    pub fn finished(&mut self, finished: TaskFinished) {
        self.outgoing.push(Outgoing::Finished(finished));
    }

    /// Sends a step; with `delay`, no sooner.
    pub fn dispatch(&mut self, step: StepDispatched, delay: Option<Duration>) {
        self.outgoing.push(Outgoing::Step(step, delay));
    }

    /// Writes a line of the scheduler's to a task's log.
    pub fn log(&mut self, task_id: Uuid, step: Option<u32>, level: LogLevel, message: impl Into<String>) {
        self.outgoing.push(Outgoing::Line(scheduler_line(task_id, step, level, message)));
    }

    /// Passes lines written elsewhere (a worker's, in a result task-api does not read) on
    /// to the task's log, as if written here.
    pub fn pass_on(&mut self, lines: &[LogLine]) {
        self.outgoing.extend(lines.iter().cloned().map(Outgoing::Line));
    }

    /// The messages to write to the outbox: each task's lines inside its first start or
    /// end of this change, or else in one [`TaskLog`] where its first line was.
    pub fn into_staged(self) -> Staged {
        let mut carrier: HashMap<Uuid, usize> = HashMap::new();
        for (at, message) in self.outgoing.iter().enumerate() {
            if let Some(task_id) = message.carrier_of() {
                carrier.entry(task_id).or_insert(at);
            }
        }
        // Lines by the position of the message that will carry them: a start or end, or
        // the task's first line, which becomes its TaskLog. Lines are moved, not copied.
        let mut lines: HashMap<usize, Vec<LogLine>> = HashMap::new();
        let mut first_line: HashMap<Uuid, usize> = HashMap::new();
        let mut sent: Vec<(usize, Option<Outgoing>)> = Vec::with_capacity(self.outgoing.len());
        for (at, message) in self.outgoing.into_iter().enumerate() {
            let Outgoing::Line(line) = message else {
                sent.push((at, Some(message)));
                continue;
            };
            let by = match carrier.get(&line.task_id) {
                Some(&by) => by,
                None => *first_line.entry(line.task_id).or_insert_with(|| {
                    // The task's TaskLog goes here.
                    sent.push((at, None));
                    at
                }),
            };
            lines.entry(by).or_default().push(line);
        }
        // Steps go out first. The broker writes one queue's messages after another's, so a
        // step sent ahead of its task's start reaches its worker a disk write sooner; and
        // no one reads a step and an event in an order (the step's answer goes to the
        // scheduler, which has committed this change before anything is sent).
        sent.sort_by_key(|(_, message)| !matches!(message, Some(Outgoing::Step(..))));
        let mut staged = Staged::new();
        for (at, message) in sent {
            let log = lines.remove(&at).unwrap_or_default();
            match message {
                Some(Outgoing::Started(started)) => staged.push(&TaskStarted { log, ..started }, None),
                Some(Outgoing::Finished(finished)) => staged.push(&TaskFinished { log, ..finished }, None),
                Some(Outgoing::Step(step, delay)) => staged.push(&step, delay),
                Some(Outgoing::Line(_)) => unreachable!("lines were gathered above"),
                None => staged.push(&TaskLog { task_id: log[0].task_id, lines: log }, None),
            }
        }
        staged
    }
}

/// A line of the scheduler's.
pub fn scheduler_line(task_id: Uuid, step: Option<u32>, level: LogLevel, message: impl Into<String>) -> LogLine {
    LogLine {
        id: Uuid::now_v7(),
        task_id,
        step,
        level,
        message: message.into(),
        source: "scheduler".into(),
        at: Utc::now(),
    }
}

#[cfg(test)]
mod tests {
    use aegir_contract::{ContextName, TaskKind};

    use super::*;

    fn started(task_id: Uuid) -> TaskStarted {
        TaskStarted {
            task_id,
            context: ContextName::parse("@server_master").unwrap(),
            kind: TaskKind::Verify,
            steps: 1,
            at: Utc::now(),
            log: vec![],
        }
    }

    fn finished(task_id: Uuid) -> TaskFinished {
        let body = serde_json::json!({"task_id": task_id, "outcome": "success", "at": Utc::now()});
        serde_json::from_value(body).unwrap()
    }

    /// Step `step` of task `task_id`: a ping of server_master's web server.
    fn ping(task_id: Uuid, step: u32) -> StepDispatched {
        let route: aegir_contract::Route = "server_master.http".parse().unwrap();
        StepDispatched {
            task_id,
            step,
            attempt: 0,
            route: route.clone(),
            lane: aegir_contract::Lane::Interactive,
            action: aegir_contract::StepAction::Ping { route },
            dispatched_at: Utc::now(),
        }
    }

    /// `(routing key, messages of the lines it carries)` of each staged message.
    fn sent(change: Change) -> Vec<(String, Vec<String>)> {
        let staged = change.into_staged();
        staged
            .iter()
            .map(|(key, body)| {
                let value: serde_json::Value = serde_json::from_slice(body).unwrap();
                let lines = value.get("log").or(value.get("lines")).and_then(|l| l.as_array()).cloned();
                let lines =
                    lines.unwrap_or_default().iter().map(|l| l["message"].as_str().unwrap().to_owned()).collect();
                (key.to_owned(), lines)
            })
            .collect()
    }

    #[test]
    fn lines_ride_in_their_tasks_start_or_end_and_otherwise_in_one_task_log() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let mut change = Change::new();
        // Task a ends (its line written before the end), task b starts and logs after.
        change.log(a, None, LogLevel::Success, "a succeeded");
        change.finished(finished(a));
        change.started(started(b));
        change.log(b, None, LogLevel::Info, "b started");
        change.log(b, Some(0), LogLevel::Info, "b step 1");
        assert_eq!(
            sent(change),
            [
                ("task.finished".to_owned(), vec!["a succeeded".to_owned()]),
                ("task.started".to_owned(), vec!["b started".to_owned(), "b step 1".to_owned()]),
            ]
        );

        // No start or end: the lines go together, behind the step they announce.
        let mut change = Change::new();
        change.log(a, Some(1), LogLevel::Info, "step 2 of 2");
        change.dispatch(ping(a, 1), None);
        change.log(b, None, LogLevel::Info, "queued behind a");
        change.log(a, Some(1), LogLevel::Warning, "a retry notice");
        assert_eq!(
            sent(change),
            [
                ("server_master.http".to_owned(), vec![]),
                ("task.log".to_owned(), vec!["step 2 of 2".to_owned(), "a retry notice".to_owned()]),
                ("task.log".to_owned(), vec!["queued behind a".to_owned()]),
            ]
        );
    }

    #[test]
    fn a_step_goes_out_before_the_start_of_its_task() {
        let a = Uuid::now_v7();
        let mut change = Change::new();
        change.started(started(a));
        change.log(a, None, LogLevel::Info, "a started");
        change.log(a, Some(0), LogLevel::Info, "step 1 of 1");
        change.dispatch(ping(a, 0), None);
        assert_eq!(
            sent(change),
            [
                ("server_master.http".to_owned(), vec![]),
                ("task.started".to_owned(), vec!["a started".to_owned(), "step 1 of 1".to_owned()]),
            ]
        );
    }

    #[test]
    fn a_workers_lines_passed_on_go_first_in_the_message_that_follows_its_result() {
        let a = Uuid::now_v7();
        let worker_line = |message: &str| LogLine {
            source: "server_master.http".into(),
            ..scheduler_line(a, Some(0), LogLevel::Info, message)
        };
        let mut change = Change::new();
        change.pass_on(&[worker_line("ping started"), worker_line("server_master.http answers")]);
        change.log(a, None, LogLevel::Success, "task succeeded");
        change.finished(finished(a));
        assert_eq!(
            sent(change),
            [(
                "task.finished".to_owned(),
                vec!["ping started".to_owned(), "server_master.http answers".to_owned(), "task succeeded".to_owned()]
            )]
        );
    }
}
