//! The users a broker knows: `[[security.users]]` in the config and the entries of
//! `security.users_file`, each a login, an argon2id password hash (PHC string, as `stompbox
//! passwd` prints it) and groups. Checked when loaded, so a typo in a hash stops the broker
//! at start (or fails a SIGHUP reload) instead of locking that user out later.

use std::collections::HashMap;
use std::path::Path;

use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Params, PasswordHasher, Version};
use serde::{Deserialize, Serialize};

/// One user as written in config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    pub login: String,
    /// argon2id PHC string: `$argon2id$v=19$m=19456,t=2,p=1$salt$hash`.
    pub password_hash: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

/// A users file: `[[users]]` entries, the same fields as `[[security.users]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    users: Vec<UserEntry>,
}

/// A user, ready to check passwords against.
#[derive(Debug, Clone)]
pub struct User {
    pub login: String,
    pub hash: String,
    pub groups: Vec<String>,
}

/// Every known user by login.
#[derive(Debug, Default)]
pub struct Users(HashMap<String, User>);

impl Users {
    /// The users of `entries` and of the file at `file`; an entry whose hash is not a PHC
    /// string, or a login given twice, is an error naming it.
    pub fn load(entries: &[UserEntry], file: Option<&Path>) -> Result<Users, String> {
        let mut all: Vec<UserEntry> = entries.to_vec();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("security.users_file {}: {e}", path.display()))?;
            let parsed: UsersFile = toml::from_str(&text)
                .map_err(|e| format!("security.users_file {}: {e}", path.display()))?;
            all.extend(parsed.users);
        }
        let mut users = HashMap::with_capacity(all.len());
        for e in all {
            if e.login.is_empty() {
                return Err("security.users: a user with an empty login".into());
            }
            check_hash(&e.password_hash)
                .map_err(|why| format!("security.users: user {:?}: {why}", e.login))?;
            let user = User {
                login: e.login.clone(),
                hash: e.password_hash,
                groups: e.groups,
            };
            if users.insert(e.login.clone(), user).is_some() {
                return Err(format!(
                    "security.users: user {:?} is defined twice",
                    e.login
                ));
            }
        }
        Ok(Users(users))
    }

    pub fn get(&self, login: &str) -> Option<&User> {
        self.0.get(login)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// Checks that `hash` is an argon2 PHC string with parameters we can verify.
pub fn check_hash(hash: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(hash).map_err(|e| {
        format!("password_hash is not a PHC string ({e}); make one with `stompbox passwd`")
    })?;
    match parsed.algorithm.as_str() {
        "argon2id" | "argon2i" | "argon2d" => {}
        other => return Err(format!("password_hash uses {other}, not argon2")),
    }
    Params::try_from(&parsed).map_err(|e| format!("password_hash parameters: {e}"))?;
    Ok(())
}

/// The parameters of new hashes: argon2id, 19 MiB, 2 passes, 1 lane (OWASP's first
/// recommendation and the argon2 crate's default; docs/security.md says why).
pub fn hasher() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default())
}

/// A new PHC hash of `password` with a random salt.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| format!("no randomness for the salt: {e}"))?;
    let hash: PasswordHash = hasher()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map_err(|e| e.to_string())?;
    Ok(hash.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_checked_when_loaded() {
        let good = hash_password("secret").unwrap();
        assert!(
            good.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{good}"
        );
        let entry = |login: &str, hash: &str| UserEntry {
            login: login.into(),
            password_hash: hash.into(),
            groups: vec!["users".into()],
        };
        let users = Users::load(&[entry("app", &good)], None).unwrap();
        assert_eq!(users.get("app").unwrap().groups, ["users"]);
        let bad = Users::load(&[entry("app", "secret")], None).unwrap_err();
        assert!(
            bad.contains("\"app\"") && bad.contains("stompbox passwd"),
            "{bad}"
        );
        let twice = Users::load(&[entry("a", &good), entry("a", &good)], None).unwrap_err();
        assert!(twice.contains("twice"), "{twice}");
        let sha = Users::load(&[entry("a", "$5$rounds=1000$salt$hash")], None).unwrap_err();
        assert!(sha.contains("a"), "{sha}");
    }

    #[test]
    fn a_users_file_adds_users() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        let hash = hash_password("pw").unwrap();
        std::fs::write(
            &path,
            format!(
                "[[users]]\nlogin = \"ops\"\npassword_hash = \"{hash}\"\ngroups = [\"admins\"]\n"
            ),
        )
        .unwrap();
        let users = Users::load(&[], Some(&path)).unwrap();
        assert_eq!(users.len(), 1);
        assert_eq!(users.get("ops").unwrap().groups, ["admins"]);
        let missing = Users::load(&[], Some(&dir.path().join("nope.toml"))).unwrap_err();
        assert!(missing.contains("nope.toml"), "{missing}");
    }
}
