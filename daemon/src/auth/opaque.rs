//! The server half of OPAQUE (opaque-ke with [`protocol::opaque_suite::Suite`]): the server
//! keys, both registration steps and both login steps, on bytes in and bytes out. Nothing here
//! touches the store or the rate limits; [`super::Auth`] combines them.
//!
//! Every message from a client is parsed here, and a message that does not parse, has any
//! length but its exact one, or that opaque-ke refuses before any password is involved, becomes
//! [`AuthError::Malformed`] rather than a panic. (opaque-ke itself ignores trailing bytes; a
//! client that sends them has a bug worth hearing about.) The user name is the OPAQUE credential identifier, in registration and in
//! login alike, so the OPRF key of a user, real or not, is fixed by the server keys and the
//! name.

use opaque_ke::generic_array::typenum::Unsigned;
use opaque_ke::{
    CredentialFinalization, CredentialFinalizationLen, CredentialRequest, CredentialRequestLen,
    RegistrationRequest, RegistrationRequestLen, RegistrationUpload, RegistrationUploadLen,
    ServerLogin, ServerLoginParameters, ServerRegistration, ServerSetup,
};
use protocol::UserId;
use protocol::opaque_suite::Suite;
use rand::rngs::OsRng;

use super::AuthError;
use crate::store::StoreError;

/// The OPAQUE server setup: the server's key pair and the seed its per-user OPRF keys come
/// from. Every node of a deployment must use the same one, or a user registered through one
/// node could not log in through another.
pub(crate) struct ServerKeys(ServerSetup<Suite>);

/// The server's login state between KE2 and KE3.
pub(crate) struct LoginState(ServerLogin<Suite>);

impl ServerKeys {
    /// Fresh random keys.
    pub(crate) fn generate() -> Self {
        Self(ServerSetup::new(&mut OsRng))
    }

    /// The keys as stored (128 bytes; a secret).
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        self.0.serialize().to_vec()
    }

    /// Reads stored keys.
    ///
    /// # Errors
    /// `Store(Corrupt)` when the bytes are not a server setup of this suite.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Self, AuthError> {
        ServerSetup::deserialize(bytes).map(Self).map_err(|_| {
            AuthError::Store(StoreError::Corrupt {
                detail: "the stored OPAQUE server setup does not parse".to_owned(),
            })
        })
    }

    /// Registration step 1: answers the client's `RegistrationRequest` with a
    /// `RegistrationResponse`. Nothing is stored; step 2 carries everything needed.
    ///
    /// # Errors
    /// `Malformed` when the request does not parse.
    pub(crate) fn start_registration(
        &self,
        user: &UserId,
        request: &[u8],
    ) -> Result<Vec<u8>, AuthError> {
        const WHAT: &str = "registration request";
        let request = exact_len(request, RegistrationRequestLen::<Suite>::USIZE, WHAT)?;
        let request = RegistrationRequest::<Suite>::deserialize(request)
            .map_err(|_| AuthError::Malformed(WHAT))?;
        // With a parsed request and valid keys this fails only on a degenerate client element.
        let started = ServerRegistration::start(&self.0, request, user.as_str().as_bytes())
            .map_err(|_| AuthError::Malformed(WHAT))?;
        Ok(started.message.serialize().to_vec())
    }

    /// Login step 1: answers the client's KE1 with KE2, using the user's password file, or a
    /// fake record when `password_file` is `None`. opaque-ke derives the fake record from the
    /// server keys, so its KE2 has the same size and the same OPRF answer for the same name
    /// each time: a client cannot tell a missing user from a wrong password.
    ///
    /// # Errors
    /// `Malformed` when KE1 does not parse; `Store(Corrupt)` when the password file does not.
    pub(crate) fn start_login(
        &self,
        user: &UserId,
        password_file: Option<&[u8]>,
        ke1: CredentialRequest<Suite>,
    ) -> Result<(LoginState, Vec<u8>), AuthError> {
        let password_file = password_file
            .map(|bytes| {
                ServerRegistration::<Suite>::deserialize(bytes).map_err(|_| {
                    AuthError::Store(StoreError::Corrupt {
                        detail: format!("the password file of user {user} does not parse"),
                    })
                })
            })
            .transpose()?;
        // KE1 parsed and the keys are valid, so what is left to fail is the client's points.
        let started = ServerLogin::start(
            &mut OsRng,
            &self.0,
            password_file,
            ke1,
            user.as_str().as_bytes(),
            ServerLoginParameters::default(),
        )
        .map_err(|_| AuthError::Malformed("KE1"))?;
        Ok((
            LoginState(started.state),
            started.message.serialize().to_vec(),
        ))
    }
}

/// Parses a client's KE1 (`CredentialRequest`).
///
/// # Errors
/// `Malformed` when it does not parse.
pub(crate) fn parse_ke1(ke1: &[u8]) -> Result<CredentialRequest<Suite>, AuthError> {
    let ke1 = exact_len(ke1, CredentialRequestLen::<Suite>::USIZE, "KE1")?;
    CredentialRequest::deserialize(ke1).map_err(|_| AuthError::Malformed("KE1"))
}

/// Registration step 2: turns the client's `RegistrationUpload` into the password file to
/// store.
///
/// # Errors
/// `Malformed` when the upload does not parse.
pub(crate) fn finish_registration(upload: &[u8]) -> Result<Vec<u8>, AuthError> {
    const WHAT: &str = "registration upload";
    let upload = exact_len(upload, RegistrationUploadLen::<Suite>::USIZE, WHAT)?;
    let upload =
        RegistrationUpload::<Suite>::deserialize(upload).map_err(|_| AuthError::Malformed(WHAT))?;
    Ok(ServerRegistration::finish(upload).serialize().to_vec())
}

