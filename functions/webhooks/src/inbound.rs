//! `POST /v1/webhooks/twilio/{app_id}/inbound`: the replies to the app's Twilio number. An
//! opt-out (STOP and its synonyms, or Twilio's `OptOutType=STOP`) unsubscribes the sender's
//! SMS subscription; an opt-in (START, YES, UNSTOP, or `OptOutType=START`) brings back one
//! that an opt-out or Twilio error 21610 unsubscribed — never one the app unsubscribed itself.
//! Anything else (HELP included: Twilio answers it) changes nothing. Always answered with an
//! empty TwiML response, so Twilio sends no reply of ours.

use http::{StatusCode, header};
use lambda_http::{Body, Request, Response};
use retarget_shared::domain::{App, Channel, PhoneNumber, SmsSecret, UnsubscribeReason};
use retarget_shared::edge::problem::ApiError;

use crate::{Deps, verified_twilio_form};

/// What an inbound SMS asks of its sender's subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptCommand {
    Stop,
    Start,
}

/// Twilio's standard opt-out keywords (the body, trimmed, in any case, and nothing else).
const STOP_WORDS: [&str; 8] = ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"];
const START_WORDS: [&str; 3] = ["START", "YES", "UNSTOP"];

/// The command of an inbound message: Twilio's own `OptOutType` when it gives one (it is set
/// when Advanced Opt-Out recognised a keyword, in any of its languages), else the body when it
/// is exactly one keyword. Pure.
pub fn opt_command(params: &[(String, String)]) -> Option<OptCommand> {
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim());
    match param("OptOutType").map(str::to_ascii_uppercase).as_deref() {
        Some("STOP") => return Some(OptCommand::Stop),
        Some("START") => return Some(OptCommand::Start),
        _ => {}
    }
    let body = param("Body")?.to_ascii_uppercase();
    if STOP_WORDS.contains(&body.as_str()) {
        Some(OptCommand::Stop)
    } else if START_WORDS.contains(&body.as_str()) {
        Some(OptCommand::Start)
    } else {
        None
    }
}

pub async fn inbound(
    deps: &Deps,
    app: &App,
    secret: &SmsSecret,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let params = verified_twilio_form(deps, app, secret, request)?;
    let Some(command) = opt_command(&params) else { return Ok(empty_twiml()) };
    let from = params.iter().find(|(k, _)| k == "From").map(|(_, v)| v.as_str()).unwrap_or("");
    let Ok(from) = PhoneNumber::parse(from) else {
        tracing::info!(app_id = %app.app_id, ?command, "inbound opt command from no E.164 number: nothing to change");
        return Ok(empty_twiml());
    };
    let store = &deps.store;
    let Some(id) = store.subscription_of_address(app.app_id, Channel::Sms, from.as_e164()).await? else {
        tracing::info!(app_id = %app.app_id, %from, ?command, "inbound opt command from a number without a subscription");
        return Ok(empty_twiml());
    };
    let changed = match command {
        OptCommand::Stop => store.unsubscribe(app.app_id, id, UnsubscribeReason::Stop).await?.is_some(),
        OptCommand::Start => store.resubscribe_opted_out(app.app_id, id).await?.is_some(),
    };
    tracing::info!(app_id = %app.app_id, subscription_id = %id, %from, ?command, changed, "inbound opt command");
    Ok(empty_twiml())
}

/// `200 text/xml <Response></Response>`: TwiML that sends nothing back.
fn empty_twiml() -> Response<Body> {
    let mut response = Response::new(Body::from("<Response></Response>"));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/xml"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn keywords_are_whole_bodies_in_any_case() {
        let cases: &[(&str, Option<OptCommand>)] = &[
            ("STOP", Some(OptCommand::Stop)),
            ("stop", Some(OptCommand::Stop)),
            ("  Stop \n", Some(OptCommand::Stop)),
            ("StopAll", Some(OptCommand::Stop)),
            ("unsubscribe", Some(OptCommand::Stop)),
            ("CANCEL", Some(OptCommand::Stop)),
            ("end", Some(OptCommand::Stop)),
            ("Quit", Some(OptCommand::Stop)),
            ("revoke", Some(OptCommand::Stop)),
            ("OPTOUT", Some(OptCommand::Stop)),
            ("START", Some(OptCommand::Start)),
            ("yes", Some(OptCommand::Start)),
            (" Unstop ", Some(OptCommand::Start)),
            ("STOP please", None),
            ("please stop", None),
            ("S T O P", None),
            ("STOP.", None),
            ("HELP", None),
            ("INFO", None),
            ("", None),
            ("Thanks!", None),
            ("STARTED", None),
        ];
        for (body, expected) in cases {
            assert_eq!(opt_command(&form(&[("Body", body)])), *expected, "{body:?}");
        }
    }

    #[test]
    fn twilios_opt_out_type_wins_over_the_body() {
        // Advanced Opt-Out recognises keywords of other languages (e.g. "ARRET").
        assert_eq!(opt_command(&form(&[("Body", "ARRET"), ("OptOutType", "STOP")])), Some(OptCommand::Stop));
        assert_eq!(
            opt_command(&form(&[("Body", "hello"), ("OptOutType", "START")])),
            Some(OptCommand::Start)
        );
        assert_eq!(opt_command(&form(&[("Body", "HELP"), ("OptOutType", "HELP")])), None);
        assert_eq!(opt_command(&form(&[("OptOutType", "STOP")])), Some(OptCommand::Stop));
        assert_eq!(opt_command(&form(&[])), None);
    }
}
