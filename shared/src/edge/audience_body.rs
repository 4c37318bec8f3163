//! The audience a retarget (or a follow-up) is for, as a JSON body gives it: `action`, or
//! `did` / `did_not` naming event kinds (arrays or comma-separated strings). Checked for form
//! here (400 `invalid_request`); the names are checked against the source's channel by
//! [`PredicateIn::for_source`] (400 `invalid_action`).

use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::domain::{Channel, Predicate, PredicateError};
use crate::edge::problem::ApiError;

/// Event kind names: a JSON array of names or one comma-separated string. The names are
/// checked against the source's channel later (400 `invalid_action`).
#[derive(Debug, Default)]
pub struct KindNames(Vec<String>);

impl KindNames {
    pub fn count(&self) -> usize {
        self.0.iter().flat_map(|n| n.split(',')).filter(|n| !n.trim().is_empty()).count()
    }
}

impl<'de> Deserialize<'de> for KindNames {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Names;
        impl<'de> Visitor<'de> for Names {
            type Value = KindNames;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of event kind names or a comma-separated string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KindNames, E> {
                Ok(KindNames(vec![v.to_owned()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<KindNames, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    names.push(name);
                }
                Ok(KindNames(names))
            }
        }
        d.deserialize_any(Names)
    }
}

/// The audience as asked for, before the source's channel is known.
pub enum PredicateIn {
    Action(String),
    Combined { did: Vec<String>, did_not: Vec<String> },
}

impl PredicateIn {
    pub fn from_body(
        action: Option<String>,
        did: Option<KindNames>,
        did_not: Option<KindNames>,
    ) -> Result<Self, ApiError> {
        match (action, did, did_not) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                Err(ApiError::invalid_request("action, did, did_not: give either action or did/did_not"))
            }
            (Some(action), None, None) => Ok(PredicateIn::Action(action)),
            (None, None, None) => {
                Err(ApiError::invalid_request("action: required (or did/did_not naming event kinds)"))
            }
            (None, did, did_not) => {
                let (did, did_not) = (did.unwrap_or_default(), did_not.unwrap_or_default());
                if did.count() + did_not.count() == 0 {
                    return Err(ApiError::invalid_request("did, did_not: name at least one event kind"));
                }
                Ok(PredicateIn::Combined { did: did.0, did_not: did_not.0 })
            }
        }
    }

    pub fn for_source(&self, channel: Channel) -> Result<Predicate, PredicateError> {
        match self {
            PredicateIn::Action(action) => Predicate::action(action, channel),
            PredicateIn::Combined { did, did_not } => Predicate::combined(did, did_not, channel),
        }
    }
}
