//! Frame accounting: where each UMEM frame of one worker is.
//!
//! A worker owns a fixed set of frames. Each is in exactly one place:
//!
//! * [`Place::Free`] — on one of the worker's free lists;
//! * [`Place::Receive`] — handed to the kernel through a fill ring and not
//!   yet seen on an RX ring (it sits in the fill ring, in the driver or the
//!   socket's buffer pool, or in the RX ring);
//! * [`Place::Hand`] — consumed from an RX ring, being judged;
//! * [`Place::Transmit`] — submitted on a TX ring and not yet seen on a
//!   completion ring.
//!
//! Every move checks where the frame was, so an address the kernel hands
//! back that we never gave it (or gives back twice) is caught at once:
//! debug builds panic, release builds count it in
//! [`FrameStats::ledger_errors`]. [`Ledger::check`] proves the sum of the
//! places equals the total and matches the free lists the worker holds;
//! debug builds run it after every batch, and [`Ledger::check_thoroughly`]
//! (a recount of every frame) at every publish.
//!
//! What the ledger cannot see by itself is a frame the kernel keeps for
//! ever: a TX descriptor it rejects (`tx_invalid_descs`) never completes.
//! [`Ledger::audit`] finds those: frames still in `Transmit` after the TX
//! rings have drained, the completion rings are empty, and nothing was sent
//! for a whole audit period are reported as [`FrameStats::leaked`].

pub use rstwall_api::stats::afxdp::FrameStats;

rstwall_engine::closed_enum! {
    /// Where a frame is (see the module docs), by the name the statistics
    /// document ([`FrameStats`]'s fields) and the metrics (`place` label)
    /// give it.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Place: "frame place" {
        Free,
        Receive,
        Hand = "in_hand",
        Transmit,
    }
}

impl Place {
    /// The frames in this place, as a worker's statistics count them.
    pub fn count_in(self, frames: &FrameStats) -> u64 {
        match self {
            Place::Free => frames.free,
            Place::Receive => frames.receive,
            Place::Hand => frames.in_hand,
            Place::Transmit => frames.transmit,
        }
    }
}

/// Per-frame places plus a count per place. One byte per frame.
pub struct Ledger {
    frame_shift: u32,
    places: Vec<Place>,
    counts: [u64; Place::COUNT],
    errors: u64,
    leaked: u64,
    /// Audit state: frames in `Transmit` at the previous quiet audit.
    quiet_transmit: Option<u64>,
}

impl Ledger {
    /// `frames` frames of `frame_size` bytes (a power of two), all free.
    pub fn new(frames: usize, frame_size: usize) -> Ledger {
        assert!(
            frame_size.is_power_of_two(),
            "UMEM frame size must be a power of two"
        );
        let mut counts = [0; Place::COUNT];
        counts[Place::Free.index()] = frames as u64;
        Ledger {
            frame_shift: frame_size.trailing_zeros(),
            places: vec![Place::Free; frames],
            counts,
            errors: 0,
            leaked: 0,
            quiet_transmit: None,
        }
    }

    /// Move the frame holding `addr` from `from` to `to`. An address outside
    /// the UMEM or in another place is a ledger error.
    #[inline]
    fn shift(&mut self, addr: usize, from: Place, to: Place) {
        let index = addr >> self.frame_shift;
        match self.places.get_mut(index) {
            Some(place) if *place == from => {
                *place = to;
                self.counts[from.index()] -= 1;
                self.counts[to.index()] += 1;
            }
            other => {
                debug_assert!(
                    false,
                    "frame ledger: address {addr:#x} expected in {from:?}, found {other:?}"
                );
                self.errors += 1;
            }
        }
    }

    /// Put on a fill ring.
    #[inline]
    pub fn to_receive(&mut self, addr: usize) {
        self.shift(addr, Place::Free, Place::Receive);
    }

    /// Taken from an RX ring.
    #[inline]
    pub fn received(&mut self, addr: usize) {
        self.shift(addr, Place::Receive, Place::Hand);
    }

    /// Submitted on a TX ring.
    #[inline]
    pub fn to_transmit(&mut self, addr: usize) {
        self.shift(addr, Place::Hand, Place::Transmit);
    }

    /// Dropped (or counted, in tap mode): back to a free list.
    #[inline]
    pub fn release(&mut self, addr: usize) {
        self.shift(addr, Place::Hand, Place::Free);
    }

