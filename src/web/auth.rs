//! Basic auth against bcrypt hashes, as the exporter-toolkit does it: bcrypt is slow by design
//! (tens of milliseconds at cost 10), so a successful check is remembered and the next request
//! with the same credentials costs a SHA-256 and a constant-time comparison; checks that need
//! bcrypt run one at a time on the blocking pool, never on the async workers.
//!
//! Failures are not remembered: a client guessing passwords pays one bcrypt per guess, and cannot
//! push the real users' entries out of the cache.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use http::HeaderValue;
use subtle::ConstantTimeEq;

/// The toolkit's hash of "fakepassword": checked for unknown users so that a response's timing
/// does not tell which user names exist.
const UNKNOWN_USER_HASH: &str = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi";

/// One bcrypt at a time, across reloads of the file.
static BCRYPT: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct BasicAuth {
    users: HashMap<String, String>,
    /// SHA-256 of (user, hash, password) of the last successful check of each user.
    verified: Arc<Mutex<HashMap<String, [u8; 32]>>>,
}

/// The credentials of a request.
pub struct Credentials {
    user: String,
    password: String,
}

impl BasicAuth {
    /// Checks every hash; an error is (user, message).
    pub fn new(users: &BTreeMap<String, String>) -> Result<BasicAuth, (String, String)> {
        for (user, hash) in users {
            if user.contains(':') {
                return Err((user.clone(), "a user name cannot contain ':'".into()));
            }
            if hash.parse::<bcrypt::HashParts>().is_err() {
                return Err((
                    user.clone(),
                    "not a bcrypt hash (\"$2y$10$...\": make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)".into(),
                ));
            }
        }
        Ok(BasicAuth { users: users.clone().into_iter().collect(), verified: Arc::default() })
    }

    /// Whether the `Authorization` header holds the credentials of a user.
    pub async fn allows(&self, header: Option<&HeaderValue>) -> bool {
        let Some(creds) = header.and_then(parse_header) else { return false };
        let known = self.users.get(&creds.user);
        let hash = known.map(String::as_str).unwrap_or(UNKNOWN_USER_HASH);
        let digest = digest(&creds.user, hash, &creds.password);
        if known.is_some() {
            let cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if cache.get(&creds.user).is_some_and(|d| bool::from(d.ct_eq(&digest))) {
                return true;
            }
        }
        let _one_at_a_time = BCRYPT.lock().await;
        let hash_owned = hash.to_string();
        let password = creds.password;
        let matches = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash_owned).unwrap_or(false))
            .await
            .unwrap_or(false);
        let ok = matches && known.is_some();
        if ok {
            self.verified.lock().unwrap_or_else(|e| e.into_inner()).insert(creds.user, digest);
        }
        ok
    }
}

fn digest(user: &str, hash: &str, password: &str) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [user, hash, password] {
        ctx.update(&(part.len() as u64).to_le_bytes());
        ctx.update(part.as_bytes());
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

fn parse_header(value: &HeaderValue) -> Option<Credentials> {
    let value = value.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some(Credentials { user: user.to_string(), password: password.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user: &str, password: &str) -> HeaderValue {
        let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        HeaderValue::from_str(&format!("Basic {b}")).unwrap()
    }

    fn auth() -> BasicAuth {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        BasicAuth::new(&BTreeMap::from([("alice".to_string(), hash)])).unwrap()
    }

    #[tokio::test]
    async fn right_wrong_and_missing_credentials() {
        let a = auth();
        assert!(a.allows(Some(&header("alice", "s3cret"))).await);
        // Cached now, and still right.
        assert!(a.allows(Some(&header("alice", "s3cret"))).await);
        assert!(!a.allows(Some(&header("alice", "wrong"))).await);
        assert!(!a.allows(Some(&header("bob", "s3cret"))).await);
        assert!(!a.allows(None).await);
        assert!(!a.allows(Some(&HeaderValue::from_static("Bearer x"))).await);
        assert!(!a.allows(Some(&HeaderValue::from_static("Basic !!!"))).await);
    }

    #[test]
    fn the_unknown_user_hash_is_a_valid_bcrypt_hash() {
        assert!(bcrypt::verify("fakepassword", UNKNOWN_USER_HASH).unwrap());
    }

    #[test]
    fn plain_passwords_are_refused() {
        let err = BasicAuth::new(&BTreeMap::from([("alice".to_string(), "s3cret".to_string())])).err().unwrap();
        assert_eq!(err.0, "alice");
    }
}
