//! The QUIC listener's certificate when `[tls]` is not configured. QUIC cannot run without
//! TLS, and a newcomer should not need a certificate to try it, so chatd makes a self-signed
//! one (ECDSA P-256) on first start and keeps it in `data_dir`. Keeping it matters: clients
//! trust such a certificate by pinning its SHA-256 fingerprint, and a new certificate at every
//! start would break every pin.
//!
//! The key file is created with mode 0600 and both files are written under temporary names
//! and renamed into place, so a crash never leaves half a certificate behind.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use chatd_config::TlsFiles;

use super::TlsError;

/// File name of the certificate inside `data_dir`.
pub const CERT_FILE: &str = "quic-self-signed-cert.pem";
/// File name of the private key inside `data_dir`.
pub const KEY_FILE: &str = "quic-self-signed-key.pem";

/// The self-signed certificate's files in `data_dir`, created first when neither exists.
/// `names` are the DNS names and IP addresses it is issued for (they matter only to clients
/// that check names; pinning clients do not).
///
/// # Errors
/// [`TlsError::SelfSigned`] when only one of the two files exists (which file to trust is
/// then unclear, so chatd does not guess: delete both and a new pair is made) or when a file
/// cannot be written.
pub fn ensure(data_dir: &Path, names: &[String]) -> Result<TlsFiles, TlsError> {
    let files = TlsFiles {
        cert_file: data_dir.join(CERT_FILE),
        key_file: data_dir.join(KEY_FILE),
    };
    match (files.cert_file.exists(), files.key_file.exists()) {
        (true, true) => return Ok(files),
        (false, false) => {}
        (true, false) | (false, true) => {
            return Err(TlsError::SelfSigned {
                path: files.key_file.clone(),
                detail: format!(
                    "only one of {CERT_FILE} and {KEY_FILE} exists in {}; delete the other \
                     one too and chatd makes a new pair (clients that pinned the old \
                     fingerprint must pin the new one)",
                    data_dir.display()
                ),
            });
        }
    }
    let generated = rcgen::generate_simple_self_signed(names.to_vec()).map_err(|error| {
        TlsError::SelfSigned {
            path: files.cert_file.clone(),
            detail: error.to_string(),
        }
    })?;
    // The key first: a certificate without its key would be the worse leftover.
    write_new(
        &files.key_file,
        generated.signing_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    write_new(&files.cert_file, generated.cert.pem().as_bytes(), 0o644)?;
    Ok(files)
}

/// Writes `contents` to `path` through a temporary file in the same directory, created with
/// `mode`, then renames it into place.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    let error = |detail: String| TlsError::SelfSigned {
        path: path.to_owned(),
        detail,
    };
    let temporary = temporary_name(path);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temporary)
        .map_err(|e| error(format!("cannot create {}: {e}", temporary.display())))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|e| error(format!("cannot write {}: {e}", temporary.display())))?;
    fs::rename(&temporary, path).map_err(|e| error(format!("cannot rename into place: {e}")))
}

fn temporary_name(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{}.tmp", std::process::id()));
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;
    use crate::tls::ReloadableCertificate;

    #[test]
    fn a_certificate_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let files = ensure(dir.path(), &names).unwrap();
        let first = ReloadableCertificate::load(&files).unwrap().summary();
        let mode = fs::metadata(&files.key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the key is private");

        let again = ensure(dir.path(), &names).unwrap();
        assert_eq!(again, files);
        let second = ReloadableCertificate::load(&again).unwrap().summary();
        assert_eq!(
            first.sha256, second.sha256,
            "the fingerprint survives a restart"
        );
        assert_eq!(first.sha256.len(), 64);
    }

    #[test]
    fn half_a_pair_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let files = ensure(dir.path(), &["localhost".to_owned()]).unwrap();
        fs::remove_file(&files.key_file).unwrap();
        let error = ensure(dir.path(), &["localhost".to_owned()]).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("only one of"), "{message}");
        assert!(message.contains("delete the other one too"), "{message}");
    }
}
