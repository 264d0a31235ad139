//! Helpers shared by the protocol's integration tests: reading the `type` names a frame enum
//! accepts straight from its serde definition, so a new frame cannot slip past the tests.

use std::fmt;

use serde::de::value::MapDeserializer;
use serde::de::{self, DeserializeOwned};

/// Every tag value (`type`, `op`, `reply`) the internally tagged enum `T` accepts, in
/// declaration order.
///
/// serde's derived deserializer reports an unknown tag through
/// [`de::Error::unknown_variant`] together with the full list of variant names; this feeds
/// it a tag no variant has and captures that list.
pub(crate) fn variant_names<T: DeserializeOwned>(tag_field: &'static str) -> Vec<&'static str> {
    let entries = [(tag_field, "\u{0}no such variant")];
    let deserializer = MapDeserializer::<_, VariantList>::new(entries.into_iter());
    match T::deserialize(deserializer) {
        Ok(_) => panic!("a made-up `{tag_field}` was accepted"),
        Err(VariantList::Names(names)) => names.to_vec(),
        Err(VariantList::Other(other)) => {
            panic!("expected an unknown-variant error for `{tag_field}`, got: {other}")
        }
    }
}

/// The error type that carries the variant list out of the deserializer.
#[derive(Debug)]
enum VariantList {
    Names(&'static [&'static str]),
    Other(String),
}

impl fmt::Display for VariantList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Names(names) => write!(f, "variants: {names:?}"),
            Self::Other(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for VariantList {}

impl de::Error for VariantList {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Self::Other(message.to_string())
    }

    fn unknown_variant(_variant: &str, expected: &'static [&'static str]) -> Self {
        Self::Names(expected)
    }
}
