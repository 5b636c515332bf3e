//! glibc malloc settings for a process that runs librdkafka.
//!
//! librdkafka compresses every produce request's batch with a fresh LZ4 context (zstd, gzip and snappy
//! likewise): a `calloc` of tens of kilobytes, zeroed, then freed. With glibc's default trim threshold the
//! freed top of the heap goes back to the OS after each batch and is faulted in again for the next one:
//! measured on the ingress at 3,000 webhooks/s on Apache Kafka, about 4 page faults per webhook and 7% of its
//! CPU time. [`keep_freed_memory`] keeps up to 16 MiB free at the top of each heap instead; the cost is that
//! much resident memory, at most, that the process no longer returns between bursts.

/// Free memory kept at the top of each glibc heap rather than returned to the OS.
pub const TRIM_THRESHOLD_BYTES: i32 = 16 << 20;

/// Applies the settings above; call once, first thing in `main` (no effect off glibc).
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: `mallopt` only sets a malloc parameter; it is called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES);
    }
}
