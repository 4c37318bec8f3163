//! Configuration from the environment, read once at cold start. A missing or malformed
//! variable stops the process with a message naming every problem at once.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, thiserror::Error)]
#[error("configuration error: {}", .problems.join("; "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

/// Collects variables and problems, so one start-up reports everything that is wrong.
#[derive(Debug, Default)]
pub struct EnvReader {
    vars: BTreeMap<String, String>,
    problems: Vec<String>,
    /// Every name asked for, set or not: what a function reads (the template gives each
    /// function exactly these; `tests/tests/template_matches.rs`).
    read: BTreeSet<String>,
}

impl EnvReader {
    /// Reads the process environment.
    pub fn from_process() -> Self {
        Self { vars: std::env::vars().collect(), ..Self::default() }
    }

    /// Reads a given map (tests).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            vars: pairs.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
            ..Self::default()
        }
    }

    /// The same variables with `name` set to `value` (how the local stack gives each function
    /// what the template gives it on AWS).
    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.vars.insert(name.to_owned(), value.to_owned());
        self
    }

    /// The names asked for so far, whether set or not.
    pub fn names_read(&self) -> &BTreeSet<String> {
        &self.read
    }

    fn get(&mut self, name: &str) -> Option<&str> {
        self.read.insert(name.to_owned());
        self.vars.get(name).map(|v| v.trim())
    }

    pub fn required(&mut self, name: &str) -> String {
        match self.get(name) {
            Some(v) if !v.is_empty() => v.to_owned(),
            _ => {
                self.problems.push(format!("{name} is required"));
                String::new()
            }
        }
    }

    pub fn optional(&mut self, name: &str, default: &str) -> String {
        match self.get(name) {
            Some(v) if !v.is_empty() => v.to_owned(),
            _ => default.to_owned(),
        }
    }

    /// An `http(s)://` base URL without a trailing slash.
    pub fn url(&mut self, name: &str, default: Option<&str>) -> String {
        let value = match default {
            Some(d) => self.optional(name, d),
            None => self.required(name),
        };
        let is_http = value.starts_with("http://") || value.starts_with("https://");
        if !value.is_empty() && !is_http {
            self.problems.push(format!("{name} must be an http(s) URL"));
        }
        value.trim_end_matches('/').to_owned()
    }

    pub fn number<T: std::str::FromStr>(&mut self, name: &str, default: T) -> T {
        match self.get(name).map(str::parse) {
            None => default,
            Some(Ok(n)) => n,
            Some(Err(_)) => {
                self.problems.push(format!("{name} must be a number"));
                default
            }
        }
    }

    pub fn finish(self) -> Result<(), ConfigError> {
        if self.problems.is_empty() { Ok(()) } else { Err(ConfigError { problems: self.problems }) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_every_problem_at_once() {
        let mut env =
            EnvReader::from_pairs([("PUBLIC_BASE_URL", "ftp://x"), ("SCHEDULE_TICK_SECONDS", "soon")]);
        let _ = env.required("TABLE_NAME");
        let _ = env.url("PUBLIC_BASE_URL", None);
        let _: u64 = env.number("SCHEDULE_TICK_SECONDS", 60);
        let err = env.finish().unwrap_err().to_string();
        assert!(err.contains("TABLE_NAME is required"), "{err}");
        assert!(err.contains("PUBLIC_BASE_URL must be an http(s) URL"), "{err}");
        assert!(err.contains("SCHEDULE_TICK_SECONDS must be a number"), "{err}");
    }

    #[test]
    fn defaults_and_trailing_slashes() {
        let mut env = EnvReader::from_pairs([("TABLE_NAME", "t"), ("FCM_API_BASE", "http://127.0.0.1:9/")]);
        assert_eq!(env.required("TABLE_NAME"), "t");
        assert_eq!(env.url("TWILIO_API_BASE", Some("https://api.twilio.com")), "https://api.twilio.com");
        assert_eq!(env.url("FCM_API_BASE", None), "http://127.0.0.1:9");
        let read: Vec<&str> = env.names_read().iter().map(String::as_str).collect();
        assert_eq!(read, ["FCM_API_BASE", "TABLE_NAME", "TWILIO_API_BASE"], "every name asked, set or not");
        env.finish().unwrap();
    }
}
