//! The users a broker knows: `[[security.users]]` in the config and the entries of
//! `security.users_file`, each a login, an argon2id password hash (PHC string, as `stompbox
//! passwd` prints it) and/or the subject of the client certificates that log in as the user,
//! and groups. Checked when loaded, so a typo in a hash or a subject stops the broker at start
//! (or fails a SIGHUP reload) instead of locking that user out later.

use std::collections::HashMap;
use std::path::Path;

use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Params, PasswordHasher, Version};
use serde::{Deserialize, Serialize};

use super::subject::Subject;

/// One user as written in config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    pub login: String,
    /// argon2id PHC string: `$argon2id$v=19$m=19456,t=2,p=1$salt$hash`. None: no passcode
    /// logs this user in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    /// The subject of the TLS client certificates that log in as this user, in RFC 4514
    /// form (`CN=orders-svc,O=Example Corp`, as `openssl x509 -noout -subject -nameopt
    /// RFC2253` prints it). A user needs this, a `password_hash`, or both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_subject: Option<String>,
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

/// A user, ready to check passwords and certificates against.
#[derive(Debug, Clone)]
pub struct User {
    pub login: String,
    /// None: the user logs in by certificate only.
    pub hash: Option<String>,
    pub groups: Vec<String>,
}

/// Every known user by login, and the users with a certificate subject by subject.
#[derive(Debug, Default)]
pub struct Users {
    by_login: HashMap<String, User>,
    /// The login of each subject's user.
    by_subject: HashMap<Subject, String>,
}

impl Users {
    /// The users of `entries` and of the file at `file`; an entry whose hash is not a PHC
    /// string or whose subject is not a distinguished name, an entry with neither, a login
    /// given twice or a subject given to two users is an error naming them.
    pub fn load(entries: &[UserEntry], file: Option<&Path>) -> Result<Users, String> {
        let mut all: Vec<UserEntry> = entries.to_vec();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("security.users_file {}: {e}", path.display()))?;
            let parsed: UsersFile = toml::from_str(&text)
                .map_err(|e| format!("security.users_file {}: {e}", path.display()))?;
            all.extend(parsed.users);
        }
        let mut users = Users {
            by_login: HashMap::with_capacity(all.len()),
            by_subject: HashMap::new(),
        };
        for e in all {
            if e.login.is_empty() {
                return Err("security.users: a user with an empty login".into());
            }
            let named = |why: String| format!("security.users: user {:?}: {why}", e.login);
            if e.password_hash.is_none() && e.certificate_subject.is_none() {
                return Err(named(
                    "has neither password_hash nor certificate_subject: give it one or both".into(),
                ));
            }
            if let Some(hash) = &e.password_hash {
                check_hash(hash).map_err(named)?;
            }
            if let Some(text) = &e.certificate_subject {
                let subject = Subject::parse(text)
                    .map_err(|why| named(format!("certificate_subject {text:?}: {why}")))?;
                if let Some(other) = users.by_subject.get(&subject) {
                    return Err(format!(
                        "security.users: users {other:?} and {:?} have the same \
                         certificate_subject ({subject})",
                        e.login
                    ));
                }
                users.by_subject.insert(subject, e.login.clone());
            }
            let user = User {
                login: e.login.clone(),
                hash: e.password_hash,
                groups: e.groups,
            };
            if users.by_login.insert(e.login.clone(), user).is_some() {
                return Err(format!(
                    "security.users: user {:?} is defined twice",
                    e.login
                ));
            }
        }
        Ok(users)
    }

    pub fn get(&self, login: &str) -> Option<&User> {
        self.by_login.get(login)
    }

    /// The user whose `certificate_subject` is `subject`.
    pub fn by_certificate(&self, subject: &Subject) -> Option<&User> {
        self.by_login.get(self.by_subject.get(subject)?)
    }

    pub fn is_empty(&self) -> bool {
        self.by_login.is_empty()
    }

    pub fn len(&self) -> usize {
        self.by_login.len()
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
            password_hash: Some(hash.into()),
            certificate_subject: None,
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

    #[test]
    fn certificate_subjects_map_to_users_and_are_checked_when_loaded() {
        let hash = hash_password("pw").unwrap();
        let entry = |login: &str, hash: Option<&str>, subject: Option<&str>| UserEntry {
            login: login.into(),
            password_hash: hash.map(str::to_string),
            certificate_subject: subject.map(str::to_string),
            groups: vec![format!("{login}-group")],
        };
        let users = Users::load(
            &[
                entry("orders", None, Some("CN=orders-svc,O=Example Corp")),
                entry("both", Some(&hash), Some("CN=both,O=Example Corp")),
                entry("app", Some(&hash), None),
            ],
            None,
        )
        .unwrap();
        let subject = |s: &str| Subject::parse(s).unwrap();
        let orders = users
            .by_certificate(&subject("cn=orders-svc, o=Example Corp"))
            .unwrap();
        assert_eq!(
            (orders.login.as_str(), orders.hash.is_none()),
            ("orders", true)
        );
        assert_eq!(orders.groups, ["orders-group"]);
        assert_eq!(
            users
                .by_certificate(&subject("CN=both,O=Example Corp"))
                .unwrap()
                .login,
            "both"
        );
        assert!(users.by_certificate(&subject("CN=app")).is_none());
        assert!(users
            .by_certificate(&subject("CN=Orders-svc,O=Example Corp"))
            .is_none());

        // Neither a hash nor a subject; a subject that is not a name; one subject, two
        // users (however it is written): errors that name the users.
        let neither = Users::load(&[entry("nobody", None, None)], None).unwrap_err();
        assert!(
            neither.contains("\"nobody\"") && neither.contains("neither"),
            "{neither}"
        );
        let bad = Users::load(&[entry("svc", None, Some("CN=a;O=b"))], None).unwrap_err();
        assert!(
            bad.contains("\"svc\"") && bad.contains("certificate_subject"),
            "{bad}"
        );
        let twice = Users::load(
            &[
                entry("a", None, Some("CN=svc,O=Example")),
                entry("b", Some(&hash), Some("cn = svc, o = Example")),
            ],
            None,
        )
        .unwrap_err();
        assert!(
            twice.contains("\"a\" and \"b\"") && twice.contains("CN=svc,O=Example"),
            "{twice}"
        );
    }

    #[test]
    fn a_users_file_entry_may_have_a_subject_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        std::fs::write(
            &path,
            "[[users]]\nlogin = \"orders\"\ncertificate_subject = \"CN=orders-svc,O=Example Corp\"\n",
        )
        .unwrap();
        let users = Users::load(&[], Some(&path)).unwrap();
        let subject = Subject::parse("CN=orders-svc,O=Example Corp").unwrap();
        assert_eq!(users.by_certificate(&subject).unwrap().login, "orders");
    }
}
