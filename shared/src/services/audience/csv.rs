//! The audience as CSV, a chunk at a time: the header `subscription_id,external_user_id`, then
//! one line per member in the audience stream's order (the order the paged JSON walks), each
//! field quoted by the `csv` crate when it must be (an external user id may hold a comma, a
//! quote or a line break). Nothing is held but one chunk and the stream's own bounded prefetch,
//! whatever the audience size.

use bytes::Bytes;
use futures::Stream;

use crate::Store;
use crate::adapters::store::{Start, StoreError};
use crate::services::audience::{AudienceSpec, AudienceStream};

pub const CSV_HEADER: [&str; 2] = ["subscription_id", "external_user_id"];

/// A chunk is handed on once it holds this much: large enough that a million members are a few
/// hundred writes, small enough that memory stays flat.
pub const CHUNK_BYTES: usize = 64 * 1024;

/// The whole audience as CSV chunks. The first chunk holds the header and the first members
/// (so a caller that awaits it before answering learns of a failed first read while it can
/// still answer with an error). After an error the stream ends: a half-written CSV must never
/// look complete, so whoever sends it on aborts the response instead of ending it.
pub fn csv_chunks(
    store: &Store,
    spec: AudienceSpec,
) -> impl Stream<Item = Result<Bytes, StoreError>> + Send + use<> {
    let state = Chunks {
        audience: Some(AudienceStream::new(store, spec, Start::Beginning)),
        writer: Some(writer()),
        header: false,
    };
    futures::stream::unfold(state, |mut state| async move {
        let chunk = state.next_chunk().await?;
        Some((chunk, state))
    })
}

/// A writer into a fresh chunk (the `csv` writer hands its vector back only by value).
fn writer() -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::with_capacity(CHUNK_BYTES + 16 * 1024))
}

struct Chunks {
    /// `None` once the audience ended or failed.
    audience: Option<AudienceStream>,
    /// `None` only while a chunk is being taken.
    writer: Option<csv::Writer<Vec<u8>>>,
    header: bool,
}

impl Chunks {
    async fn next_chunk(&mut self) -> Option<Result<Bytes, StoreError>> {
        let audience = self.audience.as_mut()?;
        let writer = self.writer.get_or_insert_with(writer);
        if !self.header {
            self.header = true;
            if let Err(e) = writer.write_record(CSV_HEADER) {
                return Some(self.fail(e));
            }
        }
        loop {
            match audience.next().await {
                Some(Ok(resolved)) => {
                    for member in resolved.targets {
                        let user = member.external_user_id.as_ref().map_or("", |u| u.as_str());
                        let id = member.subscription_id.to_string();
                        if let Err(e) = writer.write_record([id.as_str(), user]) {
                            return Some(self.fail(e));
                        }
                    }
                    // The writer's own buffer (8 KiB) lags behind the vector: close enough.
                    if writer.get_ref().len() >= CHUNK_BYTES {
                        return Some(self.take());
                    }
                }
                Some(Err(e)) => {
                    self.audience = None;
                    return Some(Err(e));
                }
                None => {
                    self.audience = None;
                    return match self.take() {
                        Ok(rest) if rest.is_empty() => None,
                        other => Some(other),
                    };
                }
            }
        }
    }

    fn take(&mut self) -> Result<Bytes, StoreError> {
        match self.writer.take().map(csv::Writer::into_inner) {
            Some(Ok(bytes)) => Ok(Bytes::from(bytes)),
            Some(Err(e)) => self.fail(csv::Error::from(e.into_error())),
            None => Ok(Bytes::new()),
        }
    }

    /// Writing into a vector cannot fail; if the writer ever says so, the export stops.
    fn fail<T>(&mut self, e: csv::Error) -> Result<T, StoreError> {
        self.audience = None;
        Err(StoreError::Corrupt(format!("writing the CSV: {e}")))
    }
}

#[cfg(test)]
mod tests {
    /// What the `csv` crate writes for awkward ids, read back by the same crate: the round trip
    /// the export's readers (spreadsheets, `csv` modules) rely on.
    #[test]
    fn awkward_external_ids_survive_a_round_trip() {
        let awkward = ["plain", "with,comma", "with \"quotes\"", "line\nbreak", "", " spaces ", "=1+2", "ü"];
        let mut writer =
            csv::WriterBuilder::new().terminator(csv::Terminator::Any(b'\n')).from_writer(vec![]);
        writer.write_record(super::CSV_HEADER).unwrap();
        for (i, user) in awkward.iter().enumerate() {
            writer.write_record([format!("sub{i}").as_str(), user]).unwrap();
        }
        let bytes = writer.into_inner().unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.starts_with("subscription_id,external_user_id\nsub0,plain\nsub1,\"with,comma\"\n"),
            "{text}"
        );
        let mut reader = csv::Reader::from_reader(bytes.as_slice());
        let read: Vec<(String, String)> =
            reader.records().map(|r| r.unwrap()).map(|r| (r[0].to_owned(), r[1].to_owned())).collect();
        let expected: Vec<(String, String)> =
            awkward.iter().enumerate().map(|(i, u)| (format!("sub{i}"), (*u).to_owned())).collect();
        assert_eq!(read, expected);
    }
}
