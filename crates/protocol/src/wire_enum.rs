//! The `wire_enum!` macro, shared by every module that defines a closed set
//! of strings.
//!
//! Each variant names its wire string once. From that one list the macro
//! derives serde (through per-variant `rename`), `as_str`, `Display`,
//! `FromStr` and an `ALL` slice, so the four can never drift apart.

use thiserror::Error;

/// A string that is not one of the values of a closed set, returned by the
/// `FromStr` impls of the wire enums.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown {kind} value {value:?}")]
pub struct UnknownWireValue {
    /// The Rust name of the enum that refused the value.
    pub kind: &'static str,
    /// The refused input.
    pub value: String,
}

macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $(
                $(#[$vmeta:meta])*
                $variant:ident = $wire:literal,
            )+
        }
    ) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            ::serde::Serialize, ::serde::Deserialize,
        )]
        pub enum $name {
            $(
                $(#[$vmeta])*
                #[serde(rename = $wire)]
                $variant,
            )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The string this value has on the wire.
            pub const fn as_str(&self) -> &'static str {
                match self {
                    $(Self::$variant => $wire,)+
                }
            }
        }

        impl ::core::fmt::Display for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::core::str::FromStr for $name {
            type Err = $crate::wire_enum::UnknownWireValue;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($wire => Ok(Self::$variant),)+
                    other => Err($crate::wire_enum::UnknownWireValue {
                        kind: stringify!($name),
                        value: other.to_owned(),
                    }),
                }
            }
        }
    };
}

pub(crate) use wire_enum;
