//! Authentication: OPAQUE login and registration, failed-login rate limits, resume tokens.
//! [`Auth`] is shared by every session and by the admin socket; it owns the OPAQUE server keys
//! (one set per deployment, kept in the store) and the rate limits (per node, in memory).
//!
//! Login is two round trips of the session: [`Auth::login_start`] answers KE1 with KE2 and
//! returns a [`PendingLogin`], which [`Auth::login_finish`] consumes with KE3. A password never
//! reaches the server, and the server cannot check one from KE1 alone, so:
//!
//! - Every started login counts as a failure of its user and its address, and a successful
//!   finish takes it back. A client learns whether its password guess was right from KE2
//!   alone (the envelope opens or it does not), so a limit that counted only failed KE3s could
//!   be bypassed by never sending KE3.
//! - An unknown user gets KE2 built from a fake record, and a disabled user is answered from
//!   the real one: both look like any other login until the finish.
//!
//! # Layout
//! - this file: [`Auth`], [`AuthSettings`], [`PendingLogin`], [`AuthError`].
//! - `opaque`: the OPAQUE server half on bytes (keys, registration, login steps).
//! - `rate_limit`: failure counting per key over a window, sans-IO.
//! - `resume_token`: token generation, text form and hashing.

mod opaque;
mod rate_limit;
mod resume_token;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use protocol::UserId;
use protocol::admin::RegisterMode;

use self::opaque::{LoginState, ServerKeys};
use self::rate_limit::{MAX_TRACKED_KEYS, RateLimiter};
use self::resume_token::ResumeToken;
use crate::metrics::{self, LoginOutcome, RateLimit};
use crate::store::{Store, StoreError, now_ms};

/// The store secret that holds the OPAQUE server setup.
const SERVER_SETUP_SECRET: &str = "opaque_server_setup";

/// What [`Auth`] needs from the configuration.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Started-but-unsuccessful logins of one user within `failure_window` before further
    /// logins of that user are refused until the window ends.
    pub max_failures_per_user: u32,
    /// The same, per client address (IPv6 addresses count per /64).
    pub max_failures_per_address: u32,
    /// How long failures count, from the first failure of a key.
    pub failure_window: Duration,
    /// How long a resume token stays valid.
    pub resume_token_ttl: Duration,
}

/// Login, registration and resume tokens; see the module docs. Cheap to clone.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    keys: ServerKeys,
    resume_token_ttl: Duration,
    /// A std mutex: every critical section is a few map operations and never awaits.
    limits: Mutex<LoginLimits>,
}

struct LoginLimits {
    users: RateLimiter<UserId>,
    addresses: RateLimiter<IpAddr>,
}

/// A login between KE2 and KE3. Consumed by [`Auth::login_finish`], so a KE2 answers at most
/// one KE3.
pub struct PendingLogin {
    state: LoginState,
    user: UserId,
    record: RecordKind,
}

/// What KE2 was built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecordKind {
    Disabled,
    Enabled,
    /// No such user: a fake record, which no KE3 can match.
    Fake,
}

/// Why an authentication step failed.
///
/// A session must answer `LoginFailed` and an unknown user identically (it is the same
/// variant). `UserDisabled` is only returned after a correct password.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Registration with `Create` for a name that is taken.
    #[error("user already exists")]
    AlreadyExists,
    /// The resume token is unknown, used, expired or belongs to a disabled user.
    #[error("invalid or expired resume token")]
    InvalidToken,
    /// Wrong password or no such user.
    #[error("login failed")]
    LoginFailed,
    /// The client sent bytes that are not the named OPAQUE message; close or refuse, and do
    /// not retry with the same bytes.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// Registration with `Replace` for a user that does not exist.
    #[error("user not found")]
    NotFound,
    /// Too many failed logins for this user or address; the client may retry after the given
    /// time.
    #[error("too many failed logins; retry in {} s", retry_after.as_secs().max(1))]
    RateLimited {
        /// How long until the limit that refused this login ends.
        retry_after: Duration,
    },
    /// The store failed or holds data that does not parse. Internal: log it, never tell the
    /// client more than that the server failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The password was right but the account is disabled.
    #[error("user is disabled")]
    UserDisabled,
}

