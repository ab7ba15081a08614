//! What the policy says about a packet, and the names it says it with.

use serde::Serialize;

use crate::RstClass;

crate::closed_enum! {
    /// Whether verdicts are applied or only reported.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub enum Mode: "mode" {
        /// Every packet passes; decisions say what enforce would have done.
        #[default]
        Monitor,
        /// Drop decisions drop.
        Enforce,
    }
}

crate::closed_enum! {
    /// What to do with a RST of a given class.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum Action: "action" {
        Pass,
        Drop,
        /// Pass while the source's bucket and the global budget allow.
        RateLimit = "ratelimit",
    }
}

impl Action {
    /// The default action for `class`: drop only what the kernel is known to
    /// ignore (see the module docs).
    pub const fn default_for(class: RstClass) -> Action {
        match class.kernel_accepts() {
            Some(false) => Action::Drop,
            Some(true) | None => Action::Pass,
        }
    }
}

crate::closed_enum! {
    /// What happens to the packet.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum Verdict: "verdict" {
        Pass,
        Drop,
    }
}

crate::closed_enum! {
    /// Why a packet got its verdict. In monitor mode, what enforce would do.
    /// The names are reports', JSON's and metrics labels' (`reason`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    #[repr(u8)]
    pub enum Reason: "reason" {
        /// Not a RST, and the source is on neither list.
        NotRst,
        /// Source on the allow list.
        AllowList,
        /// Source on the deny list (drops any TCP packet).
        DenyList,
        /// The class action is `pass`.
        ClassPass,
        /// The class action is `drop`.
        ClassDrop,
        /// Class action `ratelimit`, and both buckets had a token.
        WithinRate,
        /// Class action `ratelimit`, and the source's bucket was empty.
        SourceRate,
        /// Class action `ratelimit`, and the global budget was empty.
        GlobalRate,
    }
}

impl Reason {
    /// Whether enforce mode drops a packet for this reason.
    #[inline]
    pub const fn drops(self) -> bool {
        matches!(
            self,
            Reason::DenyList | Reason::ClassDrop | Reason::SourceRate | Reason::GlobalRate
        )
    }
}

/// The policy's answer for one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Decision {
    pub verdict: Verdict,
    pub reason: Reason,
}

impl Decision {
    /// Whether enforce mode would drop this packet (in enforce mode: whether
    /// it was dropped). Lets monitor-mode reports show "would drop".
    #[inline]
    pub const fn would_drop(&self) -> bool {
        self.reason.drops()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_mode_names() {
        crate::names::assert_consistent::<Mode>();
    }

    #[test]
    fn policy_action_names() {
        crate::names::assert_consistent::<Action>();
    }

    #[test]
    fn policy_verdict_names() {
        crate::names::assert_consistent::<Verdict>();
    }

    #[test]
    fn policy_reason_names_are_stable_and_dense() {
        crate::names::assert_consistent::<Reason>();
        for (i, r) in Reason::ALL.into_iter().enumerate() {
            assert_eq!(r.index(), i);
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
        }
        assert_eq!(serde_json::to_string(&Verdict::Drop).unwrap(), "\"drop\"");
        assert_eq!(
            serde_json::to_string(&Action::RateLimit).unwrap(),
            "\"ratelimit\""
        );
        let drops: Vec<_> = Reason::ALL.into_iter().filter(|r| r.drops()).collect();
        assert_eq!(
            drops,
            [
                Reason::DenyList,
                Reason::ClassDrop,
                Reason::SourceRate,
                Reason::GlobalRate
            ]
        );
    }
}
