//! The OPAQUE cipher suite every chatd party uses. It must match what the browser package
//! `@serenity-kit/opaque` (opaque-ke compiled to WebAssembly) speaks, or browser and native
//! users could not share accounts:
//!
//! - OPRF group: Ristretto255 (`OPRFV1-ristretto255-SHA512`);
//! - key exchange: TripleDH over Ristretto255 with SHA-512;
//! - key stretching: Argon2id v1.3, t=3, m=64 MiB, p=4, with 16 zero bytes as salt (the
//!   package's default `memory-constrained` setting).
//!
//! The server never runs the key stretching; only clients (chatctl, the client library) pay
//! for it. Changing these parameters locks out every existing user.

use argon2::{Algorithm, Argon2, Params, Version};
use generic_array::{ArrayLength, GenericArray};
use opaque_ke::errors::InternalError;

/// The chatd OPAQUE cipher suite.
#[derive(Debug, Clone, Copy)]
pub struct Suite;

impl opaque_ke::CipherSuite for Suite {
    type OprfCs = opaque_ke::Ristretto255;
    type KeyExchange = opaque_ke::TripleDh<opaque_ke::Ristretto255, sha2::Sha512>;
    type Ksf = BrowserArgon2;
}

/// Argon2id with the parameters of `@serenity-kit/opaque`'s default key stretching.
pub struct BrowserArgon2(Argon2<'static>);

/// Argon2id iterations (t).
pub const ARGON2_ITERATIONS: u32 = 3;
/// Argon2id memory in KiB (m = 64 MiB).
pub const ARGON2_MEMORY_KIB: u32 = 65_536;
/// Argon2id lanes (p).
pub const ARGON2_PARALLELISM: u32 = 4;

impl Default for BrowserArgon2 {
    fn default() -> Self {
        // The constants above are valid Argon2 parameters (checked by the unit test below),
        // so `Params::new` cannot fail; the fallback keeps a panic off this path anyway.
        let params = Params::new(
            ARGON2_MEMORY_KIB,
            ARGON2_ITERATIONS,
            ARGON2_PARALLELISM,
            None,
        )
        .unwrap_or_default();
        Self(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

impl opaque_ke::ksf::Ksf for BrowserArgon2 {
    fn hash<L: ArrayLength<u8>>(
        &self,
        input: GenericArray<u8, L>,
    ) -> Result<GenericArray<u8, L>, InternalError> {
        let mut output = GenericArray::default();
        self.0
            .hash_password_into(&input, &[0; argon2::RECOMMENDED_SALT_LEN], &mut output)
            .map_err(|_| InternalError::KsfError)?;
        Ok(output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2_parameters_are_valid() {
        let params = Params::new(
            ARGON2_MEMORY_KIB,
            ARGON2_ITERATIONS,
            ARGON2_PARALLELISM,
            None,
        )
        .unwrap();
        assert_eq!(params.m_cost(), 65_536);
        assert_eq!(params.t_cost(), 3);
        assert_eq!(params.p_cost(), 4);
    }
}
