//! Keeping ferryd's memory flat however many bytes pass through it.
//!
//! Bundle bytes pass through short-lived buffers of their own size (a
//! websocket message, a request body, the store's write batch). glibc's malloc
//! serves allocations above `M_MMAP_THRESHOLD` with their own mapping, given
//! back to the kernel on free; but the threshold is dynamic: freeing such a
//! block raises it to that block's size (up to 32 MiB), so from the first
//! megabyte bundle on, megabyte buffers come from the heaps of up to 8 arenas
//! per core, which keep the freed memory. Measured with `ferry bench ingest`
//! (1 MiB payloads): peak RSS 145–165 MiB and growing with volume with the
//! dynamic threshold, ~105 MiB for 200 or 1000 bundles with it fixed at
//! 256 KiB (at 4 MiB: 112–141 MiB, growing again). The price: every
//! payload-sized buffer is a fresh mapping, so big bundles cost page faults
//! (about a quarter of ferryd's CPU with 1 MiB payloads, which are bound by
//! disk writes anyway); small bundles never reach the threshold.

/// Fixes malloc's mmap threshold, so that big buffers go back to the kernel
/// when freed. Call first thing in `main`, before any thread starts. False if
/// the allocator refused (elsewhere than glibc there is nothing to do: true).
pub fn tune_allocator() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        /// Above this, an allocation is its own mapping. Payload-sized
        /// buffers are above it; the many small ones (metadata, index keys,
        /// 100-byte bundles) stay on the heap, where they are cheap.
        const MMAP_THRESHOLD: libc::c_int = 256 * 1024;
        // SAFETY: mallopt only changes allocator parameters; setting
        // M_MMAP_THRESHOLD explicitly also turns off its dynamic adjustment.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    true
}
