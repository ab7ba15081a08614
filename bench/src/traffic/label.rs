//! What a frame is ([`Label`]), and frames counted by kind ([`FrameCounts`]).

use rstwall_engine::RstClass;

/// What a frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Label {
    Syn,
    SynAck,
    /// ACK without data (handshake completion included).
    Ack,
    Data,
    /// FIN (with ACK).
    Fin,
    /// A RST and how the receiving kernel judges it.
    Rst(RstClass),
    /// Made to order (`rstwall-bench gen`): no meaning known.
    Crafted,
}

impl Label {
    /// Every label, in [`Label::code`] order.
    pub const ALL: [Label; 14] = {
        let mut all = [Label::Crafted; 14];
        let mut i = 0;
        while i < RstClass::COUNT {
            all[5 + i] = Label::Rst(RstClass::ALL[i]);
            i += 1;
        }
        all[0] = Label::Syn;
        all[1] = Label::SynAck;
        all[2] = Label::Ack;
        all[3] = Label::Data;
        all[4] = Label::Fin;
        all
    };

    /// The label's number, below 64: what the frame's source MAC carries
    /// ([`marker_mac`](crate::frame::marker_mac)).
    pub const fn code(self) -> u8 {
        match self {
            Label::Syn => 0,
            Label::SynAck => 1,
            Label::Ack => 2,
            Label::Data => 3,
            Label::Fin => 4,
            Label::Rst(class) => 5 + class.index() as u8,
            Label::Crafted => 13,
        }
    }

    /// The label of a [`Label::code`] (flag bits above 63 ignored).
    pub fn from_code(code: u8) -> Option<Label> {
        Label::ALL.get(usize::from(code & 0x3f)).copied()
    }

    pub fn name(self) -> &'static str {
        match self {
            Label::Syn => "syn",
            Label::SynAck => "syn-ack",
            Label::Ack => "ack",
            Label::Data => "data",
            Label::Fin => "fin",
            Label::Rst(class) => class.as_str(),
            Label::Crafted => "crafted",
        }
    }
}

/// Frames by label, family and size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameCounts {
    pub frames: u64,
    pub ipv6: u64,
    /// Sum of frame lengths.
    pub bytes: u64,
    pub syn: u64,
    pub synack: u64,
    pub ack: u64,
    pub data: u64,
    pub fin: u64,
    pub rst: [u64; RstClass::COUNT],
    pub crafted: u64,
}

impl FrameCounts {
    pub(super) fn add(&mut self, label: Label, ipv6: bool, len: usize) {
        self.frames += 1;
        self.ipv6 += ipv6 as u64;
        self.bytes += len as u64;
        match label {
            Label::Syn => self.syn += 1,
            Label::SynAck => self.synack += 1,
            Label::Ack => self.ack += 1,
            Label::Data => self.data += 1,
            Label::Fin => self.fin += 1,
            Label::Rst(class) => self.rst[class.index()] += 1,
            Label::Crafted => self.crafted += 1,
        }
    }

    /// Frames with `label`.
    pub fn of(&self, label: Label) -> u64 {
        match label {
            Label::Syn => self.syn,
            Label::SynAck => self.synack,
            Label::Ack => self.ack,
            Label::Data => self.data,
            Label::Fin => self.fin,
            Label::Rst(class) => self.rst[class.index()],
            Label::Crafted => self.crafted,
        }
    }

    pub fn rst_total(&self) -> u64 {
        self.rst.iter().sum()
    }

    /// One line: shares of the frames by kind.
    pub fn describe(&self) -> String {
        let pct = |n: u64| 100.0 * n as f64 / self.frames.max(1) as f64;
        let mut s = format!(
            "{} frames, {:.1} B average, {:.1}% IPv6: data {:.1}%, ack {:.1}%, syn {:.2}%, \
             syn-ack {:.2}%, fin {:.2}%, rst {:.2}% (",
            self.frames,
            self.bytes as f64 / self.frames.max(1) as f64,
            pct(self.ipv6),
            pct(self.data),
            pct(self.ack),
            pct(self.syn),
            pct(self.synack),
            pct(self.fin),
            pct(self.rst_total()),
        );
        let classes: Vec<String> = RstClass::ALL
            .iter()
            .filter(|c| self.rst[c.index()] > 0)
            .map(|c| format!("{} {:.2}%", c.as_str(), pct(self.rst[c.index()])))
            .collect();
        s.push_str(&classes.join(", "));
        s.push(')');
        s
    }
}
