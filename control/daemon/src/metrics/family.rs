//! One metric family, its samples ready to encode: what every part of the
//! daemon that shows numbers (the engine's, the kernel side's, a source's
//! own) hands the metrics endpoint.

use std::fmt;

use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

/// A sample's labels, in order.
pub type Labels = Vec<(&'static str, String)>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Info,
}

/// One metric family, ready to encode. `name` is without the prefix, the
/// unit and `_total`: the encoder adds them.
#[derive(Clone, Debug)]
pub struct MetricFamily {
    kind: Kind,
    name: &'static str,
    help: &'static str,
    unit: Option<Unit>,
    samples: Vec<(Labels, u64)>,
}

impl MetricFamily {
    pub fn new(kind: Kind, name: &'static str, help: &'static str) -> MetricFamily {
        MetricFamily {
            kind,
            name,
            help,
            unit: None,
            samples: Vec::new(),
        }
    }

    pub fn unit(mut self, unit: Unit) -> MetricFamily {
        self.unit = Some(unit);
        self
    }

    pub fn add(&mut self, labels: Labels, value: u64) {
        self.samples.push((labels, value));
    }

    pub fn with(mut self, labels: Labels, value: u64) -> MetricFamily {
        self.add(labels, value);
        self
    }

    /// Encode the family; one without samples is left out.
    pub fn encode(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        if self.samples.is_empty() {
            return Ok(());
        }
        let ty = match self.kind {
            Kind::Counter => MetricType::Counter,
            Kind::Gauge => MetricType::Gauge,
            Kind::Info => MetricType::Info,
        };
        let mut m = enc.encode_descriptor(self.name, self.help, self.unit.as_ref(), ty)?;
        for (labels, value) in &self.samples {
            match (self.kind, labels.is_empty()) {
                // An info's labels are its value.
                (Kind::Info, _) => m.encode_info(labels)?,
                (Kind::Counter, true) => m.encode_counter::<NoLabelSet, _, u64>(value, None)?,
                (Kind::Gauge, true) => m.encode_gauge(value)?,
                (Kind::Counter, false) => m
                    .encode_family(labels)?
                    .encode_counter::<NoLabelSet, _, u64>(value, None)?,
                (Kind::Gauge, false) => m.encode_family(labels)?.encode_gauge(value)?,
            }
        }
        Ok(())
    }
}

/// One label.
pub fn l1(k: &'static str, v: impl ToString) -> Labels {
    vec![(k, v.to_string())]
}

/// Two labels.
pub fn l2(k1: &'static str, v1: impl ToString, k2: &'static str, v2: impl ToString) -> Labels {
    vec![(k1, v1.to_string()), (k2, v2.to_string())]
}
