//! `Spanned<T>`: a value of a model together with where it was written.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};

use super::yaml::Span;

/// The newtype name the YAML tree's deserializer recognises to hand out a node's span.
pub(crate) const SPANNED_MARKER: &str = "$release::Spanned";

#[derive(Clone, Debug, Default)]
pub struct Spanned<T> {
    pub span: Span,
    pub value: T,
}

impl<T> Spanned<T> {
    /// A value with no source position (a default).
    pub fn unspanned(value: T) -> Self {
        Self {
            span: Span::default(),
            value,
        }
    }
}

impl<T> std::ops::Deref for Spanned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: PartialEq> PartialEq for Spanned<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl<T: fmt::Display> fmt::Display for Spanned<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.value.fmt(f)
    }
}

impl<T: serde::Serialize> serde::Serialize for Spanned<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(s)
    }
}

impl<T: schemars::JsonSchema> schemars::JsonSchema for Spanned<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }
    fn inline_schema() -> bool {
        T::inline_schema()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Spanned<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SpannedVisitor<T>(std::marker::PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for SpannedVisitor<T> {
            type Value = Spanned<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Spanned<T>, A::Error> {
                let mut number = || -> Result<u64, A::Error> {
                    seq.next_element::<u64>()?
                        .ok_or_else(|| de::Error::custom("span field missing"))
                };
                let line = u32::try_from(number()?).unwrap_or(u32::MAX);
                let column = u32::try_from(number()?).unwrap_or(u32::MAX);
                let offset = usize::try_from(number()?).unwrap_or(usize::MAX);
                let len = usize::try_from(number()?).unwrap_or(0);
                let value = seq
                    .next_element::<T>()?
                    .ok_or_else(|| de::Error::custom("spanned value missing"))?;
                Ok(Spanned {
                    span: Span {
                        line,
                        column,
                        offset,
                        len,
                    },
                    value,
                })
            }

            // Any other deserializer: the value without a position.
            fn visit_newtype_struct<D: Deserializer<'de>>(
                self,
                d: D,
            ) -> Result<Spanned<T>, D::Error> {
                T::deserialize(d).map(Spanned::unspanned)
            }
        }

        d.deserialize_newtype_struct(SPANNED_MARKER, SpannedVisitor(std::marker::PhantomData))
    }
}
