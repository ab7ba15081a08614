//! A value for each of a closed enum's values, written as a JSON object by
//! their names (`{"syn": 3, "synack": 1, ...}`).

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Index, IndexMut};

use rstwall_engine::names::ClosedEnum;
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One `T` per value of the closed enum `E`, indexed by it; in documents
/// an object keyed by `E`'s names, in `E::ALL` order. Reading one, a name
/// missing is `T::default()` and a name that is none of `E`'s is an error.
#[derive(Clone, PartialEq, Eq)]
pub struct ByName<E, T> {
    values: Vec<T>,
    of: PhantomData<E>,
}

impl<E: ClosedEnum, T> ByName<E, T> {
    /// The value of each `e` is `f(e)`.
    pub fn from_fn(f: impl FnMut(E) -> T) -> ByName<E, T> {
        ByName {
            values: E::ALL.iter().copied().map(f).collect(),
            of: PhantomData,
        }
    }

    /// Every value with its enum value, in `E::ALL` order.
    pub fn iter(&self) -> impl Iterator<Item = (E, &T)> {
        E::ALL.iter().copied().zip(&self.values)
    }
}

impl<E: ClosedEnum, T: Default> Default for ByName<E, T> {
    fn default() -> Self {
        ByName::from_fn(|_| T::default())
    }
}

impl<E: ClosedEnum, T> Index<E> for ByName<E, T> {
    type Output = T;
    fn index(&self, e: E) -> &T {
        &self.values[e.index()]
    }
}

impl<E: ClosedEnum, T> IndexMut<E> for ByName<E, T> {
    fn index_mut(&mut self, e: E) -> &mut T {
        &mut self.values[e.index()]
    }
}

impl<E: ClosedEnum, T: fmt::Debug> fmt::Debug for ByName<E, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(e, v)| (e.as_str(), v)))
            .finish()
    }
}

impl<E: ClosedEnum, T: Serialize> Serialize for ByName<E, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.values.len()))?;
        for (e, v) in self.iter() {
            m.serialize_entry(e.as_str(), v)?;
        }
        m.end()
    }
}

impl<'de, E: ClosedEnum, T: Deserialize<'de> + Default> Deserialize<'de> for ByName<E, T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entries<E, T>(PhantomData<(E, T)>);
        impl<'de, E: ClosedEnum, T: Deserialize<'de> + Default> Visitor<'de> for Entries<E, T> {
            type Value = ByName<E, T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "an object keyed by {} names", E::KIND)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = ByName::<E, T>::default();
                while let Some((e, v)) = map.next_entry::<E, T>()? {
                    out[e] = v;
                }
                Ok(out)
            }
        }
        d.deserialize_map(Entries(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstwall_engine::FlagClass;

    #[test]
    fn written_by_name_in_enum_order_and_read_back() {
        let v = ByName::<FlagClass, u64>::from_fn(|c| c.index() as u64 * 10);
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(
            json,
            r#"{"syn":0,"synack":10,"fin":20,"rst":30,"rstack":40,"other":50}"#
        );
        assert_eq!(
            serde_json::from_str::<ByName<FlagClass, u64>>(&json).unwrap(),
            v
        );
        assert_eq!(v[FlagClass::Fin], 20);
        // A name left out reads as zero; a name that is none is refused.
        let partial: ByName<FlagClass, u64> = serde_json::from_str(r#"{"rst": 4}"#).unwrap();
        assert_eq!((partial[FlagClass::Rst], partial[FlagClass::Syn]), (4, 0));
        assert!(serde_json::from_str::<ByName<FlagClass, u64>>(r#"{"ack": 1}"#).is_err());
    }
}
