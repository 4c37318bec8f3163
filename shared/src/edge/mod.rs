//! The HTTP edge: the routing table ([`routes`]), request helpers (authentication, bodies,
//! JSON: [`request`]), webhook signatures ([`signatures`]) the one error→HTTP map
//! ([`problem`]) and streamed responses ([`streamed`]). Nothing below this module knows about HTTP.

pub mod audience_body;
pub mod problem;
pub mod request;
pub mod routes;
pub mod signatures;
pub mod streamed;
