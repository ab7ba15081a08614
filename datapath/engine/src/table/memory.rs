//! How a table's big arrays sit in memory.

/// Bytes of a transparent huge page on x86-64 and arm64 (4 KiB base pages).
const HUGE_PAGE: usize = 2 << 20;

/// Ask the kernel to back the whole huge pages inside `bytes` from `ptr`
/// with transparent huge pages (`MADV_HUGEPAGE`; machines that set THP to
/// `madvise`, the common default, give them to nobody else). A lookup in a
/// table of a million flows reads an index slot, an entry and now and then
/// its links, each somewhere in 100 MB: with 4 KiB pages nearly every one
/// is also a TLB miss and a page walk; with 2 MiB pages the whole table
/// fits the TLB. Call before the memory is first written: pages are
/// faulted in as the table fills (then 2 MiB at a time). Only a hint: a
/// kernel without THP, or out of huge pages, gives small ones.
pub(super) fn advise_huge_pages<T>(ptr: *const T, bytes: usize) {
    #[cfg(target_os = "linux")]
    {
        let start = (ptr as usize).next_multiple_of(HUGE_PAGE);
        let end = (ptr as usize).saturating_add(bytes) & !(HUGE_PAGE - 1);
        if end > start {
            // SAFETY: the range lies inside one live allocation of ours,
            // and MADV_HUGEPAGE changes only how the kernel backs it, never
            // its contents; a failure (EINVAL without THP) changes nothing.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, bytes);
}
