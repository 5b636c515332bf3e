//! Fault injection for tests, compiled in only with the `fault-injection` feature (the end-to-end tests build
//! the processor with it; release builds never contain it).
//!
//! - `HOOKLINE_FAULT_ABORT_ON=<text>`: the process aborts (like a segfault or an out-of-memory kill) while
//!   mapping a webhook whose body contains `<text>`;
//! - `HOOKLINE_FAULT_PANIC_ON=<text>`: the mapping code panics on such a webhook.

#[cfg(feature = "fault-injection")]
mod enabled {
    use std::sync::OnceLock;

    struct Faults {
        abort_on: Option<Vec<u8>>,
        panic_on: Option<Vec<u8>>,
    }

    fn faults() -> &'static Faults {
        static FAULTS: OnceLock<Faults> = OnceLock::new();
        FAULTS.get_or_init(|| {
            let read = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty()).map(String::into_bytes);
            Faults { abort_on: read("HOOKLINE_FAULT_ABORT_ON"), panic_on: read("HOOKLINE_FAULT_PANIC_ON") }
        })
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
pub(crate) use enabled::on_mapping;

/// Without the `fault-injection` feature: nothing.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) fn on_mapping(_body: &[u8]) {}