    /// Taken from a completion ring.
    #[inline]
    pub fn completed(&mut self, addr: usize) {
        self.shift(addr, Place::Transmit, Place::Free);
    }

    pub fn count(&self, place: Place) -> u64 {
        self.counts[place.index()]
    }

    pub fn total(&self) -> u64 {
        self.places.len() as u64
    }

    /// The invariant: every frame is in exactly one place, the per-place
    /// counts add up to the total, and the free lists hold exactly the
    /// frames marked free. `free_listed` is the free lists' total length.
    pub fn check(&self, free_listed: usize) -> Result<(), String> {
        let sum: u64 = self.counts.iter().sum();
        if sum != self.total() {
            return Err(format!(
                "frame ledger: places add up to {sum}, worker owns {}",
                self.total()
            ));
        }
        if self.count(Place::Free) != free_listed as u64 {
            return Err(format!(
                "frame ledger: {} frames marked free, {free_listed} on the free lists",
                self.count(Place::Free)
            ));
        }
        Ok(())
    }

    /// [`Ledger::check`], plus a recount of every frame's place against the
    /// per-place counts. O(frames): for a periodic audit, not every batch.
    pub fn check_thoroughly(&self, free_listed: usize) -> Result<(), String> {
        self.check(free_listed)?;
        let mut counted = [0u64; Place::COUNT];
        for p in &self.places {
            counted[p.index()] += 1;
        }
        if counted != self.counts {
            return Err(format!(
                "frame ledger: per-frame places {counted:?} differ from counts {:?}",
                self.counts
            ));
        }
        Ok(())
    }

    /// Called once per audit period. `quiet` is true when nothing was sent
    /// during the period, every TX ring has been consumed by the kernel and
    /// every completion ring is empty: then no frame should remain in
    /// `Transmit`, and the ones that do after two quiet audits in a row are
    /// leaked.
    pub fn audit(&mut self, quiet: bool) {
        let transmit = self.count(Place::Transmit);
        if !quiet || transmit == 0 {
            self.quiet_transmit = None;
            self.leaked = 0;
            return;
        }
        if self.quiet_transmit == Some(transmit) {
            self.leaked = transmit;
        }
        self.quiet_transmit = Some(transmit);
    }

    pub fn stats(&self) -> FrameStats {
        FrameStats {
            total: self.total(),
            free: self.count(Place::Free),
            receive: self.count(Place::Receive),
            in_hand: self.count(Place::Hand),
            transmit: self.count(Place::Transmit),
            leaked: self.leaked,
            ledger_errors: self.errors,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: usize = 4096;

    #[test]
    fn place_names_are_consistent() {
        rstwall_engine::names::assert_consistent::<Place>();
    }

    #[test]
    fn a_frame_cycles_through_every_place_and_the_sum_holds() {
        let mut l = Ledger::new(4, FRAME);
        let addr = 2 * FRAME + 256; // packet data starts after the headroom
        l.to_receive(addr);
        l.received(addr);
        assert!(l.check(3).is_ok());
        l.to_transmit(addr);
        assert_eq!(l.count(Place::Transmit), 1);
        l.completed(2 * FRAME);
        assert!(l.check(4).is_ok());
        assert_eq!(l.stats().ledger_errors, 0);
        for place in Place::ALL {
            assert_eq!(place.count_in(&l.stats()), l.count(place), "{place}");
        }
    }

    #[test]
    fn check_catches_free_list_disagreement() {
        let l = Ledger::new(4, FRAME);
        assert!(l.check(3).is_err());
        assert!(l.check_thoroughly(4).is_ok());
    }

    #[test]
    #[cfg_attr(debug_assertions, should_panic(expected = "frame ledger"))]
    fn an_unexpected_address_is_an_error() {
        let mut l = Ledger::new(2, FRAME);
        l.completed(0); // never transmitted
        assert_eq!(l.stats().ledger_errors, 1);
    }

    #[test]
    fn frames_stuck_in_transmit_over_two_quiet_audits_are_leaked() {
        let mut l = Ledger::new(2, FRAME);
        l.to_receive(0);
        l.received(0);
        l.to_transmit(0);
        l.audit(false);
        assert_eq!(l.stats().leaked, 0);
        l.audit(true);
        assert_eq!(l.stats().leaked, 0, "one quiet audit is not enough");
        l.audit(true);
        assert_eq!(l.stats().leaked, 1);
        l.completed(0);
        l.audit(true);
        assert_eq!(l.stats().leaked, 0);
    }
}
