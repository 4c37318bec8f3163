//! Audiences: who of a source message's recipients match a predicate (`domain::Predicate`),
//! mapped to the target channel, streamed and paged without holding the audience in memory.

mod csv;
mod source;
mod stream;

pub use csv::{CHUNK_BYTES, CSV_HEADER, csv_chunks};
pub use source::{SourceLookupError, retargetable_source};
pub use stream::{
    AudienceSpec, AudienceStream, BadCursor, Counts, Cursor, Member, Page, Resolved, count, page,
};
