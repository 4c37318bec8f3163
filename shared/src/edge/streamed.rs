//! Responses whose body is streamed rather than held whole: what a function behind a Lambda
//! function URL in `RESPONSE_STREAM` mode answers (`bootstrap::serve_streaming_http`), and what
//! the local API's server writes out chunk by chunk.

use bytes::Bytes;
use futures::{Stream, TryStreamExt};
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use lambda_http::Response;

/// What a streamed body fails with: the response is then aborted, never ended cleanly.
pub type BodyError = lambda_runtime::Error;

pub type StreamedBody = UnsyncBoxBody<Bytes, BodyError>;

/// A body held whole (a problem response, a small answer), as a streamed one.
pub fn full(body: lambda_http::Body) -> StreamedBody {
    Full::new(Bytes::copy_from_slice(body.as_ref())).map_err(|never| match never {}).boxed_unsync()
}

/// A buffered response, as a streamed one.
pub fn buffered(response: Response<lambda_http::Body>) -> Response<StreamedBody> {
    response.map(full)
}

/// The chunks of `stream` as a body; an error aborts it.
pub fn from_stream<S, E>(stream: S) -> StreamedBody
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Into<BodyError> + 'static,
{
    StreamBody::new(stream.map_ok(Frame::data).map_err(Into::into)).boxed_unsync()
}
