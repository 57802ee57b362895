//! Changes to a web server's config from many steps at once, made live together: the
//! changes that arrive within a short window are written, checked by one config test
//! and loaded by one reload. Each step gets its answer once its own change is live, or
//! refused. When the test fails, the changes to blame are found (the file the web
//! server names, or by halving the batch), put back as they were and refused; the
//! others still go live.
//!
//! With thousands of vhosts a test or a reload takes seconds, so one per change would
//! bound a server to a change every few seconds; one per window keeps up with a fleet.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aegir_contract::Lane;
use aegir_worker::StepError;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::files::{self, Ownership};

/// Mode of the files the queue writes: vhosts carry the sites' database passwords.
pub const MODE: u32 = 0o600;

/// What the queue needs of a web server.
pub trait Server: Send + Sync + 'static {
    /// Tests the whole config as it is on disk; the error carries the server's own words.
    fn test(&self) -> impl Future<Output = Result<(), StepError>> + Send;
    /// Loads the config on disk, returning once the server serves it.
    fn reload(&self) -> impl Future<Output = Result<(), StepError>> + Send;
}

/// A change to one file of the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Put(Vec<u8>),
    Remove,
}

/// When a change that turns out to change nothing still reloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    IfChanged,
    /// Also when the file already is as asked: a step run again after an interruption
    /// may find its file written by a try that stopped before the reload.
    Always,
}

/// What a change came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Whether the file changed.
    pub changed: bool,
    /// Other changes tested and loaded with this one.
    pub together: usize,
}

/// How long a cycle collects changes before it tests and reloads: at least `shortest`,
/// then until none has come for `quiet`, and at most `longest` after the first; at once
/// when half as many changes wait as a fleet operation can have steps running on the
/// worker (the other half fill the next window meanwhile).
///
/// A change that misses a window costs a test and a reload of its own, which with
/// thousands of vhosts take seconds. So a window stays open at least as long as the
/// last test and reload took (at most doubling a change's time to live): changes that
/// arrived during that cycle do not go alone while the next ones are on their way (the
/// tasks a batch starts as the last ones end). A stream of changes is told from its end
/// by a lull several times its usual gap (at least 100 ms, which a lone change on a
/// quiet server waits before its test and reload), or, while a fleet operation goes on,
/// as long as the longest lull within its last window; after a full window, at least
/// 2.5 s (the operation's next tasks start as the results of the last go round, on a
/// busy machine the first of them seconds later and not all at once). A steady stream is cut
/// after four times the last test and reload, at least 10 s (a batch's thousand tasks
/// reach the worker at the rate the system sustains, about a hundred a second on a
/// small machine) and at most 20 s. A window of bulk-lane changes only (fleet operations
/// and scheduled queues, which no one watches one by one) waits out a lull as long as
/// the last test and reload (a second before the first), up to a quarter of its
/// longest: one more change in the window costs it that wait at most, one that misses it
/// costs a test and reload of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Test and reload of the last cycle that did both; zero before the first.
    last_cost: Duration,
    /// The longest gap between two changes within the last window.
    last_lull: Duration,
    /// Whether the last window was full.
    last_full: bool,
    /// Changes that can wait at once.
    room: usize,
    longest_min: Duration,
}

impl Default for Window {
    fn default() -> Self {
        Self {
            last_cost: Duration::ZERO,
            last_lull: Duration::ZERO,
            last_full: false,
            room: usize::MAX,
            longest_min: Self::LONGEST_MIN,
        }
    }
}

impl Window {
    pub const QUIET_MIN: Duration = Duration::from_millis(100);
    pub const QUIET_MAX: Duration = Duration::from_millis(250);
    pub const LONGEST_MIN: Duration = Duration::from_secs(10);
    pub const LONGEST_MAX: Duration = Duration::from_secs(20);
    /// A lull this many times the usual gap between changes ends a stream of them.
    const LULL: u32 = 8;
    /// After a full window, a lull this long at least ends the next.
    const LULL_AFTER_FULL: Duration = Duration::from_millis(2_500);
    /// What a test and reload are taken to cost before the first is timed.
    const UNTIMED_COST: Duration = Duration::from_secs(1);

    /// Windows for a worker that runs `steps` at once. Fleet operations and scheduled
    /// queues get all but one of them (the other is kept for people's steps); half of
    /// those waiting is a full window. So while one window's changes are tested and
    /// reloaded (seconds, with thousands of vhosts), the steps of the other half still
    /// come in and fill the next: the web server's work overlaps the tasks', rather
    /// than every step waiting for the reload before the next can start.
    pub fn for_steps(steps: usize) -> Self {
        Self { room: steps.saturating_sub(1).max(1).div_ceil(2), ..Self::default() }
    }

    /// This window after a cycle whose test and reload took `cost`, whose changes came
    /// with at most `lull` between two of them, and filled its window or not.
    pub fn after(self, cost: Duration, lull: Duration, full: bool) -> Self {
        Self { last_cost: cost, last_lull: lull, last_full: full, ..self }
    }

