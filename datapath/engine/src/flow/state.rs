//! Connection states, and the idle-timeout class of each.

crate::closed_enum! {
    /// Connection state as seen between the two endpoints: RFC 793's states
    /// named from the connection's point of view (as conntrack does), plus
    /// `midstream` for flows whose handshake was never seen.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    #[repr(u8)]
    pub enum FlowState: "flow state" {
        /// SYN seen, no SYN-ACK yet.
        SynSent,
        /// SYN-ACK seen, handshake not completed.
        SynReceived,
        /// Handshake completed.
        Established,
        /// Data seen but never the handshake.
        Midstream,
        /// One side sent FIN, not yet acknowledged.
        FinWait,
        /// One side's FIN acknowledged; the other may still send.
        CloseWait,
        /// Both sides sent FIN; the second not yet acknowledged.
        LastAck,
        /// Both FINs acknowledged.
        TimeWait,
        /// A reset was accepted: its receiver's socket is gone; the other
        /// side may live on (see the module docs of `flow`).
        Closed,
    }
}

impl FlowState {
    /// Which idle-timeout class (and LRU list) the state belongs to.
    #[inline]
    pub const fn timeout_class(self) -> TimeoutClass {
        match self {
            FlowState::SynSent | FlowState::SynReceived => TimeoutClass::Handshake,
            FlowState::Established | FlowState::Midstream => TimeoutClass::Established,
            FlowState::FinWait | FlowState::CloseWait | FlowState::LastAck => TimeoutClass::Closing,
            FlowState::TimeWait | FlowState::Closed => TimeoutClass::Closed,
        }
    }
}

/// Idle-timeout classes; each is one LRU list of the flow table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeoutClass {
    Handshake = 0,
    Established = 1,
    Closing = 2,
    Closed = 3,
}

/// Lists of the flow table: one per [`TimeoutClass`].
pub(super) const LISTS: usize = 4;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_state_names() {
        crate::names::assert_consistent::<FlowState>();
        assert_eq!(
            "open".parse::<FlowState>().unwrap_err().to_string(),
            "unknown flow state `open` (expected one of: syn_sent, syn_received, established, \
             midstream, fin_wait, close_wait, last_ack, time_wait, closed)"
        );
    }
}
