//! Fault injection for tests, compiled in only with the `fault-injection` feature (the end-to-end tests build
//! the processor with it; release builds never contain it).
//!
//! - `HOOKLINE_FAULT_ABORT_ON=<text>`: the process aborts (like a segfault or an out-of-memory kill) while
//!   mapping a webhook whose body contains `<text>`;
//! - `HOOKLINE_FAULT_PANIC_ON=<text>`: the mapping code panics on such a webhook;
//! - `HOOKLINE_FAULT_STOP_AFTER_OFFSETS=<n>`: the process stops itself (SIGSTOP, until a SIGCONT) once, in
//!   its `n`-th transaction, after the group coordinator accepted its offsets and before it commits: the
//!   worst instant to freeze.

#[cfg(feature = "fault-injection")]
mod enabled {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    struct Faults {
        abort_on: Option<Vec<u8>>,
        panic_on: Option<Vec<u8>>,
        stop_after_offsets: Option<u64>,
    }

    fn faults() -> &'static Faults {
        static FAULTS: OnceLock<Faults> = OnceLock::new();
        FAULTS.get_or_init(|| {
            let read = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty()).map(String::into_bytes);
            Faults {
                abort_on: read("HOOKLINE_FAULT_ABORT_ON"),
                panic_on: read("HOOKLINE_FAULT_PANIC_ON"),
                stop_after_offsets: read("HOOKLINE_FAULT_STOP_AFTER_OFFSETS")
                    .and_then(|v| String::from_utf8(v).ok()?.parse().ok()),
            }
        })
    }

    pub fn on_offsets_sent() {
        static SENT: AtomicU64 = AtomicU64::new(0);
        let n = SENT.fetch_add(1, Ordering::Relaxed) + 1;
        if faults().stop_after_offsets == Some(n) {
            eprintln!("hookline-processor: fault injection: stopping between sending offsets and committing");
            let _ = std::process::Command::new("kill").arg("-STOP").arg(std::process::id().to_string()).status();
        }
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    pub fn on_mapping(body: &[u8]) {
        let f = faults();
        if f.abort_on.as_deref().is_some_and(|n| contains(body, n)) {
            eprintln!("hookline-processor: fault injection: aborting on a marked record");
            std::process::abort();
        }
        if f.panic_on.as_deref().is_some_and(|n| contains(body, n)) {
            panic!("fault injection: panicking on a marked record");
        }
    }
}

#[cfg(feature = "fault-injection")]
pub(crate) use enabled::{on_mapping, on_offsets_sent};

/// Without the `fault-injection` feature: nothing.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) fn on_mapping(_body: &[u8]) {}

/// Without the `fault-injection` feature: nothing.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) fn on_offsets_sent() {}
