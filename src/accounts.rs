//! The accounts list (`--accounts` / `LINGMA_ACCOUNTS`): which instances exist, their names, and
//! per-account session seeds. Given inline as a JSON list or as the path of a JSON file.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use crate::bundle::Seed;
use crate::lingma::workdir::instance_name;
use crate::pool::InstanceSpec;

#[derive(Debug, Error)]
pub enum AccountsError {
    #[error("cannot read accounts file {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("accounts are not valid JSON (a list of objects): {0}")]
    Parse(String),
    #[error("account name {0:?} is invalid: use letters, digits, '.', '_' and '-' (at most 64)")]
    BadName(String),
    #[error("account name {0:?} is used twice")]
    Duplicate(String),
    #[error("the accounts list is empty")]
    Empty,
}

/// One entry of the accounts list.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Account {
    /// Instance name; default `inst-<index>`.
    pub name: Option<String>,
    /// The Lingma account (for logs and headless login).
    pub username: Option<String>,
    /// A session bundle (or seed directory) for this instance's work dir when it is not logged in.
    pub bundle: Option<PathBuf>,
    /// The name of the environment variable holding this account's password (headless login and
    /// auto-login); the password itself never goes in the file.
    pub password_env: Option<String>,
}

/// Parses inline JSON (starting with `[`) or reads the named file.
pub fn parse_accounts(value: &str) -> Result<Vec<Account>, AccountsError> {
    let text = if value.trim_start().starts_with('[') {
        value.to_string()
    } else {
        std::fs::read_to_string(value).map_err(|e| AccountsError::Read {
            path: value.into(),
            reason: e.to_string(),
        })?
    };
    let accounts: Vec<Account> =
        serde_json::from_str(&text).map_err(|e| AccountsError::Parse(e.to_string()))?;
    if accounts.is_empty() {
        return Err(AccountsError::Empty);
    }
    Ok(accounts)
}

pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl Account {
    /// The instance this account runs as: its `name`, else the default name for its place
    /// `index` in the list.
    pub fn instance_name(&self, index: usize) -> String {
        self.name.clone().unwrap_or_else(|| instance_name(index))
    }
}

/// The instances to run: one per account, else `count` unnamed ones. `default_seed` (a seed as
/// configured: a directory, a bundle file or bundle text) applies to instances without a bundle
/// of their own.
pub fn instance_specs(
    accounts: Option<&[Account]>,
    count: usize,
    default_seed: Option<&Path>,
) -> Result<Vec<InstanceSpec>, AccountsError> {
    let mut seen = HashSet::new();
    let specs: Vec<InstanceSpec> = match accounts {
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, a)| InstanceSpec {
                name: a.instance_name(i),
                seed: a.bundle.as_deref().or(default_seed).map(Seed::from_setting),
                account: a.username.clone(),
            })
            .collect(),
        None => (0..count)
            .map(|i| InstanceSpec {
                name: instance_name(i),
                seed: default_seed.map(Seed::from_setting),
                account: None,
            })
            .collect(),
    };
    for s in &specs {
        if !valid_name(&s.name) {
            return Err(AccountsError::BadName(s.name.clone()));
        }
        if !seen.insert(s.name.clone()) {
            return Err(AccountsError::Duplicate(s.name.clone()));
        }
    }
    Ok(specs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_and_file_accounts() {
        let dir = tempfile::tempdir().unwrap();
        let b = dir.path().join("b.tar.gz");
        std::fs::write(&b, b"").unwrap();
        let json = serde_json::json!([{"name": "alice", "username": "a@x"}, {"bundle": b}]);
        let a = parse_accounts(&json.to_string()).unwrap();
        let specs = instance_specs(Some(&a), 7, None).unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].name, "alice");
        assert_eq!(specs[1].name, "inst-1");
        assert_eq!(specs[0].seed, None);
        assert_eq!(specs[1].seed, Some(Seed::Bundle(b)));
        let f = dir.path().join("acc.json");
        std::fs::write(&f, r#"[{"name":"bob"}]"#).unwrap();
        assert_eq!(
            parse_accounts(f.to_str().unwrap()).unwrap()[0]
                .name
                .as_deref(),
            Some("bob")
        );
    }

    #[test]
    fn rejects_bad_accounts() {
        assert!(matches!(parse_accounts("[]"), Err(AccountsError::Empty)));
        assert!(matches!(
            parse_accounts("[{\"nmae\":1}]"),
            Err(AccountsError::Parse(_))
        ));
        assert!(matches!(
            parse_accounts("/no/such/file"),
            Err(AccountsError::Read { .. })
        ));
        let dup = parse_accounts(r#"[{"name":"a"},{"name":"a"}]"#).unwrap();
        assert!(matches!(
            instance_specs(Some(&dup), 0, None),
            Err(AccountsError::Duplicate(_))
        ));
        let bad = parse_accounts(r#"[{"name":"../x"}]"#).unwrap();
        assert!(matches!(
            instance_specs(Some(&bad), 0, None),
            Err(AccountsError::BadName(_))
        ));
    }

    #[test]
    fn default_names() {
        let seed = tempfile::tempdir().unwrap();
        let specs = instance_specs(None, 3, Some(seed.path())).unwrap();
        let names: Vec<_> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["inst-0", "inst-1", "inst-2"]);
        let dir = Seed::Dir(seed.path().to_path_buf());
        assert!(specs.iter().all(|s| s.seed.as_ref() == Some(&dir)));
        // Text that names no file or directory is bundle text (checked when `serve` starts).
        let specs = instance_specs(None, 1, Some(Path::new("H4sI..."))).unwrap();
        assert_eq!(specs[0].seed, Some(Seed::Inline("H4sI...".into())));
    }
}
