//! Tests of [`Auth`] against a real SQLite store, with opaque-ke's client half (and the real
//! key stretching) playing chatctl and the browser.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use opaque_ke::{
    ClientLogin, ClientLoginFinishParameters, ClientRegistration,
    ClientRegistrationFinishParameters, CredentialResponse, RegistrationResponse,
};
use protocol::UserId;
use protocol::admin::RegisterMode;
use protocol::opaque_suite::Suite;
use rand::rngs::OsRng;
use tempfile::TempDir;

use super::*;
use crate::store::{Store, StoreSettings};

const WINDOW: Duration = Duration::from_secs(60);
const TOKEN_TTL: Duration = Duration::from_secs(3_600);
/// A KE3 of the right length that proves nothing.
const BOGUS_KE3: [u8; 64] = [0; 64];

struct Fixture {
    store: Store,
    auth: Auth,
    _dir: TempDir,
}

fn settings(max_failures_per_user: u32, max_failures_per_address: u32) -> AuthSettings {
    AuthSettings {
        max_failures_per_user,
        max_failures_per_address,
        failure_window: WINDOW,
        resume_token_ttl: TOKEN_TTL,
    }
}

async fn open_store(dir: &TempDir) -> Store {
    let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
    Store::open(&StoreSettings::new(url, 4)).await.unwrap()
}

async fn fixture(settings: AuthSettings) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir).await;
    let auth = Auth::new(store.clone(), settings).await.unwrap();
    Fixture {
        store,
        auth,
        _dir: dir,
    }
}

/// Limits high enough that a test not about them never meets them.
async fn unlimited() -> Fixture {
    fixture(settings(1_000, 1_000)).await
}

fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap()
}

fn address(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
}

/// The client half of registration, as chatctl runs it; returns the upload.
async fn registration_upload(auth: &Auth, user: &UserId, password: &str) -> Vec<u8> {
    let client = ClientRegistration::<Suite>::start(&mut OsRng, password.as_bytes()).unwrap();
    let response = auth
        .register_start(user, &client.message.serialize())
        .await
        .unwrap();
    let finished = client
        .state
        .finish(
            &mut OsRng,
            password.as_bytes(),
            RegistrationResponse::deserialize(&response).unwrap(),
            ClientRegistrationFinishParameters::default(),
        )
        .unwrap();
    finished.message.serialize().to_vec()
}

async fn register(auth: &Auth, user: &UserId, password: &str) {
    let upload = registration_upload(auth, user, password).await;
    auth.register_finish(user, &upload, RegisterMode::Create)
        .await
        .unwrap();
}

/// What a client that finished its half of the login holds.
struct ClientSide {
    ke2_len: usize,
    /// KE3 and the client's session key, or `None` when the client could not open KE2
    /// (wrong password or unknown user).
    finished: Option<(Vec<u8>, Vec<u8>)>,
}

/// Runs a whole login: KE1, KE2, the client's finish (with key stretching) and KE3. A client
/// that cannot open KE2 sends [`BOGUS_KE3`], as an attacker would.
async fn login(
    auth: &Auth,
    user: &UserId,
    password: &str,
    peer: IpAddr,
    now: Instant,
) -> (ClientSide, Result<UserId, AuthError>) {
    let client = ClientLogin::<Suite>::start(&mut OsRng, password.as_bytes()).unwrap();
    let (pending, ke2) = auth
        .login_start(user, &client.message.serialize(), peer, now)
        .await
        .unwrap();
    let finished = client
        .state
        .finish(
            &mut OsRng,
            password.as_bytes(),
            CredentialResponse::deserialize(&ke2).unwrap(),
            ClientLoginFinishParameters::default(),
        )
        .ok()
        .map(|f| (f.message.serialize().to_vec(), f.session_key.to_vec()));
    let ke3 = finished
        .as_ref()
        .map_or(&BOGUS_KE3[..], |(ke3, _)| ke3.as_slice());
    let outcome = auth.login_finish(pending, ke3, peer);
    (
        ClientSide {
            ke2_len: ke2.len(),
            finished,
        },
        outcome,
    )
}