impl Auth {
    /// Loads the OPAQUE server keys from the store, creating and storing them on first start.
    /// Every node on one database ends up with the same keys: the store keeps whichever node's
    /// keys were stored first.
    ///
    /// # Errors
    /// When the store fails or the stored keys do not parse.
    pub async fn new(store: Store, settings: AuthSettings) -> Result<Self, AuthError> {
        let generated = ServerKeys::generate().to_bytes();
        let stored = store
            .load_or_insert_secret(SERVER_SETUP_SECRET, &generated)
            .await?;
        let keys = ServerKeys::from_bytes(&stored)?;
        let limits = LoginLimits {
            users: RateLimiter::new(
                settings.max_failures_per_user,
                settings.failure_window,
                MAX_TRACKED_KEYS,
            ),
            addresses: RateLimiter::new(
                settings.max_failures_per_address,
                settings.failure_window,
                MAX_TRACKED_KEYS,
            ),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                keys,
                resume_token_ttl: settings.resume_token_ttl,
                limits: Mutex::new(limits),
            }),
        })
    }

    /// Login step 1: checks the rate limits, counts the attempt, and answers KE1 with KE2.
    ///
    /// Timing: a wrong password, a disabled user and an unknown user take the same path, one
    /// store lookup and one `ServerLogin::start` (the fake record costs no more than parsing
    /// a real one), so the reply time does not tell them apart either.
    ///
    /// # Errors
    /// `RateLimited` before anything else; `Malformed` for a bad KE1; `Store` when the lookup
    /// fails (the attempt is then not counted).
    ///
    /// # Cancel safety
    /// Cancelling after the rate check leaves the attempt counted as a failure.
    pub async fn login_start(
        &self,
        user: &UserId,
        ke1: &[u8],
        peer: IpAddr,
        now: Instant,
    ) -> Result<(PendingLogin, Vec<u8>), AuthError> {
        let started = self.login_start_unmetered(user, ke1, peer, now).await;
        // A started login ends in `login_finish`, which counts it; one refused here ends now.
        if let Err(error) = &started {
            metrics::login(login_outcome(error));
        }
        started
    }

    async fn login_start_unmetered(
        &self,
        user: &UserId,
        ke1: &[u8],
        peer: IpAddr,
        now: Instant,
    ) -> Result<(PendingLogin, Vec<u8>), AuthError> {
        let address = address_key(peer);
        self.inner.limits().admit(user, address, now)?;
        let ke1 = opaque::parse_ke1(ke1)?;
        let record = match self.inner.store.user(user).await {
            Ok(record) => record,
            Err(error) => {
                self.inner.limits().forgive(user, address);
                return Err(error.into());
            }
        };
        let (kind, password_file) = match &record {
            None => (RecordKind::Fake, None),
            Some(record) if record.disabled => {
                (RecordKind::Disabled, Some(record.password_file.as_slice()))
            }
            Some(record) => (RecordKind::Enabled, Some(record.password_file.as_slice())),
        };
        let (state, ke2) = self.inner.keys.start_login(user, password_file, ke1)?;
        Ok((
            PendingLogin {
                state,
                user: user.clone(),
                record: kind,
            },
            ke2,
        ))
    }

    /// Login step 2: checks KE3. On success the user's failures are forgotten and this
    /// attempt is taken back from the address; on failure the attempt counted by
    /// [`Self::login_start`] stays.
    ///
    /// # Errors
    /// `Malformed` for a bad KE3; `LoginFailed` for a wrong password or unknown user;
    /// `UserDisabled` for a disabled user with the right password.
    pub fn login_finish(
        &self,
        pending: PendingLogin,
        ke3: &[u8],
        peer: IpAddr,
    ) -> Result<UserId, AuthError> {
        let finished = self.login_finish_unmetered(pending, ke3, peer);
        metrics::login(match &finished {
            Ok(_) => LoginOutcome::Ok,
            Err(error) => login_outcome(error),
        });
        finished
    }

    fn login_finish_unmetered(
        &self,
        pending: PendingLogin,
        ke3: &[u8],
        peer: IpAddr,
    ) -> Result<UserId, AuthError> {
        let PendingLogin {
            state,
            user,
            record,
        } = pending;
        // The session key is not used: TLS protects the connection, and OPAQUE here only
        // proves the password.
        let verified = opaque::finish_login(state, ke3).map(|_session_key| ());
        match (verified, record) {
            (Err(error), _) => {
                tracing::debug!(%user, %peer, %error, "login failed");
                Err(error)
            }
            (Ok(()), RecordKind::Fake) => {
                // Unreachable in practice: nobody knows the fake record's key.
                tracing::debug!(%user, %peer, "login failed");
                Err(AuthError::LoginFailed)
            }
            (Ok(()), RecordKind::Disabled) => {
                tracing::debug!(%user, %peer, "login of a disabled user refused");
                Err(AuthError::UserDisabled)
            }
            (Ok(()), RecordKind::Enabled) => {
                let mut limits = self.inner.limits();
                limits.users.clear(&user);
                limits.addresses.forgive_one(&address_key(peer));
                Ok(user)
            }
        }
    }

    /// Registration step 1 (admin socket): answers the client's `RegistrationRequest` with a
    /// `RegistrationResponse`. Whether the user exists is checked in step 2.
    ///
    /// # Errors
    /// `Malformed` for a bad request.
    pub async fn register_start(
        &self,
        user: &UserId,
        request: &[u8],
    ) -> Result<Vec<u8>, AuthError> {
        self.inner.keys.start_registration(user, request)
    }

    /// Registration step 2 (admin socket): stores the password file made from the client's
    /// `RegistrationUpload`, for a new user or in place of an existing user's password (which
    /// also revokes that user's resume tokens).
    ///
    /// # Errors
    /// `Malformed` for a bad upload; `AlreadyExists` (create) or `NotFound` (replace).
    pub async fn register_finish(
        &self,
        user: &UserId,
        upload: &[u8],
        mode: RegisterMode,
    ) -> Result<(), AuthError> {
        let password_file = opaque::finish_registration(upload)?;
        let stored = match mode {
            RegisterMode::Create => self.inner.store.create_user(user, &password_file).await,
            RegisterMode::Replace => self.inner.store.set_password(user, &password_file).await,
        };
        stored.map_err(|error| match error {
            StoreError::AlreadyExists { .. } => AuthError::AlreadyExists,
            StoreError::NotFound { .. } => AuthError::NotFound,
            other => AuthError::Store(other),
        })
    }

    /// Issues a resume token for `user`, who has just logged in. Returns the token's text
    /// (give it to the client; it is not kept here) and how long it is valid.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn issue_resume_token(&self, user: &UserId) -> Result<(String, Duration), AuthError> {
        self.issue_resume_token_at(user, now_ms()).await
    }

    async fn issue_resume_token_at(
        &self,
        user: &UserId,
        now_ms: i64,
    ) -> Result<(String, Duration), AuthError> {
        let ttl = self.inner.resume_token_ttl;
        let token = ResumeToken::generate();
        let expires_ms = resume_token::expires_ms(now_ms, ttl);
        self.inner
            .store
            .insert_resume_token(&token.hash(), user, expires_ms)
            .await?;
        Ok((token.to_text(), ttl))
    }

    /// Redeems a resume token: returns its user and makes the token unusable.
    ///
    /// # Errors
    /// `InvalidToken` when the token is not one of ours, was used, expired, or its user is
    /// disabled; `Store` when the store fails.
    pub async fn redeem_resume_token(&self, token: &str) -> Result<UserId, AuthError> {
        self.redeem_resume_token_at(token, now_ms()).await
    }

    async fn redeem_resume_token_at(&self, token: &str, now_ms: i64) -> Result<UserId, AuthError> {
        let token = ResumeToken::parse(token).ok_or(AuthError::InvalidToken)?;
        self.inner
            .store
            .take_resume_token(&token.hash(), now_ms)
            .await?
            .ok_or(AuthError::InvalidToken)
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The server keys are a secret; nothing else here is worth printing.
        f.debug_struct("Auth").finish_non_exhaustive()
    }
}

