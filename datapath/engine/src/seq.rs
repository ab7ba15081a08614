//! TCP sequence-number arithmetic modulo 2^32 (RFC 793 §3.3), with the same
//! names and meaning as the kernel's `before()`/`after()`.

/// `a` comes strictly before `b` in sequence space.
#[inline(always)]
pub const fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// `a` comes strictly after `b` in sequence space.
#[inline(always)]
pub const fn after(a: u32, b: u32) -> bool {
    before(b, a)
}

/// The later of two sequence numbers.
#[inline(always)]
pub const fn max(a: u32, b: u32) -> u32 {
    if after(a, b) {
        a
    } else {
        b
    }
}

/// `lo <= x <= hi` in sequence space.
#[inline(always)]
pub const fn between(x: u32, lo: u32, hi: u32) -> bool {
    !before(x, lo) && !after(x, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps() {
        assert!(before(u32::MAX, 0));
        assert!(after(5, u32::MAX - 5));
        assert!(!before(7, 7) && !after(7, 7));
        assert_eq!(max(u32::MAX, 3), 3);
        assert!(between(1, u32::MAX - 1, 10));
        assert!(!between(11, u32::MAX - 1, 10));
    }
}