/// Starts a login (no key stretching) and returns what `login_start` said.
async fn start(
    auth: &Auth,
    user: &UserId,
    peer: IpAddr,
    now: Instant,
) -> Result<(PendingLogin, Vec<u8>), AuthError> {
    let client = ClientLogin::<Suite>::start(&mut OsRng, b"guess").unwrap();
    auth.login_start(user, &client.message.serialize(), peer, now)
        .await
}

/// A failed login as a guessing client makes it, without key stretching.
async fn fail(auth: &Auth, user: &UserId, peer: IpAddr, now: Instant) {
    let (pending, _) = start(auth, user, peer, now).await.unwrap();
    assert!(matches!(
        auth.login_finish(pending, &BOGUS_KE3, peer),
        Err(AuthError::LoginFailed)
    ));
}

fn retry_after(result: Result<(PendingLogin, Vec<u8>), AuthError>) -> Duration {
    match result {
        Err(AuthError::RateLimited { retry_after }) => retry_after,
        other => panic!("expected RateLimited, got {:?}", other.map(|(p, _)| p)),
    }
}

#[tokio::test]
async fn a_registered_user_logs_in_and_a_replayed_ke3_is_refused() {
    let f = unlimited().await;
    let alice = user("alice");
    register(&f.auth, &alice, "correct horse").await;

    let now = Instant::now();
    let (client, outcome) = login(&f.auth, &alice, "correct horse", address(1), now).await;
    assert_eq!(outcome.unwrap(), alice);
    let (old_ke3, session_key) = client.finished.unwrap();
    assert_eq!(session_key.len(), 64);

    let (pending, _) = start(&f.auth, &alice, address(1), now).await.unwrap();
    assert!(matches!(
        f.auth.login_finish(pending, &old_ke3, address(1)),
        Err(AuthError::LoginFailed)
    ));
}

#[tokio::test]
async fn a_wrong_password_fails() {
    let f = unlimited().await;
    let alice = user("alice");
    register(&f.auth, &alice, "correct horse").await;

    let (client, outcome) = login(
        &f.auth,
        &alice,
        "battery staple",
        address(1),
        Instant::now(),
    )
    .await;
    assert!(
        client.finished.is_none(),
        "the client must not open KE2 with a wrong password"
    );
    assert!(matches!(outcome, Err(AuthError::LoginFailed)));
}

#[tokio::test]
async fn an_unknown_user_looks_like_a_wrong_password() {
    let f = unlimited().await;
    let alice = user("alice");
    register(&f.auth, &alice, "correct horse").await;
    let now = Instant::now();

    let (_, real_ke2) = start(&f.auth, &alice, address(1), now).await.unwrap();
    let (client, outcome) =
        login(&f.auth, &user("mallory"), "correct horse", address(1), now).await;
    assert_eq!(client.ke2_len, real_ke2.len());
    assert!(client.finished.is_none());
    assert!(matches!(outcome, Err(AuthError::LoginFailed)));
}

#[tokio::test]
async fn a_disabled_user_is_told_only_after_the_right_password() {
    let f = unlimited().await;
    let alice = user("alice");
    register(&f.auth, &alice, "correct horse").await;
    f.store.set_disabled(&alice, true).await.unwrap();
    let now = Instant::now();

    fail(&f.auth, &alice, address(1), now).await;
    let (client, outcome) = login(&f.auth, &alice, "correct horse", address(1), now).await;
    assert!(client.finished.is_some());
    assert!(matches!(outcome, Err(AuthError::UserDisabled)));
}

#[tokio::test]
async fn failures_of_one_user_are_limited_from_any_address() {
    let f = fixture(settings(3, 100)).await;
    let alice = user("alice");
    let now = Instant::now();
    for i in 0..3 {
        fail(&f.auth, &alice, address(i), now).await;
    }

    let later = now + Duration::from_secs(10);
    let wait = retry_after(start(&f.auth, &alice, address(9), later).await);
    assert_eq!(wait, WINDOW - Duration::from_secs(10));
    // Other users are not affected, and the limit ends with the window.
    start(&f.auth, &user("bob"), address(9), later)
        .await
        .unwrap();
    start(&f.auth, &alice, address(9), now + WINDOW)
        .await
        .unwrap();
}

#[tokio::test]
async fn failures_from_one_address_are_limited_for_any_user() {
    let f = fixture(settings(100, 3)).await;
    let now = Instant::now();
    for name in ["u1", "u2", "u3"] {
        fail(&f.auth, &user(name), address(1), now).await;
    }

    let wait = retry_after(start(&f.auth, &user("u4"), address(1), now).await);
    assert_eq!(wait, WINDOW);
    start(&f.auth, &user("u4"), address(2), now).await.unwrap();
}

