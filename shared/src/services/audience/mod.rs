//! Audiences: who of a source message's recipients match a predicate, mapped to the target
//! channel, streamed and paged without holding the audience in memory.

mod predicate;
mod source;
mod stream;

pub use predicate::{Action, KindSet, Predicate, PredicateError};
pub use source::{check_source, retargetable_source};
pub use stream::{
    AudienceSpec, AudienceStream, BadCursor, Counts, Cursor, Member, Page, Resolved, count, page,
};