/// Login step 2: checks the client's KE3 and returns the session key both sides now share.
///
/// # Errors
/// `Malformed` when KE3 does not parse; `LoginFailed` when it does not prove the password.
pub(crate) fn finish_login(state: LoginState, ke3: &[u8]) -> Result<Vec<u8>, AuthError> {
    let ke3 = exact_len(ke3, CredentialFinalizationLen::<Suite>::USIZE, "KE3")?;
    let ke3 = CredentialFinalization::<Suite>::deserialize(ke3)
        .map_err(|_| AuthError::Malformed("KE3"))?;
    let finished = state
        .0
        .finish(ke3, ServerLoginParameters::default())
        .map_err(|_| AuthError::LoginFailed)?;
    Ok(finished.session_key.to_vec())
}

/// `bytes` if it is exactly `len` long; otherwise `Malformed(what)`.
fn exact_len<'a>(bytes: &'a [u8], len: usize, what: &'static str) -> Result<&'a [u8], AuthError> {
    if bytes.len() == len {
        Ok(bytes)
    } else {
        Err(AuthError::Malformed(what))
    }
}

#[cfg(test)]
mod tests {
    use opaque_ke::{
        ClientLogin, ClientLoginFinishParameters, ClientRegistration,
        ClientRegistrationFinishParameters, CredentialResponse, RegistrationResponse,
    };

    use super::*;

    fn register(keys: &ServerKeys, user: &UserId, password: &[u8]) -> Vec<u8> {
        let client = ClientRegistration::<Suite>::start(&mut OsRng, password).unwrap();
        let response = keys
            .start_registration(user, &client.message.serialize())
            .unwrap();
        let upload = client
            .state
            .finish(
                &mut OsRng,
                password,
                RegistrationResponse::deserialize(&response).unwrap(),
                ClientRegistrationFinishParameters::default(),
            )
            .unwrap();
        finish_registration(&upload.message.serialize()).unwrap()
    }

    #[test]
    fn both_sides_agree_on_the_session_key() {
        let keys = ServerKeys::generate();
        let user = UserId::parse("alice").unwrap();
        let password_file = register(&keys, &user, b"correct horse");

        let client = ClientLogin::<Suite>::start(&mut OsRng, b"correct horse").unwrap();
        let ke1 = parse_ke1(&client.message.serialize()).unwrap();
        let (state, ke2) = keys.start_login(&user, Some(&password_file), ke1).unwrap();
        let finished = client
            .state
            .finish(
                &mut OsRng,
                b"correct horse",
                CredentialResponse::deserialize(&ke2).unwrap(),
                ClientLoginFinishParameters::default(),
            )
            .unwrap();
        let server_key = finish_login(state, &finished.message.serialize()).unwrap();

        assert_eq!(server_key, finished.session_key.to_vec());
        assert_eq!(server_key.len(), 64);
    }

    #[test]
    fn stored_keys_read_back_identically() {
        let keys = ServerKeys::generate();
        let bytes = keys.to_bytes();
        assert_eq!(ServerKeys::from_bytes(&bytes).unwrap().to_bytes(), bytes);
        assert!(matches!(
            ServerKeys::from_bytes(&bytes[1..]),
            Err(AuthError::Store(StoreError::Corrupt { .. }))
        ));
    }

    #[test]
    fn a_corrupt_password_file_is_a_store_error() {
        let keys = ServerKeys::generate();
        let user = UserId::parse("alice").unwrap();
        let client = ClientLogin::<Suite>::start(&mut OsRng, b"pw").unwrap();
        let ke1 = parse_ke1(&client.message.serialize()).unwrap();
        assert!(matches!(
            keys.start_login(&user, Some(&[7; 10]), ke1),
            Err(AuthError::Store(StoreError::Corrupt { .. }))
        ));
    }

    #[test]
    fn malformed_registration_messages_are_refused() {
        let keys = ServerKeys::generate();
        let user = UserId::parse("alice").unwrap();
        for bytes in [&[][..], &[0xff; 32], &[1; 7]] {
            assert!(matches!(
                keys.start_registration(&user, bytes),
                Err(AuthError::Malformed(_))
            ));
            assert!(matches!(
                finish_registration(bytes),
                Err(AuthError::Malformed(_))
            ));
        }
        assert!(matches!(
            finish_registration(&[0xff; 192]),
            Err(AuthError::Malformed(_))
        ));
    }

    #[test]
    fn message_lengths_are_the_documented_ones() {
        // docs/protocol.md and browser clients rely on these sizes.
        assert_eq!(CredentialRequestLen::<Suite>::USIZE, 96);
        assert_eq!(CredentialFinalizationLen::<Suite>::USIZE, 64);
        assert_eq!(RegistrationRequestLen::<Suite>::USIZE, 32);
        assert_eq!(RegistrationUploadLen::<Suite>::USIZE, 192);
    }

    #[test]
    fn trailing_bytes_make_a_message_malformed() {
        let client = ClientLogin::<Suite>::start(&mut OsRng, b"pw").unwrap();
        let mut ke1 = client.message.serialize().to_vec();
        assert!(parse_ke1(&ke1).is_ok());
        ke1.push(0);
        assert!(matches!(parse_ke1(&ke1), Err(AuthError::Malformed("KE1"))));
    }
}