#[tokio::test]
async fn addresses_in_one_ipv6_64_share_a_limit() {
    let f = fixture(settings(100, 2)).await;
    let now = Instant::now();
    let in_prefix = |host: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, host));
    fail(&f.auth, &user("u1"), in_prefix(1), now).await;
    fail(&f.auth, &user("u2"), in_prefix(2), now).await;

    retry_after(start(&f.auth, &user("u3"), in_prefix(3), now).await);
    let next_prefix = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1));
    start(&f.auth, &user("u3"), next_prefix, now).await.unwrap();
}

#[tokio::test]
async fn abandoned_logins_count_as_failures() {
    // A client can test a password guess on KE2 alone, so not sending KE3 must not help it.
    let f = fixture(settings(2, 100)).await;
    let alice = user("alice");
    let now = Instant::now();
    drop(start(&f.auth, &alice, address(1), now).await.unwrap());
    drop(start(&f.auth, &alice, address(1), now).await.unwrap());
    retry_after(start(&f.auth, &alice, address(1), now).await);
}

#[tokio::test]
async fn a_successful_login_forgets_the_users_failures() {
    let f = fixture(settings(3, 100)).await;
    let alice = user("alice");
    register(&f.auth, &alice, "correct horse").await;
    let now = Instant::now();
    fail(&f.auth, &alice, address(1), now).await;
    fail(&f.auth, &alice, address(1), now).await;

    let (_, outcome) = login(&f.auth, &alice, "correct horse", address(1), now).await;
    outcome.unwrap();
    // Without the reset, the two failures and this login's own attempt would limit alice now.
    for _ in 0..3 {
        fail(&f.auth, &alice, address(1), now).await;
    }
    retry_after(start(&f.auth, &alice, address(1), now).await);
}

#[tokio::test]
async fn malformed_ke1_and_ke3_are_refused_without_panicking() {
    let f = unlimited().await;
    let alice = user("alice");
    register(&f.auth, &alice, "correct horse").await;
    let now = Instant::now();

    for ke1 in [&b""[..], b"garbage", &[0xff; 96], &[0; 96], &[1; 4096]] {
        let result = f.auth.login_start(&alice, ke1, address(1), now).await;
        assert!(matches!(result, Err(AuthError::Malformed(_))), "{ke1:?}");
    }
    for ke3 in [&b""[..], b"short", &[0; 63], &[0; 65]] {
        let (pending, _) = start(&f.auth, &alice, address(1), now).await.unwrap();
        let result = f.auth.login_finish(pending, ke3, address(1));
        assert!(matches!(result, Err(AuthError::Malformed(_))), "{ke3:?}");
    }
}

#[tokio::test]
async fn malformed_registration_messages_are_refused() {
    let f = unlimited().await;
    let alice = user("alice");
    assert!(matches!(
        f.auth.register_start(&alice, b"garbage").await,
        Err(AuthError::Malformed(_))
    ));
    let result = f
        .auth
        .register_finish(&alice, &[0xff; 192], RegisterMode::Create)
        .await;
    assert!(matches!(result, Err(AuthError::Malformed(_))));
    assert!(f.store.user(&alice).await.unwrap().is_none());
}

#[tokio::test]
async fn create_refuses_a_taken_name_and_replace_an_unknown_one() {
    let f = unlimited().await;
    let alice = user("alice");
    let upload = registration_upload(&f.auth, &alice, "correct horse").await;
    f.auth
        .register_finish(&alice, &upload, RegisterMode::Create)
        .await
        .unwrap();

    let again = f
        .auth
        .register_finish(&alice, &upload, RegisterMode::Create)
        .await;
    assert!(matches!(again, Err(AuthError::AlreadyExists)));
    let replace = f
        .auth
        .register_finish(&user("bob"), &upload, RegisterMode::Replace)
        .await;
    assert!(matches!(replace, Err(AuthError::NotFound)));
}

