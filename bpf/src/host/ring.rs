//! A BPF ring buffer read in place: records are handed out as views into
//! the kernel's pages, a batch at a time, and given back together.
//!
//! libbpf's `ring_buffer__consume` calls a callback per record and frees
//! its place as soon as the callback returns, so a batch would have to be
//! copied out; here the consumer position moves only at
//! [`RingReader::release`], so every record of a batch stays where the
//! kernel wrote it until the engine has judged the whole batch.
//!
//! Layout (kernel/bpf/ringbuf.c): the map's first page holds the consumer
//! position (written by us), the second the producer position (written by
//! the kernel), and the data pages follow, mapped twice in a row so that a
//! record that wraps around the end reads as one slice. Each record starts
//! with an 8-byte header: its length with the BUSY bit (still being
//! written) and the DISCARD bit, and a page offset we do not need; records
//! are 8-byte aligned.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

const BUSY_BIT: u32 = 1 << 31;
const DISCARD_BIT: u32 = 1 << 30;
const HDR_SIZE: u64 = 8;

/// Where one record of the current batch is: an offset into the data area
/// and its length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordAt {
    offset: u32,
    len: u32,
}

/// A ring buffer map, mapped for reading.
#[derive(Debug)]
pub struct RingReader {
    fd: OwnedFd,
    consumer_page: NonNull<u8>,
    rest: NonNull<u8>,
    page: usize,
    /// Data area size (the map's max_entries, a power of two).
    size: u64,
    /// Consumer position after the records taken and not yet released.
    taken_to: u64,
}

// SAFETY: the mapping is owned by the reader and only read through it (the
// consumer position written); moving it to another thread is fine.
unsafe impl Send for RingReader {}

impl RingReader {
    /// Map the ring buffer `fd` (a BPF_MAP_TYPE_RINGBUF of `size` bytes).
    pub fn new(fd: BorrowedFd<'_>, size: u32) -> io::Result<RingReader> {
        let size = u64::from(size);
        if !size.is_power_of_two() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("ring buffer size {size} is not a power of two"),
            ));
        }
        let fd = fd.try_clone_to_owned()?;
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        // SAFETY: a fresh shared mapping of the map's consumer page; the
        // kernel validates fd, length and offset.
        let consumer = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if consumer == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let rest_len = page + 2 * size as usize;
        // SAFETY: as above: the producer page and the doubled data area,
        // read-only.
        let rest = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                rest_len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                page as libc::off_t,
            )
        };
        if rest == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            // SAFETY: unmapping what was mapped above.
            unsafe { libc::munmap(consumer, page) };
            return Err(e);
        }
        let mut reader = RingReader {
            fd,
            consumer_page: NonNull::new(consumer.cast()).expect("mmap returned a mapping"),
            rest: NonNull::new(rest.cast()).expect("mmap returned a mapping"),
            page,
            size,
            taken_to: 0,
        };
        reader.taken_to = reader.consumer_pos().load(Ordering::Acquire);
        Ok(reader)
    }

    fn consumer_pos(&self) -> &AtomicU64 {
        // SAFETY: the consumer page starts with the 8-byte aligned
        // consumer position; the page lives as long as `self`.
        unsafe { &*self.consumer_page.as_ptr().cast::<AtomicU64>() }
    }

    fn producer_pos(&self) -> &AtomicU64 {
        // SAFETY: as above, for the producer page.
        unsafe { &*self.rest.as_ptr().cast::<AtomicU64>() }
    }

    fn data(&self) -> *const u8 {
        // SAFETY: the data area follows the producer page in the mapping.
        unsafe { self.rest.as_ptr().add(self.page) }
    }

    /// Bytes written and not yet taken.
    pub fn pending(&self) -> u64 {
        self.producer_pos()
            .load(Ordering::Acquire)
            .saturating_sub(self.taken_to)
    }

    /// Take up to `max` complete records after those already taken into
    /// `out` (cleared first); they stay valid until [`RingReader::release`].
    /// Discarded records are skipped. Returns how many were taken.
    pub fn take(&mut self, out: &mut Vec<RecordAt>, max: usize) -> usize {
        out.clear();
        let producer = self.producer_pos().load(Ordering::Acquire);
        while out.len() < max && self.taken_to < producer {
            let at = self.taken_to & (self.size - 1);
            // SAFETY: `at` is inside the data area and 8-aligned; the
            // header's length word is written atomically by the kernel.
            let hdr = unsafe { &*self.data().add(at as usize).cast::<AtomicU32>() };
            let len = hdr.load(Ordering::Acquire);
            if len & BUSY_BIT != 0 {
                break;
            }
            let data_len = len & !(BUSY_BIT | DISCARD_BIT);
            let total = (u64::from(data_len) + HDR_SIZE + 7) & !7;
            if len & DISCARD_BIT == 0 {
                out.push(RecordAt {
                    offset: (at + HDR_SIZE) as u32,
                    len: data_len,
                });
            }
            self.taken_to += total;
        }
        out.len()
    }

    /// A record taken by the current batch.
    #[inline]
    pub fn record(&self, at: &RecordAt) -> &[u8] {
        let end = u64::from(at.offset) + u64::from(at.len);
        if end > 2 * self.size {
            return &[];
        }
        // SAFETY: the record lies within the doubly mapped data area
        // (checked), was committed by the kernel (not BUSY when taken), and
        // the kernel does not reuse its place before we release it.
        unsafe { std::slice::from_raw_parts(self.data().add(at.offset as usize), at.len as usize) }
    }

    /// Give every record taken so far back to the kernel.
    #[inline]
    pub fn release(&mut self) {
        self.consumer_pos().store(self.taken_to, Ordering::Release);
    }

    /// Wait until the ring has data or `timeout` passes; true if it has.
    pub fn wait(&self, timeout: Duration) -> io::Result<bool> {
        if self.pending() > 0 {
            return Ok(true);
        }
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        match rc {
            n if n > 0 => Ok(true),
            0 => Ok(false),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    Ok(false)
                } else {
                    Err(e)
                }
            }
        }
    }
}

impl AsFd for RingReader {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for RingReader {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the two mappings made in `new`.
        unsafe {
            libc::munmap(self.consumer_page.as_ptr().cast(), self.page);
            libc::munmap(
                self.rest.as_ptr().cast(),
                self.page + 2 * self.size as usize,
            );
        }
    }
}
