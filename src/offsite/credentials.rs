//! `offsite_credentials = FILE`: a file in the AWS shared credentials
//! format (`~/.aws/credentials`), read for the profile `AWS_PROFILE` names
//! (else `default`). Without the option, OpenDAL finds credentials where
//! the AWS tools do: the `AWS_*` environment, the shared files, the
//! instance's role.

use std::path::Path;

use crate::error::{Error, Result};

/// `(access key id, secret access key, session token)` of the profile.
///
/// # Errors
/// [`Error::Offsite`] naming the file: unreadable, no such profile, or a
/// key missing.
pub fn read(path: &Path) -> Result<(String, String, Option<String>)> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::Offsite(format!(
            "cannot read offsite_credentials {}: {}",
            path.display(),
            crate::repozo::python_oserror(&e, path)
        ))
    })?;
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".to_owned());
    parse(&text, &profile).ok_or_else(|| {
        Error::Offsite(format!(
            "offsite_credentials {}: no [{profile}] section with aws_access_key_id and aws_secret_access_key",
            path.display()
        ))
    })
}

fn parse(text: &str, profile: &str) -> Option<(String, String, Option<String>)> {
    let mut section = String::new();
    let (mut id, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim();
            // `~/.aws/config` spells non-default profiles `[profile NAME]`.
            section = name
                .strip_prefix("profile ")
                .unwrap_or(name)
                .trim()
                .to_owned();
            continue;
        }
        if section != profile {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().to_owned();
            match k.trim().to_ascii_lowercase().as_str() {
                "aws_access_key_id" => id = Some(v),
                "aws_secret_access_key" => secret = Some(v),
                "aws_session_token" => token = Some(v),
                _ => {}
            }
        }
    }
    Some((id?, secret?, token))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn profiles() {
        let text = "[default]\naws_access_key_id = A\naws_secret_access_key=B\n\n[profile site]\naws_access_key_id=C\naws_secret_access_key = D\naws_session_token = T\n";
        assert_eq!(parse(text, "default"), Some(("A".into(), "B".into(), None)));
        assert_eq!(
            parse(text, "site"),
            Some(("C".into(), "D".into(), Some("T".into())))
        );
        assert_eq!(parse(text, "other"), None);
        assert_eq!(parse("[default]\naws_access_key_id=A\n", "default"), None);
    }
}
