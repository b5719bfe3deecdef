//! Loading a service's TOML config: parsed strictly (every config struct
//! denies unknown fields), then validated, so that a typo or a value out of
//! range stops the service at start with one line naming the field.

use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// Why a config cannot be used; each names the file.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // the fields are what the messages say
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A TOML or type error (unknown fields included), on one line:
    /// where and what.
    #[error("invalid config {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    /// A value out of range (from [`Validate`]).
    #[error("invalid config {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// A config that can check itself beyond what its types say.
pub trait Validate {
    /// `Err` names the first bad field and why (`port: must not be 0`).
    fn validate(&self) -> Result<(), String>;
}

/// Reads, parses and validates a config file.
pub fn load<T: DeserializeOwned + Validate>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let config: T = toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        reason: one_line(&text, &e),
    })?;
    config.validate().map_err(|reason| ConfigError::Invalid {
        path: path.to_path_buf(),
        reason,
    })?;
    Ok(config)
}

/// A parse error as `line N: message` (toml's own text spans lines).
fn one_line(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {message}")
        }
        None => message,
    }
}

/// `Err(field: reason)` unless `ok`: the building block of `validate`.
pub fn check(ok: bool, field: &str, reason: &str) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!("{field}: {reason}"))
    }
}

/// Each field (name, value) must be above zero (ports, intervals, limits).
pub fn check_positive(fields: &[(&str, u64)]) -> Result<(), String> {
    for (field, v) in fields {
        check(*v > 0, field, "must be above 0")?;
    }
    Ok(())
}

/// Each field (name, value) must be set (URLs, keys).
pub fn check_set(fields: &[(&str, &str)]) -> Result<(), String> {
    for (field, v) in fields {
        check(!v.is_empty(), field, "must be set")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        port: u16,
    }

    impl Validate for Sample {
        fn validate(&self) -> Result<(), String> {
            check(self.port != 0, "port", "must not be 0")
        }
    }

    fn load_text(text: &str) -> Result<Sample, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        load(&path)
    }

    #[test]
    fn unknown_fields_and_bad_values_are_named() {
        assert_eq!(load_text("port = 8080").unwrap().port, 8080);
        let typo = load_text("port = 1\nprot = 2").unwrap_err().to_string();
        assert!(typo.contains("line 2: unknown field `prot`"), "{typo}");
        assert!(!typo.contains('\n'), "one line: {typo}");
        let zero = load_text("port = 0").unwrap_err().to_string();
        assert!(zero.ends_with("port: must not be 0"), "{zero}");
    }
}