    /// This window when the last one ended long ago: no stream goes on.
    pub fn after_a_while(self) -> Self {
        Self { last_lull: Duration::ZERO, last_full: false, ..self }
    }

    /// Streams are cut after `min` at least (instead of [`Self::LONGEST_MIN`]).
    #[cfg(test)]
    fn cut_after(self, min: Duration) -> Self {
        Self { longest_min: min, ..self }
    }

    /// Whether `waiting` changes are all that can come.
    pub fn is_full(&self, waiting: usize) -> bool {
        waiting >= self.room
    }

    /// A lull this long closes the window, once `arrived` changes came over `span`
    /// (from the first to the last), in the bulk lane only or not.
    pub fn quiet(&self, arrived: usize, span: Duration, bulk: bool) -> Duration {
        let usual_gap = match arrived {
            0 | 1 => Duration::ZERO,
            n => span / (n as u32 - 1),
        };
        let stream = (self.last_cost / 8).max(usual_gap * Self::LULL).clamp(Self::QUIET_MIN, Self::QUIET_MAX);
        let fleet = if self.last_full { self.last_lull.max(Self::LULL_AFTER_FULL) } else { self.last_lull };
        // A server not yet tested and reloaded is taken to need a second for both.
        let unwatched = match (bulk, self.last_cost.is_zero()) {
            (false, _) => Duration::ZERO,
            (true, true) => Self::UNTIMED_COST,
            (true, false) => self.last_cost,
        };
        stream.max(fleet.max(unwatched).min(self.longest() / 4))
    }

    /// The window stays open this long after its first change at least.
    pub fn shortest(&self) -> Duration {
        self.last_cost.min(self.longest())
    }

    /// The window closes this long after its first change at the latest.
    pub fn longest(&self) -> Duration {
        (self.last_cost * 4).clamp(self.longest_min, Self::LONGEST_MAX.max(self.longest_min))
    }
}

struct Request {
    /// `None`: only a reload.
    file: Option<(PathBuf, Change)>,
    always: bool,
    /// Asked by a bulk-lane step.
    bulk: bool,
    answer: oneshot::Sender<Result<Applied, StepError>>,
}

#[derive(Default)]
struct Shared {
    /// Files with a change queued or being made live, and how many such changes.
    pending: HashMap<PathBuf, usize>,
    /// The last reload failed: what is on disk is not known to be live.
    owed: bool,
}

/// The queue of one web server. Cloning it gives another handle on the same queue.
#[derive(Clone)]
pub struct Queue {
    inbox: mpsc::UnboundedSender<Request>,
    shared: Arc<Mutex<Shared>>,
    config: Arc<tokio::sync::Mutex<()>>,
}

impl Queue {
    /// Starts the queue's cycles on the current runtime, for a worker that runs `steps`
    /// at once.
    pub fn start<S: Server>(server: S, steps: usize) -> Self {
        Self::start_with(server, Window::for_steps(steps))
    }

    fn start_with<S: Server>(server: S, window: Window) -> Self {
        let (inbox, requests) = mpsc::unbounded_channel();
        let queue = Self { inbox, shared: Arc::default(), config: Arc::default() };
        tokio::spawn(cycles(server, window, requests, queue.shared.clone(), queue.config.clone()));
        queue
    }

    /// Makes `change` to the file at `path`, tested with the whole config, and returns
    /// once it is live (the file is put back as it was when the test fails with it).
    pub async fn apply(&self, path: &Path, change: Change, reload: Reload) -> Result<Applied, StepError> {
        self.apply_in(path, change, reload, Lane::Interactive).await
    }

    /// [`Self::apply`] for a step of `lane`: bulk-lane changes may wait longer for others
    /// to share their test and reload.
    pub async fn apply_in(
        &self,
        path: &Path,
        change: Change,
        reload: Reload,
        lane: Lane,
    ) -> Result<Applied, StepError> {
        if reload == Reload::IfChanged && self.already_live(path, &change) {
            return Ok(Applied { changed: false, together: 0 });
        }
        self.ask(Some((path.to_path_buf(), change)), reload == Reload::Always, lane).await
    }

    /// Returns once everything written before the call is live.
    pub async fn reload(&self) -> Result<(), StepError> {
        self.ask(None, true, Lane::Interactive).await.map(|_| ())
    }

    /// Held by the cycles while they change, test and load the config: whoever changes
    /// other files of it (the base config) holds it too.
    pub async fn exclusive(&self) -> tokio::sync::OwnedMutexGuard<()> {
        self.config.clone().lock_owned().await
    }

    /// Whether the file already is as asked and live: nothing to queue. Checked under
    /// the lock that queuing takes, so no cycle is writing the file meanwhile.
    fn already_live(&self, path: &Path, change: &Change) -> bool {
        let shared = self.shared.lock().expect("config queue lock");
        if shared.owed || shared.pending.contains_key(path) {
            return false;
        }
        match change {
            Change::Put(contents) => files::is_same(path, contents, MODE, Ownership::default()),
            Change::Remove => std::fs::symlink_metadata(path).is_err(),
        }
    }