impl Inner {
    fn limits(&self) -> std::sync::MutexGuard<'_, LoginLimits> {
        // Limiter methods cannot panic halfway through an update, so a poisoned lock still
        // guards consistent counters.
        self.limits.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl LoginLimits {
    /// Refuses the login if its user or address is limited; otherwise counts it as a failure
    /// of both, in one step so concurrent attempts cannot all pass one check.
    fn admit(&mut self, user: &UserId, address: IpAddr, now: Instant) -> Result<(), AuthError> {
        let by_user = self.users.check(user, now);
        let by_address = self.addresses.check(&address, now);
        if by_user.is_err() {
            metrics::rate_limited(RateLimit::LoginUser);
        }
        if by_address.is_err() {
            metrics::rate_limited(RateLimit::LoginAddress);
        }
        match (by_user, by_address) {
            (Ok(()), Ok(())) => {
                self.users.record_failure(user, now);
                self.addresses.record_failure(&address, now);
                Ok(())
            }
            (Err(a), Err(b)) => Err(AuthError::RateLimited {
                retry_after: a.max(b),
            }),
            (Err(retry_after), Ok(())) | (Ok(()), Err(retry_after)) => {
                Err(AuthError::RateLimited { retry_after })
            }
        }
    }

    /// Takes back an attempt the server could not answer.
    fn forgive(&mut self, user: &UserId, address: IpAddr) {
        self.users.forgive_one(user);
        self.addresses.forgive_one(&address);
    }
}

impl fmt::Debug for PendingLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingLogin")
            .field("user", &self.user)
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

/// How a failed login step counts in the login metric.
fn login_outcome(error: &AuthError) -> LoginOutcome {
    match error {
        AuthError::LoginFailed => LoginOutcome::BadCredentials,
        AuthError::UserDisabled => LoginOutcome::Disabled,
        AuthError::RateLimited { .. } => LoginOutcome::RateLimited,
        AuthError::Malformed(_) => LoginOutcome::Malformed,
        // The rest cannot come out of a login step; counting them as server failures keeps
        // every attempt counted somewhere.
        AuthError::Store(_)
        | AuthError::AlreadyExists
        | AuthError::InvalidToken
        | AuthError::NotFound => LoginOutcome::Error,
    }
}

/// The rate-limit key of a client address. An IPv6 client usually controls a whole /64, so
/// its addresses count together; an IPv4 address mapped into IPv6 counts as the IPv4 address.
fn address_key(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(_) => peer,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = v6.to_bits() & !u128::from(u64::MAX);
                IpAddr::V6(Ipv6Addr::from_bits(prefix))
            }
        },
    }
}
