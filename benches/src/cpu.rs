//! CPU time the system's processes spend on a workload, read from `/proc/<pid>/stat`:
//! on a small machine a throughput figure is bound by the CPU, and this says whose.

use std::collections::BTreeMap;
use std::time::Duration;

use aegir_e2e::System;

use crate::memory;

/// Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ, fixed at 100 by the
/// kernel's ABI on the architectures this runs on).
const TICKS_PER_SECOND: f64 = 100.0;

/// What is counted: the system's services, the database and the broker (every process
/// of theirs on the machine), and this benchmark's own client.
const OTHERS: [(&str, &str); 2] = [("postgres", "postgresql"), ("beam.smp", "rabbitmq")];
const CLIENT: &str = "aegir-bench (the client)";

/// CPU time so far of each group of processes.
pub struct CpuTimes(BTreeMap<&'static str, Duration>);

impl CpuTimes {
    pub fn now(system: &System) -> Self {
        let mut times = BTreeMap::new();
        let services = memory::pids(system);
        let own = std::process::id();
        let Ok(entries) = std::fs::read_dir("/proc") else { return Self(times) };
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            let Some((comm, time)) = stat(pid) else { continue };
            let group = if pid == own {
                Some(CLIENT)
            } else if let Some((service, _)) = services.iter().find(|(_, p)| *p == pid) {
                Some(*service)
            } else {
                OTHERS.iter().find(|(name, _)| comm == *name).map(|(_, group)| *group)
            };
            if let Some(group) = group {
                *times.entry(group).or_default() += time;
            }
        }
        Self(times)
    }

    /// Prints, per task, the CPU each group spent since `self`, their sum, and the rate
    /// that sum allows on this machine's cores.
    pub fn print_per_task(&self, later: &CpuTimes, tasks: usize) {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let mut spent: Vec<(&str, Duration)> = later
            .0
            .iter()
            .map(|(group, time)| (*group, time.saturating_sub(self.0.get(group).copied().unwrap_or_default())))
            .filter(|(_, time)| !time.is_zero())
            .collect();
        spent.sort_by_key(|(_, time)| std::cmp::Reverse(*time));
        let per_task = |time: Duration| time.as_secs_f64() * 1000.0 / tasks.max(1) as f64;
        println!("  CPU per task (/proc of each process, first request -> all done):");
        for (group, time) in &spent {
            println!("  {:<44} {:>10.2} ms", format!("  {group}"), per_task(*time));
        }
        let all = per_task(spent.iter().map(|(_, time)| *time).sum());
        println!(
            "  {:<44} {:>10.2} ms  -> at most {:.0} tasks/s on {cores} cores",
            "  all of them",
            all,
            cores as f64 * 1000.0 / all.max(f64::EPSILON)
        );
    }
}

/// The command name and the CPU time (user and system) of a process.
fn stat(pid: u32) -> Option<(String, Duration)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name is in parentheses and may hold spaces; the fields follow the last `)`.
    let (head, rest) = text.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_owned();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the state: utime and stime are the 12th and 13th fields.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some((comm, Duration::from_secs_f64(ticks as f64 / TICKS_PER_SECOND)))
}
