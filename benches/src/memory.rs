//! Resident memory of the system's services, read from `/proc/<pid>/status`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aegir_e2e::{SERVICES, System};

/// `VmRSS` in KiB, `None` when the process is gone.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS")
}

/// A KiB figure of `/proc/<pid>/status`, e.g. `VmHWM` (the peak resident size).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.split_once(':').is_some_and(|(name, _)| name == field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Each service's pid.
pub fn pids(system: &System) -> Vec<(&'static str, u32)> {
    SERVICES.iter().filter_map(|s| system.pid(s).map(|pid| (*s, pid))).collect()
}

pub fn snapshot(pids: &[(&'static str, u32)]) -> BTreeMap<&'static str, u64> {
    pids.iter().filter_map(|(s, pid)| rss_kib(*pid).map(|kib| (*s, kib))).collect()
}

/// Samples every 50 ms until stopped and keeps each service's peak.
pub struct PeakSampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<BTreeMap<&'static str, u64>>,
}

impl PeakSampler {
    pub fn start(pids: Vec<(&'static str, u32)>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut peak = BTreeMap::new();
            while !flag.load(Ordering::Relaxed) {
                for (service, kib) in snapshot(&pids) {
                    let entry = peak.entry(service).or_insert(0);
                    *entry = (*entry).max(kib);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            peak
        });
        Self { stop, task }
    }

    pub async fn finish(self) -> BTreeMap<&'static str, u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or_default()
    }
}

pub fn print(at_rest: &BTreeMap<&'static str, u64>, peak: &BTreeMap<&'static str, u64>) {
    println!("  resident memory (VmRSS)                      at rest    peak under the workload");
    for service in SERVICES {
        let mib = |m: &BTreeMap<&'static str, u64>| {
            m.get(service).map_or("-".into(), |k| format!("{:.1} MiB", *k as f64 / 1024.0))
        };
        println!("  {service:<44} {:>10}  {:>10}", mib(at_rest), mib(peak));
    }
}
