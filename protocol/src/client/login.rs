//! The client half of the OPAQUE login, with the suite every chatd party shares. The final
//! step runs the key stretching (Argon2id, 64 MiB), about 150 ms of CPU in an optimised
//! build, so it runs on tokio's blocking pool instead of stalling the runtime.

use opaque_ke::{ClientLogin, ClientLoginFinishParameters, CredentialResponse};
use rand::rngs::OsRng;

use super::error::ClientError;
use crate::opaque_suite::Suite;

/// What the login must keep between `login_start` and `login_finish`.
pub(crate) struct LoginState {
    state: ClientLogin<Suite>,
    password: Vec<u8>,
}

/// Starts a login: the state to keep and KE1 for `login_start`.
pub(crate) fn start(password: &str) -> Result<(LoginState, Vec<u8>), ClientError> {
    let started = ClientLogin::<Suite>::start(&mut OsRng, password.as_bytes())
        .map_err(|e| ClientError::Login(format!("cannot start the OPAQUE login: {e}")))?;
    let ke1 = started.message.serialize().to_vec();
    Ok((
        LoginState {
            state: started.state,
            password: password.as_bytes().to_vec(),
        },
        ke1,
    ))
}

/// Finishes a login with the server's KE2: KE3 for `login_finish`. Fails when the password
/// (or the user name) is wrong, which OPAQUE reveals to the client at this step.
pub(crate) async fn finish(login: LoginState, ke2: Vec<u8>) -> Result<Vec<u8>, ClientError> {
    tokio::task::spawn_blocking(move || finish_blocking(login, &ke2))
        .await
        .map_err(|e| ClientError::Login(format!("key stretching task failed: {e}")))?
}

fn finish_blocking(login: LoginState, ke2: &[u8]) -> Result<Vec<u8>, ClientError> {
    let response = CredentialResponse::<Suite>::deserialize(ke2)
        .map_err(|e| ClientError::Protocol(format!("invalid KE2 in login_challenge: {e}")))?;
    let finished = login
        .state
        .finish(
            &mut OsRng,
            &login.password,
            response,
            ClientLoginFinishParameters::default(),
        )
        .map_err(|_| ClientError::Login("wrong user name or password".to_owned()))?;
    Ok(finished.message.serialize().to_vec())
}
