//! Progress of a long stream, for the lines a task log shows while it runs.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

const MIB: u64 = 1024 * 1024;

/// Counters a long stream updates and a logger reads, so progress can be reported while
/// the work runs on a blocking thread.
#[derive(Debug, Default)]
pub struct Progress {
    read: AtomicU64,
    written: AtomicU64,
}

impl Progress {
    pub fn add_read(&self, bytes: u64) {
        self.read.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn add_written(&self, bytes: u64) {
        self.written.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Bytes read so far: site files and dump for an archive, the archive for a check.
    pub fn read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    /// Bytes written so far to the store.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Calls `emit` with a line each time another tenth of `total` (at least 100 MiB;
    /// 100 MiB when the total is not known) has been read, until the handle is aborted.
    pub fn report<F, Fut>(self: &Arc<Self>, verb: &'static str, total: Option<u64>, mut emit: F) -> JoinHandle<()>
    where
        F: FnMut(String) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let progress = self.clone();
        let step = total.map_or(100 * MIB, |t| (t / 10).max(100 * MIB));
        tokio::spawn(async move {
            let started = Instant::now();
            let mut next = step;
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let read = progress.read();
                if read < next {
                    continue;
                }
                next = (read / step + 1) * step;
                let speed = rate(read, started.elapsed());
                let line = match total {
                    Some(total) if total > 0 => {
                        format!(
                            "{verb} {}% ({} of {}, {speed})",
                            read.min(total) * 100 / total,
                            size(read),
                            size(total)
                        )
                    }
                    _ => match progress.written() {
                        0 => format!("{verb} {} so far ({speed})", size(read)),
                        written => format!("{verb} {} so far, {} written ({speed})", size(read), size(written)),
                    },
                };
                emit(line).await;
            }
        })
    }

    /// [`Progress::report`] into a step's log, where the user following the task sees it.
    pub fn report_to_log(
        self: &Arc<Self>,
        log: &aegir_worker::StepLog,
        verb: &'static str,
        total: Option<u64>,
    ) -> JoinHandle<()> {
        let log = log.clone();
        self.report(verb, total, move |line| {
            let log = log.clone();
            async move { log.info(line).await }
        })
    }
}

/// `1.2 GiB`, `340.0 MiB`, `12.3 KiB`, `512 B`.
pub fn size(bytes: u64) -> String {
    let b = bytes as f64;
    if bytes >= 1024 * MIB {
        format!("{:.1} GiB", b / (1024 * MIB) as f64)
    } else if bytes >= MIB {
        format!("{:.1} MiB", b / MIB as f64)
    } else if bytes >= 1024 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

/// `95.3 MB/s`
pub fn rate(bytes: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(0.001);
    format!("{:.1} MB/s", bytes as f64 / secs / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(300 * MIB), "300.0 MiB");
        assert_eq!(size(1536 * MIB), "1.5 GiB");
        assert_eq!(rate(100_000_000, Duration::from_secs(2)), "50.0 MB/s");
    }

    #[tokio::test]
    async fn a_line_comes_for_each_hundred_mib_read() {
        let progress = Arc::new(Progress::default());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let handle = progress.report("archived", None, move |line| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(line);
            }
        });
        progress.add_read(250 * MIB);
        let line = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
        assert!(line.starts_with("archived 250.0 MiB so far"), "{line}");
        handle.abort();
    }
}
