//! Dashboard sign-in: the admin token exchanged once for a session, so that the token never has to
//! travel again, nor appear in a page or a URL.
//!
//! A session id is 32 random bytes (URL-safe base64), given to the browser once, in its cookie. The
//! store keeps only the id's SHA-256, the session's CSRF token and its expiry: reading the table gives
//! no session, and every instance sharing the store knows every session (a browser behind a load
//! balancer reaches all of them; signing out ends the session on all of them). Sessions end
//! `DASHBOARD_SESSION_HOURS` after sign-in, however busy; expired ones are deleted at the next
//! sign-in.

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::{App, AppError};
use crate::secret::generate_secret;
use crate::store::DashboardSession;

/// A signed-in dashboard session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The token every form of the session carries, and every change must come with.
    pub csrf_token: String,
    /// When it ends.
    pub expires_at: OffsetDateTime,
}

/// A session just opened: its id (for the browser's cookie, and nowhere else) and the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    /// The session id.
    pub session_id: String,
    /// The session.
    pub session: Session,
}

/// Length of a session id: 32 bytes in URL-safe base64 without padding.
const SESSION_ID_CHARS: usize = 43;

impl App {
    /// Opens a dashboard session for the holder of the admin token (compared in constant time).
    pub async fn sign_in(&self, token: &[u8]) -> Result<SignedIn, AppError> {
        if !self.is_admin_token(token) {
            return Err(AppError::WrongToken);
        }
        let session_id = generate_secret();
        let now = OffsetDateTime::now_utc();
        let stored = DashboardSession {
            id_hash: id_hash(&session_id),
            csrf_token: generate_secret(),
            created_at: now,
            expires_at: now + self.config.dashboard_session,
        };
        self.store.create_session(&stored).await?;
        Ok(SignedIn { session_id, session: Session { csrf_token: stored.csrf_token, expires_at: stored.expires_at } })
    }

    /// The session a browser's cookie names, if it is one and has not expired.
    pub async fn session(&self, session_id: &str) -> Result<Option<Session>, AppError> {
        if !is_session_id(session_id) {
            return Ok(None);
        }
        let found = self.store.find_session(&id_hash(session_id), OffsetDateTime::now_utc()).await?;
        Ok(found.map(|stored| Session { csrf_token: stored.csrf_token, expires_at: stored.expires_at }))
    }

    /// Ends a session, on every instance.
    pub async fn sign_out(&self, session_id: &str) -> Result<(), AppError> {
        if is_session_id(session_id) {
            self.store.delete_session(&id_hash(session_id)).await?;
        }
        Ok(())
    }
}

/// Whether `value` has the shape of a session id (so that nothing else reaches the store).
fn is_session_id(value: &str) -> bool {
    value.len() == SESSION_ID_CHARS && value.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

/// The hex SHA-256 of a session id: what the store keeps.
fn id_hash(session_id: &str) -> String {
    Sha256::digest(session_id.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_generated_ids_have_the_shape_of_a_session_id() {
        assert!(is_session_id(&generate_secret()));
        assert!(!is_session_id(""));
        assert!(!is_session_id(&"a".repeat(42)));
        assert!(!is_session_id(&format!("{}=", "a".repeat(42))));
    }

    #[test]
    fn the_stored_hash_is_the_ids_sha256() {
        // SHA-256 of "abc", the FIPS 180-2 example.
        assert_eq!(id_hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