    async fn ask(&self, file: Option<(PathBuf, Change)>, always: bool, lane: Lane) -> Result<Applied, StepError> {
        let path = file.as_ref().map(|(p, _)| p.clone());
        if let Some(path) = &path {
            *self.shared.lock().expect("config queue lock").pending.entry(path.clone()).or_default() += 1;
        }
        let (answer, answered) = oneshot::channel();
        let bulk = lane == Lane::Bulk;
        if self.inbox.send(Request { file, always, bulk, answer }).is_err() {
            if let Some(path) = &path {
                done_with(&self.shared, path);
            }
            return Err(StepError::transient("the web server's config queue has stopped; run the task again"));
        }
        answered.await.unwrap_or_else(|_| {
            Err(StepError::transient("the change to the web server's config was interrupted; run the task again"))
        })
    }
}

fn done_with(shared: &Mutex<Shared>, path: &Path) {
    let mut shared = shared.lock().expect("config queue lock");
    if let Some(n) = shared.pending.get_mut(path) {
        *n -= 1;
        if *n == 0 {
            shared.pending.remove(path);
        }
    }
}

/// Collects changes for a window, makes them live, and again, until every handle is gone.
async fn cycles<S: Server>(
    server: S,
    mut window: Window,
    mut requests: mpsc::UnboundedReceiver<Request>,
    shared: Arc<Mutex<Shared>>,
    config: Arc<tokio::sync::Mutex<()>>,
) {
    // Second changes to a file already in a batch wait for the next one.
    let mut carried: VecDeque<Request> = VecDeque::new();
    let mut ended = Instant::now();
    loop {
        let first = match carried.pop_front() {
            Some(request) => request,
            None => match requests.recv().await {
                Some(request) => request,
                None => return,
            },
        };
        let opened = Instant::now();
        if opened - ended > window.longest() {
            window = window.after_a_while();
        }
        let mut batch = vec![first];
        batch.extend(carried.drain(..));
        let mut bulk = batch.iter().all(|r| r.bulk);
        let (open_until, close) = (opened + window.shortest(), opened + window.longest());
        let (mut last, mut lull) = (opened, Duration::ZERO);
        // Checked before waiting: changes that are ready at once would keep it open.
        while Instant::now() < close && !window.is_full(batch.len()) {
            let until = close.min(open_until.max(last + window.quiet(batch.len(), last - opened, bulk)));
            match tokio::time::timeout_at(until, requests.recv()).await {
                Ok(Some(request)) => {
                    bulk &= request.bulk;
                    batch.push(request);
                    lull = lull.max(last.elapsed());
                    last = Instant::now();
                }
                Ok(None) | Err(_) => break,
            }
        }
        let waited = opened.elapsed();
        let full = window.is_full(batch.len());
        let mut files = HashSet::new();
        let (now, later): (Vec<Request>, Vec<Request>) =
            batch.into_iter().partition(|r| r.file.as_ref().is_none_or(|(path, _)| files.insert(path.clone())));
        carried.extend(later);
        let _config = config.lock().await;
        let report = cycle(&server, now, &shared).await;
        tracing::info!(
            changes = report.changes,
            refused = report.refused,
            unchanged = report.unchanged,
            tests = report.tests,
            reloaded = report.reloaded,
            waited_ms = waited.as_millis() as u64,
            lull_ms = lull.as_millis() as u64,
            test_ms = report.testing.as_millis() as u64,
            flush_ms = report.flushing.as_millis() as u64,
            reload_ms = report.reloading.as_millis() as u64,
            "web server config applied"
        );
        if report.reloaded && report.tests > 0 {
            window = window.after(report.testing + report.flushing + report.reloading, lull, full);
        }
        ended = Instant::now();
    }
}

#[derive(Debug, Default)]
struct Report {
    changes: usize,
    refused: usize,
    unchanged: usize,
    tests: usize,
    reloaded: bool,
    testing: Duration,
    flushing: Duration,
    reloading: Duration,
}

/// A change written to disk in this cycle, with what the file held before.
struct Entry {
    path: PathBuf,
    change: Change,
    previous: Option<Vec<u8>>,
    answer: oneshot::Sender<Result<Applied, StepError>>,
}

impl Entry {
    fn put_back(&self) -> Result<(), StepError> {
        put(&self.path, self.previous.as_deref()).map(|_| ())
    }

    fn put_again(&self) -> Result<(), StepError> {
        let contents = match &self.change {
            Change::Put(contents) => Some(contents.as_slice()),
            Change::Remove => None,
        };
        put(&self.path, contents).map(|_| ())
    }
}

/// Writes `contents` to `path`, or removes it (`None`); returns whether it changed.
fn put(path: &Path, contents: Option<&[u8]>) -> Result<bool, StepError> {
    match contents {
        Some(contents) => files::write_deferred(path, contents, MODE, Ownership::default()),
        None => {
            let removed = files::remove_file(path)?;
            if removed {
                files::note_unflushed(path);
            }
            Ok(removed)
        }
    }
}

