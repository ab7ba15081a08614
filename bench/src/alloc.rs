//! Counting allocations: [`Counting`], a global allocator that forwards
//! every call to the system allocator and counts the calling thread's
//! allocations, reallocations and frees — what proves that a path (the
//! engine's, per packet and per batch) allocates nothing once set up.
//!
//! A test binary installs it (`#[global_allocator] static A: Counting =
//! Counting;`) and measures with [`allocations_during`]. Only the calling
//! thread is counted, so other threads' work does not blur the figure.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Calls into the allocator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// `alloc` and `alloc_zeroed`.
    pub allocs: u64,
    pub reallocs: u64,
    pub frees: u64,
}

impl Counts {
    pub const ZERO: Counts = Counts {
        allocs: 0,
        reallocs: 0,
        frees: 0,
    };

    /// The calls made since `before` was read.
    pub fn since(self, before: Counts) -> Counts {
        Counts {
            allocs: self.allocs - before.allocs,
            reallocs: self.reallocs - before.reallocs,
            frees: self.frees - before.frees,
        }
    }

    /// Every call, of any kind.
    pub fn total(self) -> u64 {
        self.allocs + self.reallocs + self.frees
    }
}

thread_local! {
    // Const-initialised and without a destructor: reading it never allocates.
    static COUNTS: Cell<Counts> = const { Cell::new(Counts::ZERO) };
}

fn bump(f: impl FnOnce(&mut Counts)) {
    // `try_with`: a thread being torn down may still free memory.
    let _ = COUNTS.try_with(|c| {
        let mut v = c.get();
        f(&mut v);
        c.set(v);
    });
}

/// The calling thread's calls so far (zero unless [`Counting`] is the
/// global allocator).
pub fn counts() -> Counts {
    COUNTS.with(Cell::get)
}

/// What `f` cost the allocator on this thread.
pub fn allocations_during(f: impl FnOnce()) -> Counts {
    let before = counts();
    f();
    counts().since(before)
}

/// The system allocator, counting the calling thread's calls.
pub struct Counting;

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counting touches only a thread-local `Cell`, which does not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump(|c| c.allocs += 1);
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump(|c| c.allocs += 1);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump(|c| c.reallocs += 1);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        bump(|c| c.frees += 1);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}