#[tokio::test]
async fn a_replaced_password_takes_over_from_the_old_one() {
    let f = unlimited().await;
    let alice = user("alice");
    register(&f.auth, &alice, "old password").await;
    let upload = registration_upload(&f.auth, &alice, "new password").await;
    f.auth
        .register_finish(&alice, &upload, RegisterMode::Replace)
        .await
        .unwrap();
    let now = Instant::now();

    let (_, outcome) = login(&f.auth, &alice, "new password", address(1), now).await;
    assert_eq!(outcome.unwrap(), alice);
    let (_, outcome) = login(&f.auth, &alice, "old password", address(1), now).await;
    assert!(matches!(outcome, Err(AuthError::LoginFailed)));
}

#[tokio::test]
async fn server_keys_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let alice = user("alice");
    {
        let store = open_store(&dir).await;
        let auth = Auth::new(store, settings(3, 3)).await.unwrap();
        register(&auth, &alice, "correct horse").await;
    }

    let store = open_store(&dir).await;
    let auth = Auth::new(store, settings(3, 3)).await.unwrap();
    let (_, outcome) = login(&auth, &alice, "correct horse", address(1), Instant::now()).await;
    assert_eq!(outcome.unwrap(), alice);
}

#[tokio::test]
async fn two_nodes_on_one_store_share_server_keys() {
    let f = unlimited().await;
    let second_node = Auth::new(f.store.clone(), settings(3, 3)).await.unwrap();
    let alice = user("alice");
    register(&f.auth, &alice, "correct horse").await;

    let (_, outcome) = login(
        &second_node,
        &alice,
        "correct horse",
        address(1),
        Instant::now(),
    )
    .await;
    assert_eq!(outcome.unwrap(), alice);
}

#[tokio::test]
async fn a_resume_token_works_once() {
    let f = unlimited().await;
    let alice = user("alice");
    f.store.create_user(&alice, b"unused").await.unwrap();

    let (token, ttl) = f.auth.issue_resume_token(&alice).await.unwrap();
    assert_eq!(ttl, TOKEN_TTL);
    assert_eq!(f.auth.redeem_resume_token(&token).await.unwrap(), alice);
    assert!(matches!(
        f.auth.redeem_resume_token(&token).await,
        Err(AuthError::InvalidToken)
    ));
}

#[tokio::test]
async fn a_resume_token_expires_after_its_ttl() {
    let f = unlimited().await;
    let alice = user("alice");
    f.store.create_user(&alice, b"unused").await.unwrap();
    let issued_ms = 1_000_000;
    let ttl_ms = i64::try_from(TOKEN_TTL.as_millis()).unwrap();

    let (expired, _) = f
        .auth
        .issue_resume_token_at(&alice, issued_ms)
        .await
        .unwrap();
    let result = f
        .auth
        .redeem_resume_token_at(&expired, issued_ms + ttl_ms + 1)
        .await;
    assert!(matches!(result, Err(AuthError::InvalidToken)));

    let (fresh, _) = f
        .auth
        .issue_resume_token_at(&alice, issued_ms)
        .await
        .unwrap();
    let redeemed = f
        .auth
        .redeem_resume_token_at(&fresh, issued_ms + ttl_ms - 1)
        .await;
    assert_eq!(redeemed.unwrap(), alice);
}

#[tokio::test]
async fn a_resume_token_of_a_disabled_user_fails() {
    let f = unlimited().await;
    let alice = user("alice");
    f.store.create_user(&alice, b"unused").await.unwrap();
    let (token, _) = f.auth.issue_resume_token(&alice).await.unwrap();
    f.store.set_disabled(&alice, true).await.unwrap();

    assert!(matches!(
        f.auth.redeem_resume_token(&token).await,
        Err(AuthError::InvalidToken)
    ));
}

#[tokio::test]
async fn text_that_is_not_a_resume_token_fails() {
    let f = unlimited().await;
    for token in ["", "not a token", &"A".repeat(43), &"x".repeat(10_000)] {
        assert!(matches!(
            f.auth.redeem_resume_token(token).await,
            Err(AuthError::InvalidToken)
        ));
    }
}

#[test]
fn address_keys_group_ipv6_by_64_and_unwrap_mapped_ipv4() {
    let v4 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
    assert_eq!(address_key(v4), v4);
    assert_eq!(
        address_key(IpAddr::V6(Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped())),
        v4
    );
    let host = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 3, 4, 5, 6));
    assert_eq!(
        address_key(host),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, 0))
    );
}