/// One cycle: write every change, test, settle a failed test, reload, answer.
async fn cycle<S: Server>(server: &S, batch: Vec<Request>, shared: &Mutex<Shared>) -> Report {
    let mut report = Report::default();
    let mut written = Vec::new();
    let mut unchanged = Vec::new();
    let mut reload_only = Vec::new();
    let mut always = false;
    for request in batch {
        always |= request.always;
        let Some((path, change)) = request.file else {
            reload_only.push(request.answer);
            continue;
        };
        let previous = std::fs::read(&path).ok();
        let contents = match &change {
            Change::Put(contents) => Some(contents.as_slice()),
            Change::Remove => None,
        };
        match put(&path, contents) {
            Ok(true) => written.push(Entry { path, change, previous, answer: request.answer }),
            Ok(false) => unchanged.push((path, request.answer)),
            Err(e) => {
                let _ = request.answer.send(Err(e));
                done_with(shared, &path);
            }
        }
    }
    report.changes = written.len();
    report.unchanged = unchanged.len();

    let mut kept = Vec::new();
    if !written.is_empty() {
        let started = Instant::now();
        let mut outcome = Outcome::default();
        settle(server, written, &mut outcome).await;
        report.testing = started.elapsed();
        report.tests = outcome.tests;
        report.refused = outcome.refused.len();
        for (entry, error) in outcome.refused {
            let _ = entry.answer.send(Err(error));
            done_with(shared, &entry.path);
        }
        kept = outcome.kept;
    }

    let owed = shared.lock().expect("config queue lock").owed;
    let together = kept.len().saturating_sub(1);
    let result = if kept.is_empty() && !always && !owed {
        Ok(())
    } else {
        let started = Instant::now();
        // On disk before anyone is told it is done: these files, and what the steps
        // wrote before asking (their settings).
        let flushed = files::flush().await;
        report.flushing = started.elapsed();
        let started = Instant::now();
        let result = match flushed {
            Ok(()) => server.reload().await,
            Err(e) => Err(e),
        };
        report.reloading = started.elapsed();
        report.reloaded = result.is_ok();
        shared.lock().expect("config queue lock").owed = result.is_err();
        result
    };
    for entry in kept {
        let _ = entry.answer.send(result.clone().map(|()| Applied { changed: true, together }));
        done_with(shared, &entry.path);
    }
    for (path, answer) in unchanged {
        let _ = answer.send(result.clone().map(|()| Applied { changed: false, together: 0 }));
        done_with(shared, &path);
    }
    for answer in reload_only {
        let _ = answer.send(result.clone().map(|()| Applied { changed: false, together: 0 }));
    }
    report
}

#[derive(Default)]
struct Outcome {
    kept: Vec<Entry>,
    refused: Vec<(Entry, StepError)>,
    tests: usize,
}

impl Outcome {
    fn refuse(&mut self, entry: Entry, error: StepError) {
        if let Err(e) = entry.put_back() {
            tracing::error!(file = %entry.path.display(), error = %e, "could not put a refused change back");
        }
        self.refused.push((entry, error));
    }
}

/// Tests the config with every entry in place, and when that fails finds the entries to
/// blame and puts them back.
async fn settle<S: Server>(server: &S, entries: Vec<Entry>, out: &mut Outcome) {
    out.tests += 1;
    let Err(failure) = server.test().await else {
        out.kept.extend(entries);
        return;
    };
    // One change, or a test that could not run (timed out, say): nothing to blame.
    if entries.len() == 1 || failure.transient {
        for entry in entries {
            out.refuse(entry, failure.clone());
        }
        return;
    }
    // Without any of them: when the config fails anyway, none of them can be tested now.
    for entry in &entries {
        if let Err(e) = entry.put_back() {
            tracing::error!(file = %entry.path.display(), error = %e, "could not put a change back to test without it");
        }
    }
    out.tests += 1;
    if server.test().await.is_err() {
        for entry in entries {
            out.refuse(entry, failure.clone());
        }
        return;
    }
    blame(server, entries, failure, out).await;
}

type Settling<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// `entries` are not in place; what is kept passes the test, and with all of `entries`
/// too the test failed with `failure`.
fn blame<'a, S: Server>(
    server: &'a S,
    mut entries: Vec<Entry>,
    failure: StepError,
    out: &'a mut Outcome,
) -> Settling<'a> {
    Box::pin(async move {
        if entries.len() == 1 {
            let entry = entries.pop().expect("one entry");
            out.refused.push((entry, failure));
            return;
        }
        // The web server names the file it stopped at.
        let named = entries.iter().position(|e| failure.reason.contains(&e.path.display().to_string()));
        if let Some(i) = named {
            let entry = entries.remove(i);
            out.refused.push((entry, failure));
            return try_with(server, entries, out).await;
        }
        let second = entries.split_off(entries.len() / 2);
        try_with(server, entries, out).await;
        try_with(server, second, out).await;
    })
}

/// Puts `entries` in place on top of what is kept and tests; blames them when it fails.
fn try_with<'a, S: Server>(server: &'a S, entries: Vec<Entry>, out: &'a mut Outcome) -> Settling<'a> {
    Box::pin(async move {
        if entries.is_empty() {
            return;
        }
        let mut placed = Vec::with_capacity(entries.len());
        for entry in entries {
            match entry.put_again() {
                Ok(()) => placed.push(entry),
                Err(e) => out.refuse(entry, e),
            }
        }
        out.tests += 1;
        match server.test().await {
            Ok(()) => out.kept.extend(placed),
            Err(failure) => {
                for entry in &placed {
                    if let Err(e) = entry.put_back() {
                        tracing::error!(file = %entry.path.display(), error = %e, "could not put a change back");
                    }
                }
                blame(server, placed, failure, out).await;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;

    /// A web server whose config is the files of one directory: the test fails on a
    /// file holding `bad` (naming it) or `hidden-bad` (not naming it), or when the
    /// whole server is broken; a reload makes the directory's files live.
    #[derive(Default)]
    struct Fake {
        dir: PathBuf,
        cost: Duration,
        tests: AtomicUsize,
        reloads: AtomicUsize,
        broken: AtomicBool,
        test_times_out: AtomicBool,
        reload_fails: AtomicBool,
        live: Mutex<HashMap<PathBuf, Vec<u8>>>,
    }

    impl Server for Arc<Fake> {
        async fn test(&self) -> Result<(), StepError> {
            self.tests.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.cost).await;
            if self.broken.load(Ordering::SeqCst) {
                return Err(StepError::permanent("nginx: [emerg] the main config is broken"));
            }
            if self.test_times_out.load(Ordering::SeqCst) {
                return Err(StepError::transient("`nginx` did not finish within 60 s"));
            }
            for (path, contents) in self.files() {
                if contents.starts_with(b"hidden-bad") {
                    return Err(StepError::permanent("nginx: [emerg] something somewhere"));
                }
                if contents.starts_with(b"bad") {
                    return Err(StepError::permanent(format!("nginx: [emerg] bad directive in {}:1", path.display())));
                }
            }
            Ok(())
        }

        async fn reload(&self) -> Result<(), StepError> {
            tokio::time::sleep(self.cost).await;
            if self.reload_fails.load(Ordering::SeqCst) {
                return Err(StepError::permanent("nginx is not running"));
            }
            self.reloads.fetch_add(1, Ordering::SeqCst);
            *self.live.lock().unwrap() = self.files();
            Ok(())
        }
    }

    impl Fake {
        fn new(dir: &Path, cost: Duration) -> Arc<Fake> {
            Arc::new(Fake { dir: dir.to_path_buf(), cost, ..Default::default() })
        }

        fn files(&self) -> HashMap<PathBuf, Vec<u8>> {
            std::fs::read_dir(&self.dir)
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "conf"))
                .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
                .collect()
        }

        fn is_live(&self, path: &Path, contents: &[u8]) -> bool {
            self.live.lock().unwrap().get(path).is_some_and(|live| live == contents)
        }
    }

    fn vhost(dir: &Path, n: usize) -> PathBuf {
        dir.join(format!("site{n}.example.com.conf"))
    }

    /// Asks for `changes` at once; each caller checks its change is live when answered.
    async fn burst(
        queue: &Queue,
        fake: &Arc<Fake>,
        changes: Vec<(PathBuf, Vec<u8>)>,
    ) -> Vec<Result<Applied, StepError>> {
        let asks: Vec<_> = changes
            .into_iter()
            .map(|(path, contents)| {
                let (queue, fake) = (queue.clone(), fake.clone());
                tokio::spawn(async move {
                    let result = queue.apply(&path, Change::Put(contents.clone()), Reload::IfChanged).await;
                    if result.is_ok() {
                        assert!(fake.is_live(&path, &contents), "{} answered before it was live", path.display());
                    }
                    result
                })
            })
            .collect();
        let mut results = Vec::new();
        for ask in asks {
            results.push(ask.await.unwrap());
        }
        results
    }

    #[test]
    fn the_window_follows_the_last_test_and_reload_and_the_stream_of_changes() {
        let after = |cost_ms: u64| Window::default().after(Duration::from_millis(cost_ms), Duration::ZERO, false);
        let ms = Duration::from_millis;
        let new_server = Window::default();
        assert_eq!(new_server.quiet(1, Duration::ZERO, false), Window::QUIET_MIN, "a lone change waits a moment only");
        assert_eq!(new_server.shortest(), Duration::ZERO);
        assert_eq!(new_server.longest(), Window::LONGEST_MIN);

        let small = after(30);
        assert_eq!(small.quiet(1, Duration::ZERO, false), Window::QUIET_MIN);
        assert_eq!(small.shortest(), ms(30));
        assert_eq!(small.quiet(101, Duration::from_secs(2), false), ms(160), "8 gaps of a stream of 50 a second");
        assert_eq!(small.quiet(3, Duration::from_secs(10), false), Window::QUIET_MAX, "a slow trickle is no stream");

        assert_eq!(after(1_600).quiet(1, Duration::ZERO, false), ms(200));
        assert_eq!(after(3_000).longest(), Duration::from_secs(12));
        let large = after(4_000);
        assert_eq!(large.quiet(1, Duration::ZERO, false), Window::QUIET_MAX, "a quarter second ends a burst");
        assert_eq!(large.shortest(), ms(4_000), "what came during a long cycle waits for what follows");
        assert_eq!(large.longest(), Duration::from_secs(16), "a stream is cut after four cycles");
        assert_eq!(after(600_000).longest(), Window::LONGEST_MAX);
        assert_eq!(after(600_000).shortest(), Window::LONGEST_MAX);

        // A fleet operation's tasks come in bursts: the next window waits out a lull as
        // long as the longest in the last one (2.5 s at least after a full one), up to a
        // quarter of its longest.
        let fleet = large.after(ms(1_000), ms(1_500), false);
        assert_eq!(fleet.quiet(1, Duration::ZERO, false), ms(1_500));
        assert_eq!(large.after(ms(1_000), ms(300), true).quiet(1, Duration::ZERO, false), ms(2_500));
        assert_eq!(large.after(ms(1_000), Duration::from_secs(30), true).quiet(1, Duration::ZERO, false), ms(2_500));
        assert_eq!(
            fleet.after_a_while().quiet(1, Duration::ZERO, false),
            ms(125),
            "once the stream is over, it is over"
        );

        // Changes no one watches one by one wait out a lull as long as a test and reload,
        // up to a quarter of the longest window; a person's change in the window ends that.
        assert_eq!(large.quiet(1, Duration::ZERO, true), ms(4_000));
        assert_eq!(after(600_000).quiet(1, Duration::ZERO, true), Duration::from_secs(5));
        assert_eq!(small.quiet(1, Duration::ZERO, true), Window::QUIET_MIN, "a quick server waits no longer");
        assert_eq!(new_server.quiet(1, Duration::ZERO, true), ms(1_000), "a reload not timed yet is taken as a second");
        assert_eq!(large.after_a_while().quiet(1, Duration::ZERO, true), ms(4_000), "a reload costs what it costs");

        let five_steps = Window::for_steps(5);
        assert!(
            !five_steps.is_full(1) && five_steps.is_full(2),
            "a fleet operation runs four steps at most: two fill a window while two more come"
        );
        assert!(Window::for_steps(4).is_full(2), "three steps: two in a window");
        assert!(Window::for_steps(2).is_full(1) && Window::for_steps(1).is_full(1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_steady_stream_of_changes_is_cut_into_windows() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Fake::new(dir.path(), Duration::from_millis(5));
        let queue = Queue::start_with(fake.clone(), Window::default().cut_after(Duration::from_secs(2)));
        // A change every 10 ms for 6 s: never a lull, so the longest window cuts it.
        let mut asks = Vec::new();
        let started = Instant::now();
        for n in 0..600 {
            let (queue, fake, path) = (queue.clone(), fake.clone(), vhost(dir.path(), n));
            asks.push(tokio::spawn(async move { burst(&queue, &fake, vec![(path, b"server".to_vec())]).await }));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for ask in asks {
            let result = ask.await.unwrap();
            assert!(result[0].is_ok(), "{result:?}");
        }
        let streamed = started.elapsed();
        let windows = (streamed.as_secs_f64() / 2.0).ceil() as usize;
        let reloads = fake.reloads.load(Ordering::SeqCst);
        assert!((2..=windows + 1).contains(&reloads), "{reloads} reloads for a stream of {streamed:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_changes_is_one_test_and_one_reload_and_each_answer_comes_once_it_is_live() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Fake::new(dir.path(), Duration::from_millis(30));
        let queue = Queue::start(fake.clone(), usize::MAX);
        let changes = (0..200).map(|n| (vhost(dir.path(), n), format!("server {n}").into_bytes())).collect();
        let results = burst(&queue, &fake, changes).await;
        assert!(results.iter().all(|r| r.as_ref().is_ok_and(|a| a.changed && a.together == 199)), "{results:?}");
        assert_eq!((fake.tests.load(Ordering::SeqCst), fake.reloads.load(Ordering::SeqCst)), (1, 1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn changes_made_while_a_cycle_runs_share_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Fake::new(dir.path(), Duration::from_millis(100));
        let queue = Queue::start(fake.clone(), usize::MAX);
        let first = tokio::spawn({
            let (queue, fake, path) = (queue.clone(), fake.clone(), vhost(dir.path(), 0));
            async move { burst(&queue, &fake, vec![(path, b"first".to_vec())]).await }
        });
        // While the first change is being tested and loaded (its window closed 100 ms
        // after it came), 50 more arrive.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let changes = (1..=50).map(|n| (vhost(dir.path(), n), format!("server {n}").into_bytes())).collect();
        let results = burst(&queue, &fake, changes).await;
        assert!(results.iter().all(Result::is_ok));
        assert!(first.await.unwrap()[0].is_ok());
        assert_eq!(fake.reloads.load(Ordering::SeqCst), 2, "one reload for the first change, one for the others");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bulk_lane_changes_wait_out_a_lull_as_long_as_a_reload_and_peoples_do_not() {
        // Reloads for three changes of `lane` half a second apart, on a server whose test
        // and reload take 0.8 s together.
        async fn reloads_for(lane: Lane) -> usize {
            let dir = tempfile::tempdir().unwrap();
            let fake = Fake::new(dir.path(), Duration::from_millis(400));
            let queue = Queue::start(fake.clone(), usize::MAX);
            // One change first, so the queue has timed a test and reload.
            queue.apply(&vhost(dir.path(), 0), Change::Put(b"first".to_vec()), Reload::IfChanged).await.unwrap();
            let before = fake.reloads.load(Ordering::SeqCst);
            let mut asks = Vec::new();
            for n in 1..=3 {
                let (queue, path) = (queue.clone(), vhost(dir.path(), n));
                asks.push(tokio::spawn(async move {
                    queue.apply_in(&path, Change::Put(b"server".to_vec()), Reload::IfChanged, lane).await
                }));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            for ask in asks {
                assert!(ask.await.unwrap().is_ok());
            }
            fake.reloads.load(Ordering::SeqCst) - before
        }
        assert_eq!(reloads_for(Lane::Bulk).await, 1, "a fleet operation's changes share one reload");
        assert_eq!(reloads_for(Lane::Interactive).await, 2, "a person's change does not wait that long");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn changes_that_come_during_a_long_cycle_wait_for_the_next_wave() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Fake::new(dir.path(), Duration::from_millis(200));
        let queue = Queue::start(fake.clone(), usize::MAX);
        let wave = |from: usize| -> Vec<(PathBuf, Vec<u8>)> {
            (from..from + 50).map(|n| (vhost(dir.path(), n), b"server".to_vec())).collect()
        };
        let first = tokio::spawn({
            let (queue, fake, changes) = (queue.clone(), fake.clone(), wave(0));
            async move { burst(&queue, &fake, changes).await }
        });
        // Two stragglers while the first wave is tested and loaded (400 ms).
        tokio::time::sleep(Duration::from_millis(150)).await;
        let stragglers = tokio::spawn({
            let (queue, fake, changes) = (queue.clone(), fake.clone(), wave(100)[..2].to_vec());
            async move { burst(&queue, &fake, changes).await }
        });
        assert!(first.await.unwrap().iter().all(Result::is_ok));
        // The first wave's answers let the next wave start, a moment later.
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(burst(&queue, &fake, wave(200)).await.iter().all(Result::is_ok));
        assert!(stragglers.await.unwrap().iter().all(Result::is_ok));
        assert_eq!(fake.reloads.load(Ordering::SeqCst), 2, "the stragglers go with the next wave, not alone");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_window_closes_at_once_when_no_more_changes_can_come() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Fake::new(dir.path(), Duration::from_millis(5));
        // A fleet operation is under way (its last window had a lull of 2 s), and the
        // worker runs 21 steps at once: 20 for fleet operations, 10 of them a window.
        let window = Window::for_steps(21).after(Duration::ZERO, Duration::from_secs(2), true);
        let queue = Queue::start_with(fake.clone(), window);
        let started = Instant::now();
        let changes = (0..10).map(|n| (vhost(dir.path(), n), b"server".to_vec())).collect();
        assert!(burst(&queue, &fake, changes).await.iter().all(Result::is_ok));
        assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
        assert_eq!(fake.reloads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lone_change_on_a_quiet_server_is_live_in_well_under_a_second() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Fake::new(dir.path(), Duration::from_millis(5));
        let queue = Queue::start(fake.clone(), usize::MAX);
        let started = Instant::now();
        let results = burst(&queue, &fake, vec![(vhost(dir.path(), 1), b"server".to_vec())]).await;
        assert!(results[0].is_ok());
        assert!(started.elapsed() < Duration::from_millis(500), "took {:?}", started.elapsed());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unchanged_file_neither_tests_nor_reloads_unless_asked() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Fake::new(dir.path(), Duration::from_millis(1));
        let queue = Queue::start(fake.clone(), usize::MAX);
        let path = vhost(dir.path(), 1);
        assert!(queue.apply(&path, Change::Put(b"same".to_vec()), Reload::IfChanged).await.unwrap().changed);
        let again = queue.apply(&path, Change::Put(b"same".to_vec()), Reload::IfChanged).await.unwrap();
        assert!(!again.changed);
        assert!(!queue.apply(&vhost(dir.path(), 2), Change::Remove, Reload::IfChanged).await.unwrap().changed);
        assert_eq!((fake.tests.load(Ordering::SeqCst), fake.reloads.load(Ordering::SeqCst)), (1, 1));
        let forced = queue.apply(&path, Change::Put(b"same".to_vec()), Reload::Always).await.unwrap();
        assert!(!forced.changed);
        assert_eq!((fake.tests.load(Ordering::SeqCst), fake.reloads.load(Ordering::SeqCst)), (1, 2));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_change_that_fails_the_test_is_put_back_and_the_others_go_live() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Fake::new(dir.path(), Duration::from_millis(5));
        let queue = Queue::start(fake.clone(), usize::MAX);
        let old = vhost(dir.path(), 7);
        std::fs::write(&old, b"server 7 as it was").unwrap();
        let mut changes: Vec<_> = (0..64).map(|n| (vhost(dir.path(), n), format!("server {n}").into_bytes())).collect();
        changes[7].1 = b"bad server 7".to_vec();
        changes[20].1 = b"bad server 20".to_vec();
        let results = burst(&queue, &fake, changes).await;
        for (n, result) in results.iter().enumerate() {
            match n {
                7 | 20 => {
                    let reason = &result.as_ref().unwrap_err().reason;
                    assert!(reason.contains(&vhost(dir.path(), n).display().to_string()), "{reason}");
                }
                _ => assert!(result.is_ok(), "{n}: {result:?}"),
            }
        }
        assert_eq!(std::fs::read(&old).unwrap(), b"server 7 as it was", "the refused change is put back");
        assert!(!vhost(dir.path(), 20).exists(), "a refused new file is removed");
        assert_eq!(fake.reloads.load(Ordering::SeqCst), 1);
        // All, then none, then without each named one in turn.
        assert_eq!(fake.tests.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_change_the_server_does_not_name_is_found_by_halving() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Fake::new(dir.path(), Duration::from_millis(1));
        let queue = Queue::start(fake.clone(), usize::MAX);
        let mut changes: Vec<_> = (0..64).map(|n| (vhost(dir.path(), n), format!("server {n}").into_bytes())).collect();
        changes[41].1 = b"hidden-bad server".to_vec();
        let results = burst(&queue, &fake, changes).await;
        let refused: Vec<usize> = (0..64).filter(|n| results[*n].is_err()).collect();
        assert_eq!(refused, vec![41]);
        assert!(!vhost(dir.path(), 41).exists());
        assert!(fake.tests.load(Ordering::SeqCst) <= 2 + 2 * 6, "halving takes a few tests, not one per change");
        assert_eq!(fake.reloads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn when_the_config_fails_without_the_changes_too_every_change_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Fake::new(dir.path(), Duration::from_millis(1));
        fake.broken.store(true, Ordering::SeqCst);
        let queue = Queue::start(fake.clone(), usize::MAX);
        let changes = (0..10).map(|n| (vhost(dir.path(), n), b"server".to_vec())).collect();
        let results = burst(&queue, &fake, changes).await;
        assert!(results.iter().all(|r| r.as_ref().is_err_and(|e| e.reason.contains("main config is broken"))));
        assert_eq!(fake.files().len(), 0, "every change is put back");
        assert_eq!((fake.tests.load(Ordering::SeqCst), fake.reloads.load(Ordering::SeqCst)), (2, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_test_that_could_not_run_blames_no_change() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Fake::new(dir.path(), Duration::from_millis(1));
        fake.test_times_out.store(true, Ordering::SeqCst);
        let queue = Queue::start(fake.clone(), usize::MAX);
        let changes = (0..10).map(|n| (vhost(dir.path(), n), b"server".to_vec())).collect();
        let results = burst(&queue, &fake, changes).await;
        assert!(results.iter().all(|r| r.as_ref().is_err_and(|e| e.transient)), "{results:?}");
        assert_eq!(fake.files().len(), 0, "every change is put back, to be tried again");
        assert_eq!(fake.tests.load(Ordering::SeqCst), 1, "no halving over a test that could not run");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn after_a_failed_reload_an_unchanged_file_still_waits_for_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Fake::new(dir.path(), Duration::from_millis(1));
        let queue = Queue::start(fake.clone(), usize::MAX);
        let path = vhost(dir.path(), 1);
        fake.reload_fails.store(true, Ordering::SeqCst);
        let failed = queue.apply(&path, Change::Put(b"server".to_vec()), Reload::IfChanged).await;
        assert!(failed.is_err_and(|e| e.reason.contains("not running")));
        fake.reload_fails.store(false, Ordering::SeqCst);
        // The file is on disk already; the verify run again must still end in a reload.
        let again = queue.apply(&path, Change::Put(b"server".to_vec()), Reload::IfChanged).await.unwrap();
        assert!(!again.changed);
        assert!(fake.is_live(&path, b"server"));
        assert_eq!(fake.reloads.load(Ordering::SeqCst), 1);
    }
}
